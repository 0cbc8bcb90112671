"""`asup tail`: print a log's records, then follow it as it grows."""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable
from pathlib import Path

import anyio
import orjson
import typer
from rich.text import Text

from events.payloads import Transition
from events.record import Record, record_to_builtins
from replay.tail import Tailer, follow
from runbook.output import STATE_COLORS, console, line, reports_errors, styled


def _line(record: Record) -> Text:
    data = record.data
    if isinstance(data, Transition):
        color = STATE_COLORS.get(data.to_state, "cyan")
        reason = styled(f" {data.reason_code}", "bold red") if data.reason_code else ""
        return line(
            styled(f"{record.seq:>8}", "dim"),
            f" {record.ts} {record.stream} {data.from_state} -{data.trigger}-> ",
            styled(data.to_state, color),
            reason,
        )
    return line(styled(f"{record.seq:>8} {record.ts} {record.stream} {record.type}", "dim"))


def _matcher(since: int | None, transfer: str | None, type_: str | None, reason: str | None) -> Callable[[Record], bool]:
    """The records `asup tail` prints: every filter given must hold."""

    def wanted(record: Record) -> bool:
        if since is not None and record.seq < since:
            return False
        if transfer is not None and record.stream != transfer:
            return False
        if type_ is not None and record.type != type_:
            return False
        return reason is None or getattr(record.data, "reason_code", None) == reason

    return wanted


@reports_errors
def tail(
    log: Path = typer.Argument(..., help="The JSONL log."),
    follow_: bool = typer.Option(False, "-f", "--follow", help="Keep printing records as they are appended."),
    transfer: str | None = typer.Option(None, "--transfer", help="Only this transfer (stream)."),
    type_: str | None = typer.Option(None, "--type", help="Only this event type."),
    reason: str | None = typer.Option(None, "--reason", help="Only transitions with this reason code."),
    since: int | None = typer.Option(None, "--since", help="Start at this seq."),
    last: int | None = typer.Option(None, "-n", "--last", help="Start with the last N matching records."),
    as_json: bool = typer.Option(False, "--json", help="JSON lines (the default when stdout is not a terminal)."),
    poll: bool = typer.Option(False, "--poll", help="Poll every millisecond instead of inotify."),
) -> None:
    """Print existing records (all, --since SEQ or the --last N) and, with -f, follow new ones
    as they are committed; survives writer restarts and `asup log repair`; never prints a
    partial line. One coloured line per event on a terminal, JSON lines when piped.

    Example: asup tail artifacts/logs/transfers.jsonl -f --reason retry_exhausted
    """
    out = console()
    machine = as_json or not out.is_terminal

    wanted = _matcher(since, transfer, type_, reason)

    def show(record: Record) -> None:
        if machine:
            sys.stdout.buffer.write(orjson.dumps(record_to_builtins(record), option=orjson.OPT_APPEND_NEWLINE))
            sys.stdout.flush()
        else:
            out.print(_line(record), soft_wrap=True)

    tailer = Tailer(log)
    existing = [r for r in tailer.drain() if wanted(r)]
    for record in deque(existing, maxlen=last) if last is not None else existing:
        show(record)
    if not follow_:
        return

    async def run() -> None:
        async for record in follow(log, inotify=not poll, start=tailer):
            if wanted(record):
                show(record)

    anyio.run(run)
