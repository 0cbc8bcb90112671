"""The e2e script pack: every built-in scenario run three ways and compared.

- `baseline`: a live run with fixed seeds into `e2e/latest/e2e_baseline_log.jsonl`;
- `replay`:   the baseline log re-executed by today's code (no store touched), and its
              re-execution trace compared byte for byte with the baseline's trace;
- `rerun`:    a fresh live run with the same seeds, compared with the baseline event by
              event per stream (timestamps, clock readings and digests aside).
Rows go to `e2e/latest/e2e_script_pack_events_v1.jsonl` (one per scenario and pass), the
comparison to `e2e/latest/e2e_determinism_report_v1.json`. A scenario that executed no
check fails."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import msgspec

from engine.appender import DirectAppender
from engine.machine import make_dispatcher
from engine.scenarios import SCENARIOS, ScenarioOutcome, run_scenarios
from engine.scrub import keep_aside
from events import strict_json
from events.atomic import make_dirs, write_atomic
from events.clock import StepClock
from events.errors import AsupError, ErrorCode
from events.jsonl_log import JsonlLog, drop_side_files
from projections.artifact_paths import ArtifactPaths
from projections.base import canonical_json
from projections.fold import fold_log
from projections.traces import Traces
from projections.transfers import Transfers
from replay.diff import diff_logs
from replay.reexecute import ReplayOutcome, replay_log

SCHEMA = "asup.e2e/1"
PASSES = ("baseline", "replay", "rerun")


class E2ERow(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    schema_version: str
    run_id: str
    scenario_id: str
    reference_scenario_id: str
    pass_label: str
    mode: str
    deterministic_seed: int
    status: str  # passed | failed
    reason_code: str | None
    terminal_state: str | None
    checks_executed: int
    checks_failed: int
    duration_ms: float
    replay_command: str
    log_path: str
    trace_path: str
    detail: str = ""


def _dir(paths: ArtifactPaths) -> Path:
    return paths.root / "e2e" / "latest"


def _fresh(path: Path) -> None:
    if os.path.lexists(path):
        keep_aside(path, "previous")
        drop_side_files(path)


async def _live(log_path: Path, seed: int, lever: bool) -> list[ScenarioOutcome]:
    with JsonlLog.open(log_path, log_id="e2e", clock=StepClock()) as log:
        return await run_scenarios(list(SCENARIOS), DirectAppender(log), make_dispatcher(lever), seed=seed)


def run_e2e(paths: ArtifactPaths, *, seed: int = 7, lever: bool = True) -> dict[str, Any]:
    out = _dir(paths)
    make_dirs(out, under=paths.root)
    baseline, rerun = out / "e2e_baseline_log.jsonl", out / "e2e_rerun_log.jsonl"
    trace_base, trace_replay = out / "e2e_baseline_trace.jsonl", out / "e2e_replay_trace.jsonl"
    for path in (baseline, rerun):
        _fresh(path)
    run_id = f"e2e-seed{seed}-{len(SCENARIOS)}scenarios"
    live = anyio.run(_live, baseline, seed, lever)
    traces = Traces()
    recorded = b"".join(traces.lines(fold_log(baseline, [traces]).states["traces"]))
    report, replayed = replay_log(baseline, lever=lever)
    write_atomic(trace_base, recorded)
    write_atomic(trace_replay, replayed)
    again = anyio.run(_live, rerun, seed, lever)
    diffs = {d.stream: d for d in diff_logs(baseline, rerun)}
    durations = {log: _durations(log) for log in (baseline, rerun)}
    by_stream = {t.transfer_id: t for t in report.transfers}
    rows = []
    for scenario, first, second in zip(SCENARIOS, live, again, strict=True):
        common = {
            "schema_version": SCHEMA,
            "run_id": run_id,
            "scenario_id": scenario.name,
            "reference_scenario_id": scenario.reference_id,
            "mode": scenario.mode.value,
            "deterministic_seed": seed,
            "replay_command": f"asup scenario run {scenario.name} --seed {seed}",
            "log_path": paths.rel(baseline),
            "trace_path": paths.rel(trace_base),
        }
        rows.append(_row(common, "baseline", first, [], durations[baseline].get(first.transfer_id, 0.0)))
        replay = by_stream.get(first.transfer_id)
        outcome = replay.outcome if replay else "missing"
        replay_checks = [("reproduced", outcome == ReplayOutcome.REPRODUCED, outcome)]
        rows.append(
            _row(
                {**common, "trace_path": paths.rel(trace_replay)},
                "replay",
                first,
                replay_checks,
                durations[baseline].get(first.transfer_id, 0.0),
            )
        )
        stream = diffs.get(first.transfer_id)
        rerun_checks = [("same_as_baseline", stream is not None and stream.status == "same", stream.status if stream else "missing")]
        rows.append(
            _row({**common, "log_path": paths.rel(rerun)}, "rerun", second, rerun_checks, durations[rerun].get(second.transfer_id, 0.0))
        )
    events_path = out / "e2e_script_pack_events_v1.jsonl"
    write_atomic(events_path, b"".join(canonical_json(msgspec.to_builtins(r)) for r in rows))
    determinism = {
        "schema_version": "1.0.0",
        "artifact_id": "asupersync-e2e-determinism-report-v1",
        "run_id": run_id,
        "trace_equal": recorded == replayed,
        "trace_bytes": len(recorded),
        "replay": {"transfers": len(report.transfers), "reproduced": sum(t.outcome is ReplayOutcome.REPRODUCED for t in report.transfers)},
        "rerun": {
            "streams": len(diffs),
            "same": sum(d.status == "same" for d in diffs.values()),
            "events_compared": sum(min(d.events_a, d.events_b) for d in diffs.values()),
        },
        "differences": [msgspec.to_builtins(d) for d in diffs.values() if d.status != "same"],
    }
    write_atomic(out / "e2e_determinism_report_v1.json", canonical_json(determinism))
    failed = [r for r in rows if r.status != "passed"]
    return {
        "rows": len(rows),
        "failed": len(failed),
        "events": str(events_path),
        "determinism": determinism,
        "passed": not failed and determinism["trace_equal"],
        "checks": sum(r.checks_executed for r in rows),
    }


def _durations(log: Path) -> dict[str, float]:
    """Each transfer's duration (injected clock) as its last transition recorded it."""
    views = fold_log(log, [Transfers()]).states["transfers"].transfers
    return {name: view.duration_ms for name, view in views.items()}


