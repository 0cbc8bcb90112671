"""`asup replay` and `asup diff`."""

from __future__ import annotations

import contextlib
from pathlib import Path

import msgspec
import typer

from events.errors import AsupError, ErrorCode
from events.log_ref import readable, readable_upto_damage
from projections.fold import fold_log
from projections.transfers import Transfers
from replay.diff import diff_logs
from replay.reexecute import ReplayOutcome, ReplayReport, replay_log
from runbook.options import LOG_HELP, log_arg
from runbook.output import console, emit_json, fold_table, line, plural, reports_errors, styled, write_output

OUTCOME_COLORS = {ReplayOutcome.REPRODUCED: "green", ReplayOutcome.DIVERGED: "red", ReplayOutcome.IMPOSSIBLE: "magenta"}


@reports_errors
def replay(
    log: str = typer.Argument(..., help=f"A recorded log. {LOG_HELP}", show_default=False),
    transfer: str | None = typer.Option(None, "--transfer", help="Only this transfer."),
    until: int | None = typer.Option(None, "--until", help="Stop at this seq and print every transfer's state there."),
    trace_out: Path | None = typer.Option(None, "--trace", help="Write the re-execution's replay trace (same format as `asup trace`)."),
    lever: bool = typer.Option(True, "--lever/--no-lever", help="Compiled dispatcher (on) or the transitions.Machine (off)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable report."),
) -> None:
    """Re-execute recorded transfers with today's decision code and compare every event.
    Exit 0 when every transfer is reproduced, 1 on a divergence, an impossible transition
    or a torn tail (replayed up to it). Touches no store and no network.

    Example: asup replay artifacts/logs/transfers.jsonl --transfer t-3b1b0c2c2f27 --trace /tmp/replay.jsonl
    """
    ref = log_arg(log)
    with readable_upto_damage(ref) as (path, damage):
        _existing(path)
        report, trace = replay_log(path, transfer=transfer, until=until, lever=lever, want_trace=trace_out is not None)
        states = fold_log(path, [Transfers()], until_seq=until).states["transfers"] if until is not None else None
    report = _named(report, path, ref.text)
    if damage is not None and report.problem is None and (until is None or until >= (damage.seq or 0)):
        report = msgspec.structs.replace(report, problem=damage.one_line())  # replayed up to it, as for a file
    if transfer is not None and not report.transfers:
        raise AsupError(ErrorCode.USAGE, f"no transfer {transfer!r} in the log", file=ref.text)
    if trace_out is not None:
        write_output(trace_out, trace)
    if as_json:
        payload = msgspec.to_builtins(report) | {"reproduced": report.reproduced}
        if states is not None:
            payload["until"] = {"seq": until, **Transfers().render(states)}
        emit_json(payload)
    else:
        _print(report, until, states)
    if not report.reproduced:
        raise typer.Exit(1)


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise AsupError(ErrorCode.LOG_NOT_FOUND, "no such log file", file=str(path))
    return path


def _named(report: ReplayReport, path: Path, name: str) -> ReplayReport:
    """`report` naming the log as the operator did (not the snapshot a URL was read from)."""
    if name == str(path):
        return report
    problem = report.problem.replace(str(path), name) if report.problem else None
    return msgspec.structs.replace(report, log=name, problem=problem)


def _print(report: ReplayReport, until: int | None, states: object) -> None:
    out = console()
    table = fold_table("transfer", "outcome", "transitions", "terminal", "reason")
    for t in report.transfers:
        color = OUTCOME_COLORS[t.outcome]
        table.add_row(t.transfer_id, styled(t.outcome, color), str(t.transitions), t.terminal_state or "-", t.reason_code or "-")
    out.print(table)
    for t in report.transfers:
        if t.divergence is not None:
            d = t.divergence
            out.print(f"{t.transfer_id}: first divergence at seq {d.seq} (transition #{d.index}), fields {d.fields}", markup=False)
            for field in d.fields:
                out.print(f"    {field}: expected {(d.expected or {}).get(field)!r}, actual {(d.actual or {}).get(field)!r}", markup=False)
            for lead in d.leading:
                out.print(f"    after seq {lead['seq']}: {lead['from_state']} -{lead['trigger']}-> {lead['to_state']}", markup=False)
        if t.impossible:
            out.print(f"{t.transfer_id}: impossible: {t.impossible}", markup=False)
    if report.problem:
        out.print(line(styled("replayed up to:", "yellow"), f" {report.problem}"))
    if until is not None and isinstance(states, object):
        rendered = Transfers().render(states)  # type: ignore[arg-type]
        out.print(f"state as of seq {until}:")
        for row in rendered["transfers"]:
            out.print(f"  {row['transfer_id']}: {row['state']} (attempt {row['attempt']}, cursor {row['committed_cursor']})", markup=False)
    verdict = "reproduced" if report.reproduced else "NOT reproduced"
    out.print(f"{plural(len(report.transfers), 'transfer')} replayed: {verdict}")


@reports_errors
def diff(
    log_a: str = typer.Argument(..., help=f"The baseline log. {LOG_HELP}"),
    log_b: str = typer.Argument(..., help="The log to compare (a replay, a new code version), a file or a URL likewise."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable diff."),
) -> None:
    """Semantic diff by stream, ignoring timestamps, clock readings, digests, ids and seq:
    the first divergent event per transfer and summary counts. Exit 1 when any stream differs.

    Example: asup diff baseline.jsonl candidate.jsonl
    """
    ref_a, ref_b = log_arg(log_a), log_arg(log_b)
    with contextlib.ExitStack() as stack:
        path_a, path_b = (_existing(stack.enter_context(readable(ref))) for ref in (ref_a, ref_b))  # a's error first
        diffs = diff_logs(path_a, path_b)
    counts: dict[str, int] = {}
    for d in diffs:
        counts[d.status] = counts.get(d.status, 0) + 1
    if as_json:
        emit_json(
            {"a": ref_a.text, "b": ref_b.text, "counts": dict(sorted(counts.items())), "streams": [msgspec.to_builtins(d) for d in diffs]}
        )
    else:
        out = console()
        for d in diffs:
            if d.status == "differs":
                out.print(f"{d.stream}: differs at event #{d.index} (seq {d.seq_a} vs {d.seq_b}): {', '.join(d.fields)}", markup=False)
            elif d.status != "same":
                out.print(f"{d.stream}: {d.status}", markup=False)
        out.print("summary: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if any(d.status != "same" for d in diffs):
        raise typer.Exit(1)
