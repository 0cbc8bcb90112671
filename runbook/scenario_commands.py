"""`asup scenario list|run NAME|all`: the built-in scenarios through the real adapter."""

from __future__ import annotations

from pathlib import Path

import anyio
import typer

from engine.appender import DirectAppender
from engine.machine import make_dispatcher
from engine.scenarios import SCENARIOS, Scenario, ScenarioOutcome, get, run_scenarios
from events.clock import StepClock
from events.errors import AsupError, ErrorCode
from events.log_ref import LogRef
from events.payloads import LogCreated
from events.store import LogStore
from runbook.demo import keep_earlier
from runbook.log_writing import open_log
from runbook.options import LOCK_TIMEOUT_OPT, ROOT_OPT, log_arg
from runbook.output import console, emit_json, fold_table, plural, reports_errors, styled

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
    log_path: str | None = typer.Option(
        None,
        "--log",
        help="Log to write: a file (an earlier one is kept as `LOG.<n>`) or a new JetStream stream as nats://HOST:PORT/STREAM "
        "[default: ROOT/scenarios/scenarios.jsonl].",
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
    ref = log_arg(log_path if log_path is not None else root / "scenarios" / "scenarios.jsonl")
    chosen = list(SCENARIOS) if name == "all" else [get(name)]
    kept = keep_earlier(ref.path) if ref.url is None else None
    outcomes = anyio.run(_run_all, chosen, ref, seed, workdir, lever)
    checks = sum(len(o.checks) for o in outcomes)
    failed = [o for o in outcomes if not o.passed]
    if as_json:
        emit_json(
            {
                "log": ref.text,
                "kept": str(kept) if kept else None,
                "checks": checks,
                "passed": not failed,
                "outcomes": [_row(o) for o in outcomes],
            }
        )
    else:
        _print(outcomes, ref.text, checks)
    if failed or checks == 0:
        raise typer.Exit(1)


async def _run_all(chosen: list[Scenario], ref: LogRef, seed: int, workdir: Path | None, lever: bool) -> list[ScenarioOutcome]:
    from rich.progress import Progress  # imported by the verb that draws it

    out = console()
    with (
        open_log(ref, log_id="scenarios", clock=StepClock()) as log,
        Progress(console=out, transient=True, disable=not out.is_terminal) as bar,
    ):
        if ref.url is not None:
            _check_new(log, ref)
        task = bar.add_task("scenarios", total=len(chosen))
        return await run_scenarios(
            chosen, DirectAppender(log), make_dispatcher(lever), seed=seed, workdir=workdir, on_done=lambda _o: bar.advance(task)
        )


def _check_new(log: LogStore, ref: LogRef) -> None:
    """Scenario ids are deterministic: a second run into one stream would meet the first's
    transfers. A file is moved aside first; a stream cannot be, so it must be new (holding
    at most the header this run itself would write)."""
    held = log.last_position()[0]
    header = next(iter(log.read()), None) if held == 1 else None
    ours = header is not None and isinstance(header.data, LogCreated) and header.data.log_id == "scenarios"
    if held > 1 or (held == 1 and not ours):
        assert ref.url is not None
        message = (
            f"stream {ref.url.stream} already holds {plural(held, 'record')}: name a new stream; "
            "a file would be kept aside as LOG.<n>, a stream cannot be"
        )
        raise AsupError(ErrorCode.USAGE, message, file=ref.text)


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


def _print(outcomes: list[ScenarioOutcome], log_name: str, checks: int) -> None:
    table = fold_table("scenario", "transfer", "state", "reason code", "checks", "verdict")
    for o in outcomes:
        verdict = styled("pass", "green") if o.passed else styled("FAIL", "red")
        table.add_row(
            o.name, o.transfer_id, str(o.state), str(o.reason_code or "-"), f"{sum(c.passed for c in o.checks)}/{len(o.checks)}", verdict
        )
    out = console()
    out.print(table)
    out.print(f"{checks} checks executed; log {log_name}", markup=False)
