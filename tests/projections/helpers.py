"""Shared helpers for the projection, checklist, escalation and durability tests: scenario
logs written by the real adapter, hand-written logs, sidecar damage and the CLI."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import anyio
import msgspec
import orjson
from typer.testing import CliRunner, Result

from engine import durability
from engine.appender import DirectAppender
from engine.contracts import default_matrix, load_profile
from engine.machine import make_dispatcher
from engine.negotiation import default_requests, negotiate
from engine.scenarios import SCENARIOS, get, run_scenario
from events.clock import StepClock
from events.jsonl_log import JsonlLog
from events.memory_log import MemoryLog
from events.observations import Intent, IntentRecorded, PrimitiveRequest
from events.payloads import Event, Transition
from events.record import Record
from events.scan import read_records
from events.vocabulary import Mode, ReasonCode, State, Trigger
from runbook.cli import app

CLASS = "conformance_fixture_bundle"
CHECKSUM = "blake3:" + "ab" * 32
OTHER_CHECKSUM = "blake3:" + "cd" * 32

Log = MemoryLog | JsonlLog


def invoke(*args: str) -> Result:
    """Run `asup ARGS` in-process (wide terminal, so rich output does not wrap names)."""
    return CliRunner(env={"COLUMNS": "400", "NO_COLOR": "1"}).invoke(app, list(args))


def payload(result: Result) -> dict[str, Any]:
    """The JSON document a `--json` command printed."""
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def run_scenarios(log: Log, workdir: Path, names: Sequence[str] | None = None, seed: int = 7) -> None:
    """Run built-in scenarios (all by default) through the real adapter into `log`."""
    chosen = list(SCENARIOS) if names is None else [get(n) for n in names]

    async def go() -> None:
        appender, dispatcher = DirectAppender(log), make_dispatcher(True)
        for scenario in chosen:
            await run_scenario(scenario, workdir / scenario.name, appender, dispatcher, seed=seed, clock=StepClock)

    anyio.run(go)


def scenario_log(path: Path, workdir: Path, names: Sequence[str] | None = None, seed: int = 7) -> Path:
    """A JSONL scenario log at `path` (stores under `workdir`, outside any evidence root)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with JsonlLog.open(path, log_id="scenarios", clock=StepClock()) as log:
        run_scenarios(log, workdir, names, seed)
    return path


def records(path: Path) -> list[Record]:
    return list(read_records(path, tolerate_torn_tail=False))


def streams_of(path: Path) -> dict[str, list[Record]]:
    """Stream -> its records (the `$log` stream left out), read independently of replay."""
    out: dict[str, list[Record]] = {}
    for record in records(path):
        if record.stream != "$log":
            out.setdefault(record.stream, []).append(record)
    return out


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def copy_log(source: Path, target: Path) -> Path:
    """Copy only the log's bytes (no lock or head index)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(source.read_bytes())
    return target


def write_log(path: Path, entries: Sequence[tuple[str, Event]], log_id: str = "crafted") -> Path:
    """A hand-written log: each (stream, event) appended in order through JsonlLog."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with JsonlLog.open(path, log_id=log_id, clock=StepClock()) as log:
        for stream, event in entries:
            log.append(stream, [event])
    return path


def intent(
    transfer_id: str,
    *,
    expected: str = CHECKSUM,
    mode: Mode = Mode.STRICT,
    requested: list[PrimitiveRequest] | None = None,
    adapter: str = "full",
) -> Intent:
    """A plausible intent for hand-written logs (the class's default requests)."""
    return Intent(
        transfer_id=transfer_id,
        artifact_id=f"artifact-{transfer_id}",
        artifact_class=CLASS,
        mode=mode,
        seed=1,
        expected_checksum=expected,
        size=3 * 4096,
        max_attempts=0,
        chunk_size=4096,
        source="source/artifact.bin",
        target="target/artifact.out",
        adapter=adapter,
        requested=requested if requested is not None else default_requests(default_matrix(), CLASS, 4096),
    )


def step(
    transfer_id: str,
    from_state: State,
    trigger: Trigger,
    to_state: State,
    reason: ReasonCode | None = None,
    *,
    cursor: int = 0,
    attempt: int = 0,
) -> Transition:
    return Transition(
        transfer_id=transfer_id,
        from_state=from_state,
        trigger=trigger,
        to_state=to_state,
        attempt=attempt,
        committed_cursor=cursor,
        reason_code=reason,
    )


def canonical(document: Any) -> bytes:
    """Sorted keys, UTF-8, trailing newline: computed here, independently of projections.base."""
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE)


def crafted_violations_log(path: Path) -> Path:
    """A log with a state change out of failed_closed, a forbidden 'accepted' and legitimate neighbours."""
    legacy = negotiate(intent("t-forbidden"), default_matrix(), load_profile("legacy_protocol"))
    assert legacy.outcome == "capability_mismatch"
    fine = negotiate(intent("t-fine"), default_matrix(), load_profile("full"))
    assert fine.outcome == "accepted"
    return write_log(
        path,
        [
            ("t-exit", IntentRecorded(intent=intent("t-exit"))),
            ("t-exit", step("t-exit", State.IDLE, Trigger.START, State.CAPABILITY_CHECK)),
            (
                "t-exit",
                step("t-exit", State.CAPABILITY_CHECK, Trigger.CAPABILITY_REJECTED, State.FAILED_CLOSED, ReasonCode.UNSUPPORTED_CAPABILITY),
            ),
            ("t-exit", step("t-exit", State.FAILED_CLOSED, Trigger.TRIGGER_REJECTED, State.FAILED_CLOSED)),  # a refusal, not an exit
            ("t-exit", step("t-exit", State.FAILED_CLOSED, Trigger.CHUNK_COMMITTED, State.SYNCING)),
            ("t-forbidden", IntentRecorded(intent=intent("t-forbidden"))),
            ("t-forbidden", msgspec.structs.replace(legacy, outcome="accepted", detail=[])),
            ("t-fine", IntentRecorded(intent=intent("t-fine"))),
            ("t-fine", fine),
        ],
    )


# --- sidecars on disk ----------------------------------------------------------------------


def edit_manifest(path: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    """Rewrite the sidecar manifest with `edit` applied to it (as JSON)."""
    document = json.loads(path.read_bytes())
    edit(document)
    path.write_text(json.dumps(document))


def fragment_file(manifest: Path, index: int) -> Path:
    return durability.fragment_path(manifest, index)


def flip_fragment(manifest: Path, index: int, at: int | None = None) -> None:
    """Flip one bit of fragment `index`'s file (in the middle of its bytes by default)."""
    path = fragment_file(manifest, index)
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if at is None else at] ^= 0x10
    path.write_bytes(bytes(data))


def blank_fragments(manifest: Path, indexes: Sequence[int]) -> None:
    """Lose the fragment files at `indexes`."""
    for i in indexes:
        fragment_file(manifest, i).unlink()


def copy_sidecar(pack: Path, directory: Path) -> Path:
    """Copy the sidecar of `pack` (manifest and fragments) into `directory`; the copy's manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    for path in durability.sidecar_files(pack):
        shutil.copyfile(path, directory / path.name)
    return directory / durability.sidecar_path(pack).name
