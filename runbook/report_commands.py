"""`asup status`, `asup trace`, `asup escalate`, `asup checklist`: read models of logs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import msgspec
import typer
from rich.table import Table

from engine import liveness
from engine.liveness import Liveness
from events.errors import AsupError, ErrorCode
from events.log_ref import LogRef, as_problem, readable, readable_upto_damage
from events.vocabulary import ReasonCode, State
from projections import checklist as checklist_mod
from projections.artifact_paths import ArtifactPaths
from projections.audit import Audit
from projections.base import Projection
from projections.causes import Causes
from projections.escalation import Inputs, escalate, level_of, sort_rules
from projections.fold import fold_log, render_all
from projections.metrics import Metrics
from projections.operations import OpsState
from projections.runbook_map import Level
from projections.traces import Traces
from projections.transfers import Transfers, TransferView
from projections.violations import Violations
from runbook.evidence import current_checklist, find_logs, gather_facts, ops_state
from runbook.options import LOG_HELP, REMOTE_LOGS_OPT, ROOT_OPT, check_known, log_arg
from runbook.options import remote_logs as remote_logs_of
from runbook.output import STATE_COLORS, console, emit_json, fold_table, line, plural, reports_errors, styled, write_output

LOG_ARG = typer.Argument(..., help=f"A transfer log. {LOG_HELP}", show_default=False)


def _fold(ref: LogRef, until: int | None = None, *, causes: bool = False) -> tuple[dict[str, Any], Any]:
    projections: list[Projection[Any]] = [Transfers(), Audit(), Metrics(), Violations(), *([Causes()] if causes else [])]
    with readable_upto_damage(ref) as (log, damage):
        _existing(log)
        result = fold_log(log, projections, until_seq=until)
        if damage is not None and result.problem is None and (until is None or until >= (damage.seq or 0)):
            result.problem = as_problem(damage, log.stat().st_size)  # where a file's fold stops too
    return result.states, result


def _existing(log: Path) -> None:
    if not log.is_file():
        raise AsupError(ErrorCode.LOG_NOT_FOUND, "no such log file", file=str(log))


@reports_errors
def status(
    log: str = LOG_ARG,
    until: int | None = typer.Option(None, "--until", help="State as of this seq (time travel)."),
    state: str | None = typer.Option(None, "--state", help="Only transfers in this state."),
    reason: str | None = typer.Option(None, "--reason", help="Only transfers that failed with this reason code."),
    transfer: str | None = typer.Option(None, "--transfer", help="Only this transfer."),
    stale: bool = typer.Option(False, "--stale", help="Only unfinished transfers whose lease holder is gone."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable projections."),
) -> None:
    """Transfers (target, state, attempt, cursor, reason, start, timings), fail-closed audit,
    reason codes and latency tails. An unfinished transfer whose lease nobody holds any more
    shows as `syncing (stale)`. Piped, every table is plain columns, one row per line, never
    wrapped.

    Example: asup status artifacts/logs/transfers.jsonl --state failed_closed | grep ledger
    """
    check_known("--state", state, State, "a state")
    check_known("--reason", reason, ReasonCode, "a reason code")
    ref = log_arg(log)
    states, result = _fold(ref, until, causes=True)  # only status shows causes
    projections: list[Projection[Any]] = [Transfers(), Audit(), Metrics()]
    rendered = render_all(projections, states)
    rows = [
        t
        for t in rendered["transfers"]["transfers"]
        if (state is None or t["state"] == state)
        and (reason is None or t["reason_code"] == reason)
        and (transfer is None or t["transfer_id"] == transfer)
    ]
    views, causes = states["transfers"].transfers, states["causes"].causes
    why_stale: dict[str, str] = {}
    for t in rows:
        verdict = _liveness(views[t["transfer_id"]], until)
        t["liveness"] = verdict.liveness.value if verdict is not None else None
        if verdict is not None and verdict.liveness is Liveness.STALE:
            why_stale[t["transfer_id"]] = verdict.detail
        t["cause"] = causes.get(t["transfer_id"]) if t["state"] == State.FAILED_CLOSED else None
    rendered["transfers"]["transfers"] = [t for t in rows if not stale or t["liveness"] == Liveness.STALE]
    problem = result.problem.error(ref.text).one_line() if result.problem else None
    if as_json:
        emit_json({"log": ref.text, "last_seq": result.seq, "problem": problem, **rendered})
    else:
        _print_status(rendered, ref.text, result.seq, problem, why_stale)
    if problem:
        raise typer.Exit(1)


def _liveness(view: TransferView, until: int | None) -> liveness.Verdict | None:
    """held, stale or unknown (and why) for an unfinished transfer, None for a terminal
    one. Asked of the lease now, so not of a past state (`--until`): a transfer unfinished
    then may be done since."""
    if until is not None:
        return None
    return liveness.of_transfer(view)


def _print_status(rendered: dict[str, Any], log: str, seq: int, problem: str | None, why_stale: dict[str, str]) -> None:
    out = console()
    headers = ("transfer", "target", "class", "mode", "state", "reason", "attempt", "bytes", "started", "ms")
    table = fold_table(*headers, title=f"{log} (through seq {seq})")
    for t in rendered["transfers"]["transfers"]:
        stale = t["liveness"] == Liveness.STALE
        color = "magenta" if stale else STATE_COLORS.get(t["state"], "yellow")
        shown = f"{t['state']} (suspended)" if t["suspended"] else f"{t['state']} (stale)" if stale else t["state"]
        table.add_row(
            t["transfer_id"],
            t["target_path"] or t["target"],
            t["artifact_class"],
            t["mode"],
            styled(shown, color),
            t["reason_code"] or "",
            str(t["attempt"]),
            f"{t['committed_cursor']}/{t['size']}",
            t["started"],
            f"{t['duration_ms']:.1f}",
        )
    out.print(table)
    if why_stale:
        out.print(_stale_table(why_stale, log))
    failed = [t for t in rendered["transfers"]["transfers"] if t["cause"]]
    if failed:
        causes = fold_table("transfer", "cause", title="why they failed closed")
        for t in failed:
            causes.add_row(t["transfer_id"], t["cause"])
        out.print(causes)
    codes = rendered["audit"]["reason_codes"]
    if codes:
        reasons = fold_table("reason code", "count", "runbook section", "level", title="fail-closed reason codes")
        for code, row in codes.items():
            reasons.add_row(code, str(row["count"]), row["section"], row["level"])
        out.print(reasons)
    ops = rendered["metrics"]["operations"]
    if ops:
        metrics = fold_table("operation", "count", "p50 ms", "p95 ms", "p99 ms", title="latency (injected clock)")
        for name, row in ops.items():
            metrics.add_row(name, str(row["count"]), f"{row['p50_ms']:.3f}", f"{row['p95_ms']:.3f}", f"{row['p99_ms']:.3f}")
        out.print(metrics)
    if problem:
        out.print(line(styled("log problem:", "red"), f" {problem}"))


def _stale_table(why_stale: dict[str, str], log: str) -> Table:
    """The stale transfers' leases: what each says (whose it was, why nobody holds it now),
    the transfer and the command that continues it. The lease comes first, so a row of the
    transfers table stays the only line that starts with a transfer id."""
    table = fold_table("lease", "transfer", "continue with", title="stale: nobody holds these leases")
    for transfer, why in why_stale.items():
        table.add_row(why, transfer, liveness.resume_command(transfer, log))
    return table


@reports_errors
def trace(
    log: str = LOG_ARG,
    output: Path | None = typer.Option(None, "-o", "--output", help="Write the trace here (default: stdout)."),
    transfer: str | None = typer.Option(None, "--transfer", help="Only this transfer."),
) -> None:
    """Write the replay trace: per transfer, its transitions and observations in order, with seq (canonical JSONL).

    Example: asup trace artifacts/logs/transfers.jsonl -o /tmp/trace.jsonl
    """
    ref = log_arg(log)
    traces = Traces()
    with readable(ref) as path:
        _existing(path)
        result = fold_log(path, [traces])
    if result.problem is not None:
        raise result.problem.error(ref.text)
    lines = traces.lines(result.states["traces"], transfer)
    data = b"".join(lines)
    if output is None:
        sys.stdout.buffer.write(data)
    else:
        write_output(output, data)
        console(stderr=True).print(f"wrote {len(lines)} trace rows to {output}", markup=False)


@reports_errors
def escalate_cmd(
    log: list[str] = typer.Argument(None, help=f"Transfer logs to judge (default: every log under --root). {LOG_HELP}"),
    root: Path = ROOT_OPT,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable verdict."),
) -> None:
    """The escalation level (P0/P1/P2) with the rules that fired and their evidence. Exit 1 on P0 or P1.

    Example: asup escalate artifacts/logs/transfers.jsonl
    """
    paths = ArtifactPaths(root)
    if not log and not root.is_dir():
        raise AsupError(ErrorCode.USAGE, "no such root: nothing to judge (a typo? --root or ASUP_ROOT names it)", file=str(root))
    logs = [log_arg(text) for text in log] if log else [log_arg(p) for p in _logs_under(paths)]
    rules = []
    transfers = 0
    for ref in logs:
        states, result = _fold(ref)
        transfers += len(states["transfers"].transfers)
        metrics = Metrics().render(states["metrics"])
        violations = states["violations"]
        problems = (
            [{"log": ref.text, "line": result.problem.line, "message": result.problem.error(ref.text).one_line()}] if result.problem else []
        )
        rules += escalate(
            Inputs(
                transfers=states["transfers"],
                audit=states["audit"],
                metrics=metrics,
                log_problems=problems,
                terminal_exits=violations.terminal_exits,
                forbidden_accepts=violations.forbidden_accepts,
                stale=liveness.stale_facts(states["transfers"].transfers.values(), ref.text),
            )
        )
    ops = ops_state(paths) if root.is_dir() else OpsState()
    facts = gather_facts(paths) if root.is_dir() else checklist_mod.Facts(pack_digest=None, pack_drift=[], logs=[], pack_path="")
    # evidence drift needs evidence: with no sealed pack under the root there is nothing to drift
    items = checklist_mod.derive(ops, facts) if facts.pack_digest is not None else None
    rules = sort_rules(rules + escalate(Inputs(ops=ops, checklist=items, pack_drift=facts.pack_drift)))
    level = level_of(rules)
    if level is None and transfers == 0:
        where = f"under {root}" if not log else "in the logs given"
        raise AsupError(ErrorCode.USAGE, f"no transfers {where}: an all-clear would judge nothing")
    if as_json:
        judged = {"logs": [ref.text for ref in logs], "transfers": transfers}
        emit_json({"level": level, **judged, "rules": [msgspec.to_builtins(r) for r in rules]})
    else:
        out = console()
        fired = f" ({plural(len(rules), 'rule')} fired over {plural(len(logs), 'log')}, {plural(transfers, 'transfer')})"
        out.print(line("escalation: ", styled(level or "none", "bold"), fired))
        for r in rules:
            out.print(f"  {r.level} {r.rule}: {r.detail}", markup=False)
    if level in (Level.P0, Level.P1):
        raise typer.Exit(1)


def _logs_under(paths: ArtifactPaths) -> list[Path]:
    return [p for p in find_logs(paths) if p != paths.ops_log]


@reports_errors
def checklist(
    root: Path = ROOT_OPT,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable checklist."),
    remote_logs: list[str] = REMOTE_LOGS_OPT,
) -> None:
    """The operator checklist, derived from the operations log and the artifacts (never hand-edited).
    Exit 0 only when every item passes.

    Example: asup checklist --root artifacts
    """
    paths = ArtifactPaths(root, remote_logs_of(remote_logs))
    items = current_checklist(paths)
    rendered = checklist_mod.render(items)
    if as_json:
        emit_json({"root": str(root), "ops_log": str(paths.ops_log), **rendered})
    else:
        print_checklist(items)
    if rendered["verdict"] != "pass":
        raise typer.Exit(1)


def print_checklist(items: list[checklist_mod.Item]) -> None:
    out = console()
    table = fold_table("", "item", "status", "why", title="operator checklist")
    marks = {"pass": styled("✔", "green"), "fail": styled("✘", "red"), "pending": styled("…", "yellow")}
    for item in items:
        table.add_row(marks[item.status], item.title, item.status, item.reason)
    out.print(table)
