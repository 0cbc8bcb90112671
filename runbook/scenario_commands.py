"""`asup scenario list|run NAME|all`: the built-in scenarios through the real adapter."""

from __future__ import annotations

from pathlib import Path

import anyio
import typer
from rich.progress import Progress

from engine.appender import DirectAppender
from engine.machine import make_dispatcher
from engine.scenarios import SCENARIOS, Scenario, ScenarioOutcome, get, run_scenarios
from events.atomic import make_dirs
from events.clock import StepClock
from events.jsonl_log import JsonlLog
from runbook.demo import keep_earlier
from runbook.options import LOCK_TIMEOUT_OPT, ROOT_OPT
from runbook.output import console, emit_json, fold_table, reports_errors, styled

app = typer.Typer(
    rich_markup_mode="markdown",
    help="Built-in scenarios: success, interruption and resume, one per failure reason code.\n\nExample: asup scenario run all",
    no_args_is_help=True,
)


@app.command("list")
@reports_errors
def list_(as_json: bool = typer.Option(False, "--json", help="Machine-readable list.")) -> None:
    """List the scenarios with their expected outcome.

    Example: asup scenario list
    """
    rows = [
        {
            "name": s.name,
            "reference_id": s.reference_id,
            "mode": s.mode.value,
            "expect_state": s.expect_state.value,
            "expect_reason": s.expect_reason.value if s.expect_reason else None,
            "description": s.description,
        }
        for s in SCENARIOS
    ]
    if as_json:
        emit_json({"scenarios": rows})
        return
    table = fold_table("scenario", "reference id", "mode", "expected", "what happens")
    for r in rows:
        table.add_row(r["name"], r["reference_id"] or "-", r["mode"], f"{r['expect_state']} {r['expect_reason'] or ''}", r["description"])
    console().print(table)


@app.command()
@reports_errors
def run(
    name: str = typer.Argument(..., help="A scenario name, or 'all'."),
    log_path: Path | None = typer.Option(
        None, "--log", help="Log to write (an earlier file is kept as `LOG.<n>`) [default: ROOT/scenarios/scenarios.jsonl]."
    ),
    root: Path = ROOT_OPT,
    seed: int = typer.Option(7, "--seed", help="Seed of the generated artifacts and the transfers."),
    workdir: Path | None = typer.Option(None, "--workdir", help="Keep the generated stores here (default: a temp dir)."),
    lever: bool = typer.Option(True, "--lever/--no-lever", help="Compiled dispatcher (on) or the transitions.Machine (off)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable outcome."),
    lock_timeout: float = LOCK_TIMEOUT_OPT,
) -> None:
    """Run one scenario (or all) on seeded artifacts and check its terminal state, reason
    code and target; exit 1 if any check fails or a scenario ran no check.

    Example: asup scenario run all --log /tmp/scenarios.jsonl --seed 7
    """
    chosen = list(SCENARIOS) if name == "all" else [get(name)]
    log_path = log_path if log_path is not None else root / "scenarios" / "scenarios.jsonl"
    make_dirs(log_path.parent)
    kept = keep_earlier(log_path)
    outcomes = anyio.run(_run_all, chosen, log_path, seed, workdir, lever)
    checks = sum(len(o.checks) for o in outcomes)
    failed = [o for o in outcomes if not o.passed]
    if as_json:
        emit_json(
            {
                "log": str(log_path),
                "kept": str(kept) if kept else None,
                "checks": checks,
                "passed": not failed,
                "outcomes": [_row(o) for o in outcomes],
            }
        )
    else:
        _print(outcomes, log_path, checks)
    if failed or checks == 0:
        raise typer.Exit(1)


async def _run_all(chosen: list[Scenario], log_path: Path, seed: int, workdir: Path | None, lever: bool) -> list[ScenarioOutcome]:
    out = console()
    with (
        JsonlLog.open(log_path, log_id="scenarios", clock=StepClock()) as log,
        Progress(console=out, transient=True, disable=not out.is_terminal) as bar,
    ):
        task = bar.add_task("scenarios", total=len(chosen))
        return await run_scenarios(
            chosen, DirectAppender(log), make_dispatcher(lever), seed=seed, workdir=workdir, on_done=lambda _o: bar.advance(task)
        )


def _row(o: ScenarioOutcome) -> dict[str, object]:
    return {
        "name": o.name,
        "reference_id": o.reference_id,
        "transfer_id": o.transfer_id,
        "seed": o.seed,
        "state": o.state.value if o.state else None,
        "reason_code": o.reason_code.value if o.reason_code else None,
        "passed": o.passed,
        "checks": [{"name": c.name, "passed": c.passed, "detail": c.detail} for c in o.checks],
    }


def _print(outcomes: list[ScenarioOutcome], log_path: Path, checks: int) -> None:
    table = fold_table("scenario", "transfer", "state", "reason code", "checks", "verdict")
    for o in outcomes:
        verdict = styled("pass", "green") if o.passed else styled("FAIL", "red")
        table.add_row(
            o.name, o.transfer_id, str(o.state), str(o.reason_code or "-"), f"{sum(c.passed for c in o.checks)}/{len(o.checks)}", verdict
        )
    out = console()
    out.print(table)
    out.print(f"{checks} checks executed; log {log_path}", markup=False)
