"""`asup gate`, `asup e2e`, `asup readiness`: the runbook's drills."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import typer
from rich.text import Text

from events import strict_json
from events.atomic import make_dirs, write_atomic
from events.errors import AsupError, ErrorCode
from projections.artifact_paths import ArtifactPaths
from projections.base import canonical_json
from runbook import e2e as e2e_mod
from runbook import readiness as drill
from runbook import triage as triage_mod
from runbook.evidence import current_checklist
from runbook.gates import performance
from runbook.gates.report import GateReport
from runbook.options import LOCK_TIMEOUT_OPT, LOG_HELP, REMOTE_LOGS_OPT, ROOT_OPT
from runbook.options import remote_logs as remote_logs_of
from runbook.output import console, emit_json, fold_table, line, plural, reports_errors, styled
from runbook.report_commands import print_checklist

e2e_app = typer.Typer(
    rich_markup_mode="markdown", help="The e2e script pack: every scenario live, replayed and re-run, compared.\n\nExample: asup e2e run"
)
JSON_OPT = typer.Option(False, "--json", help="Machine-readable output.")
GATE_NAMES = {"capability": "capability", "state-machine": "state_machine", "fault": "fault", "performance": "performance"}


@reports_errors
def gate(
    name: str = typer.Argument(..., help="capability | state-machine | fault | performance | all"),
    root: Path = ROOT_OPT,
    record_baseline: bool = typer.Option(
        False, "--record-baseline", help="performance: store this run's candidate as the machine's baseline."
    ),
    baseline: Path | None = typer.Option(None, "--baseline", help="performance: also compare with a stored baseline (same machine only)."),
    as_json: bool = JSON_OPT,
    lock_timeout: float = LOCK_TIMEOUT_OPT,
) -> None:
    """Run a gate (real code, counted checks), write its report under asupersync/v1/gates/ and a
    gate event. Exit 1 when it fails or executed no check. The performance gate compares lever
    off and on interleaved in one run; a stored baseline is compared only on the machine that
    recorded it (the report names the machine).

    Example: asup gate state-machine --root artifacts
    """
    chosen = list(GATE_NAMES.values()) if name == "all" else [GATE_NAMES.get(name, "")]
    if "" in chosen:
        raise AsupError(ErrorCode.USAGE, f"unknown gate {name!r} (known: {', '.join(GATE_NAMES)}, all)")
    paths = ArtifactPaths(root)
    results: list[dict[str, Any]] = []
    for gate_name in chosen:
        report, target = drill.run_gate(paths, gate_name, _with_baseline(gate_name, paths, record_baseline, baseline))
        results.append(
            {
                "gate": gate_name,
                "verdict": report.verdict,
                "checks_executed": len(report.checks),
                "checks_failed": len(report.failed),
                "report": target,
                "failed": [msgspec.to_builtins(c) for c in report.failed[:20]],
            }
        )
    if as_json:
        emit_json({"gates": results})
    else:
        out = console()
        for r in results:
            color = "green" if r["verdict"] == "pass" else "red"
            counts = f"{r['checks_executed']} checks executed, {r['checks_failed']} failed"
            out.print(line(f"gate {r['gate']}: ", styled(r["verdict"], color), f" — {counts} ({r['report']})"))
            for failure in r["failed"]:
                out.print(f"  ✘ {failure['name']}: {failure['detail']}", markup=False)
    if any(r["verdict"] != "pass" for r in results):
        raise typer.Exit(1)


def _with_baseline(name: str, paths: ArtifactPaths, record: bool, stored: Path | None) -> Callable[[], GateReport] | None:
    if name != "performance" or not (record or stored):
        return None

    def run() -> GateReport:
        report = performance.run()
        if stored is not None:
            document = strict_json.load(stored, dict[str, Any], what="stored baseline", code=ErrorCode.USAGE)
            performance.compare_stored(report, document, performance.THRESHOLD)
        if record:
            make_dirs(paths.gates, under=paths.root)
            write_atomic(paths.gates / "asupersync_performance_baseline_v1.json", canonical_json(performance.stored_document(report)))
        return report

    return run


@e2e_app.callback(invoke_without_command=True)
def e2e_default(ctx: typer.Context) -> None:
    """Bare `asup e2e` runs the pack with the defaults (`asup e2e run`)."""
    if ctx.invoked_subcommand is None:
        e2e_run(root=Path(os.environ.get("ASUP_ROOT", "artifacts")), seed=7, as_json=False)


@e2e_app.command("run")
@reports_errors
def e2e_run(
    root: Path = ROOT_OPT, seed: int = typer.Option(7, "--seed"), as_json: bool = JSON_OPT, lock_timeout: float = LOCK_TIMEOUT_OPT
) -> None:
    """Run the pack: baseline live run, replay pass, fresh rerun; rows and a determinism report
    under e2e/latest/. Exit 1 when a scenario fails, executes no check, or a pass differs.

    Example: asup e2e run --root artifacts --seed 7
    """
    result = e2e_mod.run_e2e(ArtifactPaths(root), seed=seed)
    if as_json:
        emit_json(result)
    else:
        console().print(
            f"e2e: {result['rows']} rows ({result['failed']} failed), {result['checks']} checks; "
            f"replay trace equal: {result['determinism']['trace_equal']}; rows in {result['events']}",
            markup=False,
        )
    if not result["passed"]:
        raise typer.Exit(1)


@e2e_app.command("validate")
@reports_errors
def e2e_validate(path: Path = typer.Argument(..., help="An e2e_script_pack_events_v1.jsonl file."), as_json: bool = JSON_OPT) -> None:
    """Validate an e2e events file: every row well-formed, every scenario with every pass, no row with zero checks.

    Example: asup e2e validate artifacts/e2e/latest/e2e_script_pack_events_v1.jsonl
    """
    if not path.is_file():
        raise AsupError(ErrorCode.USAGE, "no such file", file=str(path))
    rows, problems = e2e_mod.validate(path)
    if as_json:
        emit_json({"file": str(path), "rows": rows, "problems": problems, "valid": not problems})
    else:
        console().print(f"{path}: {plural(rows, 'row')}, {plural(len(problems), 'problem')}", markup=False)
        for problem in problems:
            console().print(f"  {problem}", markup=False)
    if problems:
        raise typer.Exit(1)


@reports_errors
def readiness(
    root: Path = ROOT_OPT,
    seed: int = typer.Option(7, "--seed", help="Seed of the e2e pack and the decode drill."),
    as_json: bool = JSON_OPT,
    lock_timeout: float = LOCK_TIMEOUT_OPT,
    remote_logs: list[str] = REMOTE_LOGS_OPT,
) -> None:
    """The readiness drill: all gates, the e2e pack, evidence build, sidecar encode, scrub,
    decode drill, sign-off and escalation; prints the operator checklist and every artifact's
    path. Exit 0 only when every step and every checklist item pass.

    Example: asup readiness --root artifacts
    """
    from rich.progress import BarColumn, Progress, TextColumn  # imported by the verb that draws it

    paths = ArtifactPaths(root, remote_logs_of(remote_logs))
    results = []
    out = console()
    plan = drill.steps(paths, seed=seed)
    with Progress(TextColumn("{task.description}"), BarColumn(), console=out, transient=True, disable=not out.is_terminal) as bar:
        task = bar.add_task("readiness", total=len(plan))
        for label, step in plan:
            bar.update(task, description=label)
            results.append(step())
            bar.advance(task)
    summary = drill.summary(paths, results)
    if as_json:
        emit_json(summary)
    else:
        table = fold_table("step", "result", "checks", "detail", "artifact", title=f"readiness ({root})")
        for s in results:
            table.add_row(s.name, _passed(s.passed), str(s.checks), s.detail, s.artifact)
        out.print(table)
        print_checklist(current_checklist(paths))
        verdict = styled("READY", "green") if summary["passed"] else styled("NOT READY", "red")
        out.print(line(verdict, f": {summary['checks']} checks executed; checklist {summary['checklist']['verdict']}"))
    if not summary["passed"]:
        raise typer.Exit(1)


@reports_errors
def triage(
    target: str = typer.Argument(..., help=f"A failing log, or a reason code (e.g. retry_exhausted). {LOG_HELP}"),
    root: Path = ROOT_OPT,
    as_json: bool = JSON_OPT,
) -> None:
    """Find the failed transfers (or take the reason code), name their runbook section (A/B/C)
    and escalation level, run that section's steps with asup's commands and print what
    passed, what failed and the exact command to reproduce each. Exit 1 if any step failed.

    Example: asup triage artifacts/logs/transfers.jsonl
    """
    result = triage_mod.triage(target, ArtifactPaths(root))
    if as_json:
        emit_json(result)
    else:
        out = console()
        if result["failures"]:
            table = fold_table("transfer", "reason code", "section", "level", "failed at seq", "cause", title="failed transfers")
            for f in result["failures"]:
                table.add_row(f["transfer_id"], f["reason_code"], f["section"], f["level"], str(f["last_seq"]), f["cause"])
            out.print(table)
        elif triage_mod.names_log(target):
            out.print(f"{target}: no transfer failed closed", markup=False)
        triage_mod.print_suspended(out, result["suspended"])
        _print_stale(result["stale"])
        steps = fold_table("#", "section", "step", "result", "detail", title=f"runbook sections {', '.join(result['sections']) or '-'}")
        for n, s in enumerate(result["steps"], 1):
            steps.add_row(str(n), s["section"], s["step"], _passed(s["passed"]), s["detail"])
        out.print(steps)
        if result["steps"]:
            out.print("reproduce with (one line each, to copy):")
            for n, s in enumerate(result["steps"], 1):
                out.print(f"  {n}  {s['command']}", markup=False, soft_wrap=True)
        out.print(f"escalation level: {result['level'] or 'none'}; {result['checks']} steps run")
    if not result["passed"]:
        raise typer.Exit(1)


def _print_stale(stale: list[dict[str, Any]]) -> None:
    """Unfinished transfers nobody holds: each with the command that continues it."""
    if not stale:
        return
    out = console()
    table = fold_table("transfer", "target", "started", "why", title="stale transfers (no live lease holder)")
    for s in stale:
        table.add_row(s["transfer_id"], s["target"], s["started"], s["detail"])
    out.print(table)
    out.print("continue with (one line each, to copy):")
    for s in stale:
        out.print(f"  {s['resume_command']}", markup=False, soft_wrap=True)


def _passed(passed: bool) -> Text:
    return styled("pass", "green") if passed else styled("FAIL", "red")
