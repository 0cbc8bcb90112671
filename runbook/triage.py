"""Triage (runbook section 1): from a failing log or a reason code to the runbook section,
the escalation level, and the section's steps run with asup's own commands — each step
reported with what it found and the exact command that reproduces it."""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console

from engine import liveness
from engine.durability import sidecar_path
from engine.liveness import resume_command
from events.errors import AsupError, ErrorCode
from events.jetstream.url import is_url
from events.log_ref import log_ref, readable
from events.observations import StoreFailed
from events.vocabulary import ReasonCode, State
from projections.artifact_paths import ArtifactPaths
from projections.causes import Causes, CausesState, observation
from projections.fold import fold_readable
from projections.runbook_map import LEVEL, SECTION, Level
from projections.transfers import Transfers, TransferView
from replay.reexecute import ReplayOutcome, replay_log
from runbook import e2e, evidence
from runbook.output import fold_table
from runbook.readiness import run_gate
from runbook.storage_check import storage_now


class TriageStep(msgspec.Struct, frozen=True):
    section: str
    step: str
    passed: bool
    detail: str
    command: str


class Failure(msgspec.Struct, frozen=True):
    transfer_id: str
    reason_code: ReasonCode
    section: str
    level: Level
    last_seq: int
    cause: str = ""  # why, in one line (engine.causes)


def parse_code(text: str) -> ReasonCode:
    try:
        return ReasonCode(text)
    except ValueError:
        known = ", ".join(code.value for code in ReasonCode)
        raise AsupError(ErrorCode.USAGE, f"{text!r} is neither a log file nor a reason code (known: {known})") from None


class SuspendedTransfer(msgspec.Struct, frozen=True):
    """A transfer an operator's signal stopped: not an incident, but work left to resume."""

    transfer_id: str
    committed_cursor: int
    size: int
    checkpoint: str
    resume_command: str


def _fold(log: Path) -> tuple[list[TransferView], CausesState]:
    """The log folded once for everything triage reads of it: its transfers (by id) and causes."""
    states = fold_readable(log, [Transfers(), Causes()])
    return sorted(states["transfers"].transfers.values(), key=lambda v: v.transfer_id), states["causes"]


def names_log(target: str) -> bool:
    """A log triage reads (a file or a nats:// URL), not a reason code."""
    return is_url(target) or Path(target).is_file()


def suspended(log: Path | str, views: list[TransferView]) -> list[SuspendedTransfer]:
    """The transfers of `log` left suspended, each with the command that continues it."""
    return [
        SuspendedTransfer(v.transfer_id, v.committed_cursor, v.size, v.checkpoint, resume_command(v.transfer_id, log))
        for v in views
        if v.suspended and v.state is State.SYNCING
    ]


def failures(views: list[TransferView], causes: dict[str, str]) -> list[Failure]:
    out = []
    for view in views:
        if view.state is State.FAILED_CLOSED and view.reason_code:
            code = view.reason_code
            out.append(Failure(view.transfer_id, code, SECTION[code], LEVEL[code], view.last_seq, causes.get(view.transfer_id, "")))
    return out


def _gate_step(paths: ArtifactPaths, section: str, gate: str, flag: str) -> TriageStep:
    report, target = run_gate(paths, gate)
    detail = f"{len(report.checks)} checks, {len(report.failed)} failed; report {target}"
    return TriageStep(section, f"{gate} gate", report.verdict == "pass", detail, f"asup gate {flag} --root {paths.root}")


def _contracts_step(paths: ArtifactPaths) -> TriageStep:
    written = evidence.export_contracts(paths)
    detail = (
        "the runbook copies match the shipped contracts" if not written else f"refreshed {len(written)} drifted copies (old kept aside)"
    )
    return TriageStep("A", "contract artifacts current", True, detail, "asup contract validate")


def _durability_steps(paths: ArtifactPaths) -> list[TriageStep]:
    sidecar = sidecar_path(paths.pack)
    if not paths.pack.exists() or not sidecar.exists():
        return [
            TriageStep(
                "B",
                "scrub and decode drill",
                False,
                "no sealed evidence pack with a sidecar under the root",
                f"asup readiness --root {paths.root}",
            )
        ]
    before = len(evidence.ops_state(paths).proofs)
    scrub = evidence.run_scrub(paths, paths.pack, sidecar, repair=False)
    drill = evidence.run_drill(paths, sidecar, paths.recovered, seed=7)
    after = len(evidence.ops_state(paths).proofs)
    return [
        TriageStep("B", "scrub", scrub.healthy, f"{scrub.status}: {scrub.detail}", f"asup durability scrub {paths.pack} {sidecar}"),
        TriageStep(
            "B",
            "decode drill",
            drill.ok and drill.one_more_loss_failed_closed,
            f"dropped {drill.dropped}; proof #{drill.proof_count}",
            f"asup durability decode-drill {sidecar} {paths.recovered}",
        ),
        TriageStep(
            "B", "decode proof count increments", after == before + 1, f"{before} -> {after}", f"asup checklist --root {paths.root}"
        ),
    ]


