"""Built-in scenarios: seeded artifacts, real stores in a work directory, real faults —
one per failure reason code, plus success, interruption-and-resume and a bundle.

Each scenario runs one or two sessions (a second one resumes from the first's checkpoint)
and checks its own outcome: the terminal state, the reason code, and that a failed
transfer left nothing under the final name. Every check is counted; a scenario that ran
no check fails.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable
from pathlib import Path

import msgspec

from engine.adapter import SyncAdapter, TransferResult
from engine.appender import Appender
from engine.faults import FaultyTarget, SimulatedCrash, parse_plan
from engine.intent import build_intent
from engine.machine import Dispatcher
from engine.stores import DirectoryStore
from events.clock import Clock, StepClock
from events.errors import AsupError, ErrorCode
from events.observations import Intent
from events.vocabulary import Mode, ReasonCode, State

CHUNK = 64 * 1024
SIZE = 5 * CHUNK + 1234


class Session(msgspec.Struct, frozen=True):
    faults: str = ""
    resume: bool = False  # resume from the previous session's checkpoint
    transfer_id: str | None = None  # override (a checkpoint of another transfer)
    adapter: str = "full"


class Scenario(msgspec.Struct, frozen=True):
    name: str
    reference_id: str  # the reference e2e scenario id where one maps, else ""
    description: str
    mode: Mode
    expect_state: State
    expect_reason: ReasonCode | None
    sessions: list[Session]
    artifact_class: str = "conformance_fixture_bundle"
    bundle: bool = False
    before_last: str = ""  # tamper step before the last session: cut_temp | change_source


S = Session
SCENARIOS: list[Scenario] = [
    Scenario(
        "success",
        "asupersync_recovery_success",
        "a clean transfer completes after its BLAKE3 check",
        Mode.STRICT,
        State.COMPLETED,
        None,
        [S()],
    ),
    Scenario(
        "bundle_success",
        "",
        "a bundle directory moves file by file; its manifest is published last",
        Mode.HARDENED,
        State.COMPLETED,
        None,
        [S()],
        bundle=True,
    ),
    Scenario(
        "interruption_resume",
        "asupersync_interruption_resume",
        "a retried interruption, then a crash; a new session resumes from the checkpoint and completes",
        Mode.HARDENED,
        State.COMPLETED,
        None,
        [S("interruption@1,crash@3"), S(resume=True)],
    ),
    Scenario(
        "retry_exhausted",
        "",
        "interruptions past the hardened budget fail closed",
        Mode.HARDENED,
        State.FAILED_CLOSED,
        ReasonCode.RETRY_EXHAUSTED,
        [S("interruption@1,interruption@1,interruption@1,interruption@1")],
    ),
    Scenario(
        "strict_interruption",
        "",
        "strict mode has no retry budget: the first interruption fails closed",
        Mode.STRICT,
        State.FAILED_CLOSED,
        ReasonCode.RETRY_EXHAUSTED,
        [S("interruption@2")],
    ),
    Scenario(
        "partial_write",
        "",
        "a short write makes the committed cursor fall behind: fail closed",
        Mode.HARDENED,
        State.FAILED_CLOSED,
        ReasonCode.CONFLICT_DETECTED,
        [S("partial_write@2")],
    ),
    Scenario(
        "checksum_mismatch",
        "asupersync_sidecar_mismatch",
        "a corrupted chunk is caught by the target's BLAKE3 before completed",
        Mode.HARDENED,
        State.FAILED_CLOSED,
        ReasonCode.INTEGRITY_PRECHECK_FAILED,
        [S("checksum_mismatch@1")],
    ),
    Scenario(
        "source_precheck",
        "",
        "the source changed after the intent: the precheck fails before any byte moves",
        Mode.STRICT,
        State.FAILED_CLOSED,
        ReasonCode.INTEGRITY_PRECHECK_FAILED,
        [S()],
        before_last="change_source",
    ),
    Scenario(
        "stale_metadata",
        "asupersync_stale_metadata_resume",
        "a resume whose checkpoint carries a stale seed is refused",
        Mode.HARDENED,
        State.FAILED_CLOSED,
        ReasonCode.RESUME_SEED_MISMATCH,
        [S("crash@2"), S("stale_metadata", resume=True)],
    ),
    Scenario(
        "capability_mismatch",
        "",
        "the adapter speaks another protocol version",
        Mode.STRICT,
        State.FAILED_CLOSED,
        ReasonCode.CAPABILITY_MISMATCH,
        [S(adapter="legacy_protocol")],
    ),
    Scenario(
        "unsupported_capability",
        "",
        "the adapter offers no epoch reconcile, which the class requires",
        Mode.HARDENED,
        State.FAILED_CLOSED,
        ReasonCode.UNSUPPORTED_CAPABILITY,
        [S(adapter="minimal")],
        artifact_class="benchmark_baseline_bundle",
    ),
    Scenario(
        "target_conflict",
        "asupersync_replica_drift",
        "another writer changes the target mid-transfer",
        Mode.HARDENED,
        State.FAILED_CLOSED,
        ReasonCode.CONFLICT_DETECTED,
        [S("epoch_drift@1")],
    ),
    Scenario(
        "resume_transfer_mismatch",
        "",
        "a checkpoint of another transfer is refused on resume",
        Mode.HARDENED,
        State.FAILED_CLOSED,
        ReasonCode.RESUME_TRANSFER_MISMATCH,
        [S("crash@2"), S(resume=True, transfer_id="t-another-transfer")],
    ),
    Scenario(
        "resume_cursor_ahead",
        "",
        "the target lost bytes the checkpoint claims: the resume is refused",
        Mode.HARDENED,
        State.FAILED_CLOSED,
        ReasonCode.RESUME_CURSOR_AHEAD,
        [S("crash@3"), S(resume=True)],
        before_last="cut_temp",
    ),
    Scenario(
        "late_ack",
        "",
        "an acknowledgement arriving during verification is an invalid transition: fail closed",
        Mode.HARDENED,
        State.FAILED_CLOSED,
        ReasonCode.INVALID_TRANSITION,
        [S("late_ack@2")],
    ),
    Scenario(  # last: the scenarios before it keep their seqs in a log of all of them
        "disk_full",
        "",
        "the target's disk fills up mid-copy: an I/O failure, recorded with its errno, not a conflict",
        Mode.HARDENED,
        State.FAILED_CLOSED,
        ReasonCode.IO_FAILED,
        [S("disk_full@2")],
    ),
]


def get(name: str) -> Scenario:
    for scenario in SCENARIOS:
        if scenario.name == name:
            return scenario
    raise AsupError(ErrorCode.USAGE, f"unknown scenario {name!r} (known: {', '.join(s.name for s in SCENARIOS)})")


class Check(msgspec.Struct, frozen=True):
    name: str
    passed: bool
    detail: str


class ScenarioOutcome(msgspec.Struct, frozen=True):
    name: str
    reference_id: str
    transfer_id: str
    seed: int
    state: State | None
    reason_code: ReasonCode | None
    checks: list[Check]
    sessions: int

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)


def make_artifacts(workdir: Path, seed: int, bundle: bool) -> tuple[DirectoryStore, DirectoryStore, str]:
    source, target = workdir / "source", workdir / "target"
    source.mkdir(parents=True, exist_ok=True)
    target.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    if bundle:
        root = source / "bundle"
        (root / "fixtures").mkdir(parents=True, exist_ok=True)
        (root / "fixtures" / "graph.json").write_bytes(rng.randbytes(3 * CHUNK + 17))
        (root / "README.txt").write_bytes(b"seeded demo bundle\n" * 50)
        (root / "baseline.bin").write_bytes(rng.randbytes(CHUNK + 5))
        return DirectoryStore(source), DirectoryStore(target), "bundle"
    (source / "artifact.bin").write_bytes(rng.randbytes(SIZE))
    return DirectoryStore(source), DirectoryStore(target), "artifact.bin"


async def run_scenario(
    scenario: Scenario,
    workdir: Path,
    appender: Appender,
    dispatcher: Dispatcher,
    *,
    seed: int,
    clock: Callable[[], Clock],
) -> ScenarioOutcome:
    """Run every session of `scenario` in `workdir`, appending to `appender`'s log."""
    source, target_store, name = make_artifacts(workdir, seed, scenario.bundle)
    target_name = f"{scenario.name}.out"
    base = build_intent(
        source,
        name,
        target_name,
        artifact_class=scenario.artifact_class,
        mode=scenario.mode,
        seed=seed,
        chunk_size=CHUNK,
        transfer_id=f"{scenario.name}-{seed}",
        replay_command=f"asup scenario run {scenario.name} --seed {seed}",
    )
    result: TransferResult | None = None
    checkpoint = ""
    for index, session in enumerate(scenario.sessions):
        if index == len(scenario.sessions) - 1:
            _tamper(scenario.before_last, source, target_store, name, target_name)
        intent = _session_intent(base, session)
        target = FaultyTarget(target_store, parse_plan(session.faults), CHUNK, sleep=lambda _s: None)
        adapter = SyncAdapter(appender=appender, source=source, target=target, dispatcher=dispatcher, clock=clock(), sleep=_no_sleep)
        try:
            result = await adapter.run(intent, checkpoint if session.resume else None)
        except SimulatedCrash:
            result = None
        checkpoint = str(target_store.checkpoint_path(target_name))
    return ScenarioOutcome(
        name=scenario.name,
        reference_id=scenario.reference_id,
        transfer_id=base.transfer_id,
        seed=seed,
        state=result.state if result else None,
        reason_code=result.reason_code if result else None,
        checks=_checks(scenario, result, target_store, target_name),
        sessions=len(scenario.sessions),
    )


