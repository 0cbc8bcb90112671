"""`asup tail`: print a log's records, then follow it as it grows."""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import TYPE_CHECKING

import orjson
import typer
from rich.text import Text

from engine.stop import Interrupts
from events.catalog import REGISTRY
from events.errors import AsupError, ErrorCode
from events.jetstream.url import LogUrl
from events.log_ref import LogRef, readable
from events.payloads import Transition
from events.record import Record, record_to_builtins
from events.vocabulary import ReasonCode
from replay.tail import Tailer, follow
from runbook.options import LOG_HELP, check_known, log_arg
from runbook.output import STATE_COLORS, console, line, reports_errors, styled

if TYPE_CHECKING:
    from events.jetstream.log import JetStreamLog


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


DEFAULT_LAST = 10


def _start(log: Path, last: int | None, since: int | None, wanted: Callable[[Record], bool], by_name: bool) -> tuple[Tailer, list[Record]]:
    """Where printing starts: the last N wanted records (10 by default), or every one from --since."""
    if not by_name and not os.path.lexists(log):
        raise AsupError(ErrorCode.USAGE, "no such log (use -F to wait for it to appear)", file=str(log))
    if log.is_dir():
        raise AsupError(ErrorCode.USAGE, "a directory, not a log", file=str(log))
    notice = _notice if by_name else None
    if since is not None and last is None:
        tailer = Tailer(log, reopen=by_name, notice=notice)
        return tailer, [r for r in tailer.drain() if wanted(r)]
    return Tailer.last(log, DEFAULT_LAST if last is None else last, wanted, reopen=by_name, notice=notice)


def _notice(message: str) -> None:
    console(stderr=True).print(f"asup: {message}", markup=False, soft_wrap=True)


@reports_errors
def tail(
    log: str = typer.Argument(..., help=LOG_HELP),
    follow_: bool = typer.Option(False, "-f", "--follow", help="Keep printing records as they are appended."),
    by_name: bool = typer.Option(
        False, "-F", help="Follow by name: wait for a log that does not exist yet; read a replaced or cut log again from its start."
    ),
    transfer: str | None = typer.Option(None, "--transfer", help="Only this transfer (stream)."),
    type_: str | None = typer.Option(None, "--type", help="Only this event type."),
    reason: str | None = typer.Option(None, "--reason", help="Only transitions with this reason code."),
    since: int | None = typer.Option(None, "--since", min=0, help="Every record from this seq on (instead of the last 10)."),
    last: int | None = typer.Option(None, "-n", "--last", min=0, help="The last N matching records (default 10), read from the end."),
    as_json: bool = typer.Option(False, "--json", help="JSON lines (the default when stdout is not a terminal)."),
    poll: bool = typer.Option(False, "--poll", help="Poll every millisecond instead of inotify (a file only)."),
) -> None:
    """Print the last 10 records (-n N, or every one from --since SEQ) and, with -f, follow
    new ones as they are committed; -F also waits for a log to appear and reads a replaced
    one from its start. Reading from the end checks each record's digest and the chain
    within what is read; a partial line is never printed. One coloured line per event on
    a terminal, JSON lines when piped. A nats:// log is read (and, with -f, followed)
    through the server, each record verified from the stream's start.

    Example: asup tail artifacts/logs/transfers.jsonl -f --reason retry_exhausted
    """
    check_known("--type", type_, REGISTRY, "an event type")
    check_known("--reason", reason, ReasonCode, "a reason code")
    out = console()
    machine = as_json or not out.is_terminal
    wanted = _matcher(since, transfer, type_, reason)

    def show(record: Record) -> None:
        if machine:
            sys.stdout.buffer.write(orjson.dumps(record_to_builtins(record), option=orjson.OPT_APPEND_NEWLINE))
            sys.stdout.flush()
        else:
            out.print(_line(record), soft_wrap=True)

    ref = log_arg(log)
    if ref.url is not None and (by_name or poll):
        raise AsupError(ErrorCode.USAGE, "-F and --poll follow a file: follow a nats:// log with -f", file=ref.text)
    _print_then_follow(ref, show, wanted, last=last, since=since, follow_=follow_ or by_name, by_name=by_name, poll=poll)


def _print_then_follow(
    ref: LogRef,
    show: Callable[[Record], None],
    wanted: Callable[[Record], bool],
    *,
    last: int | None,
    since: int | None,
    follow_: bool,
    by_name: bool,
    poll: bool,
) -> None:
    """The records where printing starts, then (with -f or -F) each new one; a signal at
    any moment ends it with KeyboardInterrupt, raised where asup looks (`Interrupts`)."""
    with Interrupts().installed() as interrupts:

        def wanted_now(record: Record) -> bool:
            interrupts.check()  # a long read (--since 0 of a big log) stops at its next record
            return wanted(record)

        tailer, existing = _existing(ref, last, since, wanted_now, by_name)
        for record in existing:
            show(record)
        if not follow_:
            return

        async def run(live: AsyncIterator[Record]) -> None:
            async for record in live:
                if wanted(record):
                    show(record)

        if ref.url is None:
            interrupts.follow(run, follow(ref.path, inotify=not poll, start=tailer))
            return
        with _open_reader(ref.url) as stream:  # the records after the ones printed, through an ordered consumer
            interrupts.follow(run, stream.follow(tailer.chain.last_seq + 1))


def _existing(
    ref: LogRef, last: int | None, since: int | None, wanted: Callable[[Record], bool], by_name: bool
) -> tuple[Tailer, list[Record]]:
    """`_start` on the file, or on a verified snapshot of the stream (errors name the URL)."""
    if ref.url is None:
        return _start(ref.path, last, since, wanted, by_name)
    with readable(ref) as snapshot:
        return _start(snapshot, last, since, wanted, False)


def _open_reader(url: LogUrl) -> JetStreamLog:
    from events.jetstream.log import JetStreamLog  # nats-py is imported only for a URL

    return JetStreamLog.open(url, reader=True)