def _replay_steps(log: Path | None, failed: list[Failure], name: str) -> list[TriageStep]:
    steps = []
    for failure in failed:
        if failure.section not in ("C", "D") or log is None:
            continue
        report, _ = replay_log(log, transfer=failure.transfer_id)
        outcome = report.transfers[0].outcome if report.transfers else "missing"
        steps.append(
            TriageStep(
                failure.section,
                f"replay {failure.transfer_id}",
                outcome == ReplayOutcome.REPRODUCED,
                f"{outcome}; failed closed at seq {failure.last_seq}",
                f"asup replay {name} --transfer {failure.transfer_id}",
            )
        )
    return steps


def _storage_steps(log: str, failed: list[Failure], views: list[TransferView], causes: CausesState) -> list[TriageStep]:
    """Section D, per io_failed transfer: the storage it names, as it is now."""
    cursors = {v.transfer_id: v.committed_cursor for v in views}
    steps = []
    for failure in failed:
        observed = observation(causes.last.get(failure.transfer_id))
        if failure.section != "D" or not isinstance(observed, StoreFailed):
            continue
        intent = causes.intents.get(failure.transfer_id)
        healthy, found = storage_now(observed, intent, cursors[failure.transfer_id])
        rerun = intent.replay_command if intent is not None and intent.replay_command else f"asup status {shlex.quote(log)}"
        detail = f"recorded: {causes.causes.get(failure.transfer_id, observed.detail)}; now: {found}"
        steps.append(TriageStep("D", f"storage of {failure.transfer_id}", healthy, detail, rerun))
    return steps


def _e2e_step(paths: ArtifactPaths) -> TriageStep:
    result = e2e.run_e2e(paths)
    rows, problems = e2e.validate(Path(result["events"]))
    passed = bool(result["passed"]) and not problems
    detail = f"{rows} rows, {result['failed']} failed; structured traces validated" + (f"; {problems[0]}" if problems else "")
    return TriageStep(
        "C",
        "e2e replay pack + trace validation",
        passed,
        detail,
        f"asup e2e run --root {paths.root} && asup e2e validate {result['events']}",
    )


SECTION_STEPS: dict[str, Callable[[ArtifactPaths], list[TriageStep]]] = {
    "A": lambda paths: [_gate_step(paths, "A", "capability", "capability"), _contracts_step(paths)],
    "B": lambda paths: [_gate_step(paths, "B", "fault", "fault"), *_durability_steps(paths)],
    "C": lambda paths: [_gate_step(paths, "C", "state_machine", "state-machine"), _e2e_step(paths)],
    "D": lambda paths: [_gate_step(paths, "D", "fault", "fault")],
}


def triage(target: str, paths: ArtifactPaths) -> dict[str, Any]:
    if not names_log(target):
        return _triage(target, paths, "", None)
    ref = log_ref(target)
    name = ref.text if ref.url is not None else str(ref.path)  # what the commands it prints name
    with readable(ref) as log:  # a URL's snapshot lives while its transfers are replayed
        return _triage(target, paths, name, log)


def _triage(target: str, paths: ArtifactPaths, name: str, log: Path | None) -> dict[str, Any]:
    stopped: list[SuspendedTransfer] = []
    views: list[TransferView] = []
    if log is not None:
        views, causes = _fold(log)
        failed, stopped = failures(views, causes.causes), suspended(name, views)
        sections = sorted({f.section for f in failed})
    else:
        code = parse_code(target)
        failed = []
        sections = [SECTION[code]]
    steps = _replay_steps(log, failed, name)  # first: later steps regenerate e2e logs under the root
    if log is not None:
        steps += _storage_steps(name, failed, views, causes)
    for section in sections:
        steps += SECTION_STEPS[section](paths)
    result = {
        "target": target,
        "failures": [msgspec.to_builtins(f) for f in failed],
        "suspended": [msgspec.to_builtins(s) for s in stopped],
        "sections": sections,
        "level": min((f.level for f in failed), default=LEVEL[parse_code(target)] if log is None else None),
        "steps": [msgspec.to_builtins(s) for s in steps],
        "passed": all(s.passed for s in steps),
        "checks": len(steps),
    }
    return with_stale(result, name if log is not None else None, views)


def with_stale(result: dict[str, Any], log: Path | str | None, views: list[TransferView]) -> dict[str, Any]:
    """`result` with the log's stale transfers (unfinished, no live lease holder), each with
    the command that continues it; they raise the level to at least their escalation's P2."""
    stale = [] if log is None else liveness.stale_facts(views, log)
    level = result["level"]
    if stale and level is None:
        level = Level.P2
    return {**result, "stale": stale, "level": level}


def print_suspended(out: Console, rows: list[dict[str, Any]]) -> None:
    """The short section of suspended transfers, each with its resume command to copy."""
    if not rows:
        return
    table = fold_table("transfer", "bytes", "checkpoint", title="suspended transfers (stopped by a signal; not an incident)")
    for row in rows:
        table.add_row(row["transfer_id"], f"{row['committed_cursor']}/{row['size']}", row["checkpoint"] or "none yet: resumes from 0")
    out.print(table)
    out.print("resume with (one line each, to copy):")
    for row in rows:
        out.print(f"  {row['resume_command']}", markup=False, soft_wrap=True)