async def _no_sleep(_seconds: float) -> None:
    """Scenarios draw and record backoff delays but do not wait them out."""


def _session_intent(base: Intent, session: Session) -> Intent:
    changes: dict[str, object] = {"adapter": session.adapter}
    if session.transfer_id:
        changes["transfer_id"] = session.transfer_id
    return msgspec.structs.replace(base, **changes)


def _tamper(step: str, source: DirectoryStore, target: DirectoryStore, name: str, target_name: str) -> None:
    if step == "change_source":
        path = source.path(name)
        data = bytearray(path.read_bytes())
        data[0] ^= 0xFF
        path.write_bytes(bytes(data))
    elif step == "cut_temp":
        temp = target.temp_path(target_name)
        temp.write_bytes(temp.read_bytes()[:CHUNK])


def _checks(scenario: Scenario, result: TransferResult | None, target: DirectoryStore, target_name: str) -> list[Check]:
    state = result.state if result else None
    reason = result.reason_code if result else None
    final = target.path(target_name)
    checks = [
        Check("terminal_state", state is scenario.expect_state, f"expected {scenario.expect_state}, got {state}"),
        Check("reason_code", reason == scenario.expect_reason, f"expected {scenario.expect_reason}, got {reason}"),
    ]
    if scenario.expect_state is State.FAILED_CLOSED:
        checks.append(Check("no_partial_artifact", not final.exists(), f"{target_name} must not exist after failing closed"))
    else:
        checks.append(Check("artifact_present", final.exists(), f"{target_name} exists after completing"))
    return checks


async def run_scenarios(
    chosen: list[Scenario],
    appender: Appender,
    dispatcher: Dispatcher,
    *,
    seed: int,
    workdir: Path | None = None,
    on_done: Callable[[ScenarioOutcome], None] | None = None,
) -> list[ScenarioOutcome]:
    """Run `chosen` in order into one log, each in its own work directory (under `workdir`
    when given and kept, else a temporary one)."""
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="asup-scenarios-") as tmp:
        for scenario in chosen:
            where = (workdir or Path(tmp)) / scenario.name
            outcome = await run_scenario(scenario, where, appender, dispatcher, seed=seed, clock=StepClock)
            outcomes.append(outcome)
            if on_done is not None:
                on_done(outcome)
    return outcomes