def _row(common: dict[str, Any], label: str, outcome: ScenarioOutcome, extra: list[tuple[str, bool, str]], duration_ms: float) -> E2ERow:
    checks = [(c.name, c.passed, c.detail) for c in outcome.checks] + extra
    failed = [c for c in checks if not c[1]]
    return E2ERow(
        **common,
        pass_label=label,
        status="passed" if checks and not failed else "failed",
        reason_code=outcome.reason_code.value if outcome.reason_code else None,
        terminal_state=outcome.state.value if outcome.state else None,
        checks_executed=len(checks),
        checks_failed=len(failed),
        duration_ms=duration_ms,
        detail="; ".join(f"{name}: {detail}" for name, _, detail in failed),
    )


def validate(path: Path) -> tuple[int, list[str]]:
    """(rows, problems): every row well-formed, every scenario has every pass, no zero-check row."""
    problems = []
    seen: dict[str, set[str]] = {}
    rows = 0
    data = strict_json.read(path, what="e2e rows", code=ErrorCode.USAGE, max_bytes=strict_json.MAX_JSONL)
    for number, line in enumerate(data.splitlines(), 1):
        try:
            row = strict_json.decode(line, E2ERow, what="row", code=ErrorCode.USAGE, file=str(path), line=number)
        except AsupError as error:
            problems.append(error.one_line())
            continue
        rows += 1
        seen.setdefault(row.scenario_id, set()).add(row.pass_label)
        if row.checks_executed == 0:
            problems.append(f"{path}:{number}: {row.scenario_id}/{row.pass_label} executed no check")
        if row.status not in ("passed", "failed"):
            problems.append(f"{path}:{number}: status {row.status!r}")
    for scenario, labels in sorted(seen.items()):
        missing = set(PASSES) - labels
        if missing:
            problems.append(f"{path}: {scenario} lacks passes {sorted(missing)}")
    if rows == 0:
        problems.append(f"{path}: no rows")
    return rows, problems
