"""`asup log …`: verify, repair, stats, cat, export, import and demo for a log (a JSONL file;
verify, stats and cat also read a `nats://` URL, through a verified snapshot of the stream;
export copies a stream or a file to a new file, import a file to a stream)."""

from __future__ import annotations

import contextlib
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import orjson
import typer

from events import head_record
from events.chain import ChainState
from events.digest import open_regular
from events.errors import AsupError, ErrorCode
from events.force_tail import force_tail as force_tail_of
from events.jsonl_log import JsonlLog, not_an_asup_log
from events.lock import is_locked
from events.log_copy import file_lines, write_new
from events.log_ref import LogRef, as_problem, readable_upto_damage
from events.payloads import TailForced, Transition
from events.record import Record, record_to_builtins
from events.scan import Problem, Scanner
from events.segments import Verified, verify_log
from runbook.demo import write_demo_log
from runbook.options import LOCK_TIMEOUT_OPT, LOG_HELP, log_arg
from runbook.output import console, emit_json, fold_table, line, reports_errors, styled

app = typer.Typer(
    rich_markup_mode="markdown",
    help="Verify, repair, inspect, print, export and import an append-only log (a JSONL file or a nats:// stream)."
    "\n\nExample: asup log verify artifacts/logs/transfers.jsonl",
    no_args_is_help=True,
)

LOG_ARG = typer.Argument(..., help=LOG_HELP, show_default=False)
JSON_OPT = typer.Option(False, "--json", help="Machine-readable output (one JSON document).")


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise AsupError(ErrorCode.LOG_NOT_FOUND, "no such log file", file=str(path))
    return path


@contextlib.contextmanager
def _records(ref: LogRef) -> Iterator[tuple[Path, AsupError | None]]:
    """The log as a file to scan (for a URL, a snapshot of the records before any damage)
    and the damage that ended the snapshot, reported after what was read, as for a file."""
    with readable_upto_damage(ref) as (path, damage):
        yield _existing(path), damage


_VERDICTS = {"schema_unsupported": "UNSUPPORTED", "rollback": "ROLLED BACK"}  # a newer asup's record is not damage


@app.command()
@reports_errors
def verify(
    path: str = LOG_ARG,
    as_json: bool = JSON_OPT,
    jobs: int = typer.Option(
        0, "--jobs", "-j", min=0, help="Processes for a log of 32 MiB or more (0: every usable core; 1: one sequential scan)."
    ),
) -> None:
    """Check every record: framing, BLAKE3 digest, typed decode, seq and per-stream chain.

    Exit 0 when the whole log verifies; 1 with the first problem (file, line, seq, what is
    wrong), naming `asup log repair` when it is a torn tail, and `schema_unsupported` when a
    record's digest holds but a newer asup wrote it (a newer `v`, type, code or field). A big log is cut into segments
    verified on several cores and stitched at the seams; any problem is reported from one
    sequential scan, exactly as with --jobs 1.

    Example: asup log verify artifacts/demo/demo_log.jsonl
    """
    ref = log_arg(path)
    with _records(ref) as (file, damage):
        foreign = not_an_asup_log(file, lambda: open_regular(file, follow=True))
        if foreign is not None:  # another tool's file is not a damaged log: nothing to repair
            raise foreign
        result = verify_log(file, jobs)
        problem = result.problem
        if problem is None and damage is not None:
            problem = as_problem(damage, file.stat().st_size)
        elif ref.url is None and (problem is None or problem.reason == "no_newline"):  # a clean or cut-short log may be a rolled-back one
            problem = _rollback(file, result) or problem
        writer_active = ref.url is None and is_locked(file)
    summary: dict[str, Any] = {
        "log": ref.text,
        "log_id": result.log_id,
        "records": result.records,
        "streams": result.streams,
        "last_seq": result.last_seq,
        "ok": problem is None,
        "problem": None,
    }
    if problem is not None:
        summary["problem"] = {
            "kind": problem.kind,
            "line": problem.line,
            "offset": problem.offset,
            "reason": problem.reason,
            "message": problem.error(ref.text).one_line(),
            "writer_active": writer_active,
        }
    if as_json:
        emit_json(summary)
    else:
        out = console()
        verdict = styled("ok", "green") if problem is None else styled(_VERDICTS.get(problem.kind, "DAMAGED"), "red")
        out.print(line(f"{ref.text}: ", verdict, f" — {result.records} records, {result.streams} streams, last seq {result.last_seq}"))
        if problem is not None:
            out.print(f"  first problem: {summary['problem']['message']}", markup=False, soft_wrap=True)
            if summary["problem"]["writer_active"]:
                out.print("  (a writer holds the log: a partial last line may be an append in flight)")
    if problem is not None:
        raise typer.Exit(1)


def _rollback(path: Path, result: Verified) -> Problem | None:
    """A clean log shorter than its high-water mark: acknowledged records are gone."""
    mark = head_record.load(path)
    size = path.stat().st_size
    if mark is None or mark.log_id != result.log_id or size >= mark.size:
        return None
    error = head_record.rollback_error(path, size, mark.size, mark.last_seq)
    return Problem("rollback", result.last_seq + 1, size, "rollback", error.message, seq=mark.last_seq)


@app.command()
@reports_errors
def repair(
    path: str = LOG_ARG,
    as_json: bool = JSON_OPT,
    lock_timeout: float = LOCK_TIMEOUT_OPT,
    force_tail: bool = typer.Option(
        False, "--force-tail", help="Cut the log back to its last valid record even when the damage is not a torn tail (kept, recorded)."
    ),
) -> None:
    """Quarantine a torn tail (damage where no acknowledged record can be: beyond the
    high-water mark, or an incomplete last line): its bytes are copied to
    `LOG.torn-<offset>`, the log is cut back to its last valid record and a `log_repaired`
    event is appended. The whole log is verified first; corruption anywhere else, or a
    rollback, is never repaired (exit 1) unless you pass `--force-tail`: then the log is cut
    back to its last valid record, the bytes cut kept in `LOG.forced-<offset>`, and a
    `tail_forced` event names the seqs cut.

    Example: asup log repair artifacts/demo/demo_log.jsonl
    """
    ref = log_arg(path)
    if ref.url is not None:
        why = f"a JetStream log is never cut: nothing to repair; asup log verify {ref.text} says what is wrong"
        raise AsupError(ErrorCode.USAGE, why, file=ref.text)
    file = _existing(ref.path)
    if force_tail:
        _report_forced(file, force_tail_of(file, lock_timeout=lock_timeout), as_json)
        return
    with JsonlLog.open(file, lock_timeout=lock_timeout, verify=True) as log:
        repaired = log.repaired
        seq, _ = log.last_position()
    result: dict[str, Any] = {"log": str(file), "repaired": repaired is not None, "last_seq": seq}
    if repaired is not None:
        result.update(offset=repaired.offset, length=repaired.length, quarantine=repaired.quarantine, reason=repaired.reason)
    if as_json:
        emit_json(result)
    elif repaired is None:
        console().print(f"{file}: nothing to repair (last seq {seq})")
    else:
        console().print(
            f"{file}: moved {repaired.length} torn bytes ({repaired.reason}) from offset {repaired.offset} "
            f"to {repaired.quarantine}; log_repaired recorded at seq {seq}",
            markup=False,
            soft_wrap=True,
        )


def _report_forced(path: Path, forced: TailForced | None, as_json: bool) -> None:
    result: dict[str, Any] = {"log": str(path), "forced": forced is not None}
    if forced is not None:
        result.update(msgspec.to_builtins(forced))
    if as_json:
        emit_json(result)
    elif forced is None:
        console().print(f"{path}: nothing to cut: the log verifies and is not shorter than its high-water mark", markup=False)
    else:
        cut = f"seqs {forced.first_seq_cut}..{forced.last_seq_cut}" if forced.last_seq_cut else "no records"
        kept = f", kept in {forced.quarantine}" if forced.quarantine else ""
        console().print(
            f"{path}: cut at byte {forced.offset} ({forced.reason}): {cut}, {forced.length} bytes{kept}; tail_forced recorded",
            markup=False,
            soft_wrap=True,
        )


@app.command()
@reports_errors
def stats(path: str = LOG_ARG, as_json: bool = JSON_OPT) -> None:
    """Count records by type, stream and reason code (the whole log is verified on the way).

    Example: asup log stats artifacts/demo/demo_log.jsonl --json
    """
    by_type: Counter[str] = Counter()
    by_stream: Counter[str] = Counter()
    by_reason: Counter[str] = Counter()
    ref = log_arg(path)
    with _records(ref) as (file, damage):
        scanner = Scanner(file, ChainState())
        for record in scanner:
            by_type[record.type] += 1
            by_stream[record.stream] += 1
            reason = getattr(record.data, "reason_code", None)
            if reason is not None:
                by_reason[str(reason)] += 1
    counts = {
        "types": dict(sorted(by_type.items())),
        "streams": dict(sorted(by_stream.items())),
        "reason_codes": dict(sorted(by_reason.items())),
    }
    if as_json:
        emit_json({"log": ref.text, "records": scanner.records, **counts})
    else:
        out = console()
        out.print(f"{ref.text}: {scanner.records} records")
        for title, counter in (("type", by_type), ("reason code", by_reason), ("stream", by_stream)):
            table = fold_table(title=f"by {title}", title_justify="left")
            table.add_column(title, overflow="fold")
            table.add_column("records", justify="right")
            for key, count in sorted(counter.items()):
                table.add_row(key, str(count))
            out.print(table)
    _raise_problem(scanner, ref.text, damage)


@app.command()
@reports_errors
def cat(
    path: str = LOG_ARG,
    stream: str | None = typer.Option(None, "--stream", help="Only this stream (e.g. a transfer id)."),
    type_: str | None = typer.Option(None, "--type", help="Only this event type (e.g. transition)."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per record, as stored minus nothing."),
) -> None:
    """Print records, verified, optionally filtered by stream and type.

    Example: asup log cat artifacts/demo/demo_log.jsonl --stream demo-retry --type transition
    """
    ref = log_arg(path)
    out = console()
    with _records(ref) as (file, damage):
        scanner = Scanner(file, ChainState())
        for record in scanner:
            if (stream is not None and record.stream != stream) or (type_ is not None and record.type != type_):
                continue
            if as_json:
                emit_json_line(record)
            else:
                out.print(_human(record), markup=False, soft_wrap=True)
    _raise_problem(scanner, ref.text, damage)


@app.command()
@reports_errors
def demo(
    path: Path = typer.Argument(Path("artifacts/demo/demo_log.jsonl"), help="Where to write the demo log."),
    seed: int = typer.Option(7, help="Seed of the demo's transfers."),
    lock_timeout: float = LOCK_TIMEOUT_OPT,
) -> None:
    """Write a seeded, deterministic demo log (an earlier file at PATH is kept as `PATH.<n>`).

    Example: asup log demo /tmp/demo.jsonl --seed 7
    """
    kept = write_demo_log(path, seed)
    if kept is not None:
        console().print(f"kept the earlier log as {kept}", markup=False)
    console().print(f"wrote {path}", markup=False)


def emit_json_line(record: Record) -> None:
    sys.stdout.buffer.write(orjson.dumps(record_to_builtins(record), option=orjson.OPT_APPEND_NEWLINE))


def _human(record: Record) -> str:
    data = record.data
    if isinstance(data, Transition):
        detail = f"{data.from_state} -{data.trigger}-> {data.to_state}" + (f" [{data.reason_code}]" if data.reason_code else "")
    else:
        detail = " ".join(f"{k}={v}" for k, v in record_to_builtins(record)["data"].items() if v not in ("", None, 0, 0.0))
    return f"{record.seq:>8} {record.ts} {record.stream}#{record.sv} {record.type} {detail}"


def _raise_problem(scanner: Scanner, name: str, damage: AsupError | None = None) -> None:
    if scanner.problem is not None:
        raise scanner.problem.error(name)
    if damage is not None:  # a stream's: its snapshot ended before it
        raise damage


def _verified_file(path: Path) -> Verified:
    """The whole file verified (`asup log verify`'s checks); its first problem raised."""
    foreign = not_an_asup_log(_existing(path), lambda: open_regular(path, follow=True))
    if foreign is not None:
        raise foreign
    result = verify_log(path)
    if result.problem is not None:
        raise result.problem.error(str(path))
    return result


def _check_copy(out: Path, written: int) -> Verified:
    """A finished copy verifies whole and holds every line written."""
    result = verify_log(out, 1)
    if result.problem is not None:
        raise result.problem.error(str(out))
    if result.records != written:
        raise AsupError(ErrorCode.CORRUPT_RECORD, f"{result.records} records read back, {written} written", file=str(out))
    return result


@app.command()
@reports_errors
def export(
    source: str = typer.Argument(..., help=LOG_HELP, show_default=False),
    out: Path = typer.Argument(..., help="The new JSONL file (created; an existing file is never replaced).", show_default=False),
    as_json: bool = JSON_OPT,
) -> None:
    """Copy a log, every record verified, to a new JSONL file that verifies and replays
    offline: a nats:// stream's records byte for byte, or a file's (a verified copy).

    OUT is created new (anything already there is refused, exit 2), fsynced with its
    directory and verified again; on any failure the partial OUT is removed.

    Example: asup log export nats://127.0.0.1:4222/transfers transfers.jsonl
    """
    ref = log_arg(source)
    if ref.url is not None:
        from events.jetstream.log import JetStreamLog  # nats-py is imported only for a URL

        with JetStreamLog.open(ref.url, create=False, reader=True) as log:
            result = write_new(out, log.verified_lines(), _check_copy)
    else:
        _verified_file(ref.path)
        result = write_new(out, file_lines(ref.path), _check_copy)
    summary = {"log": ref.text, "out": str(out), "records": result.records, "last_seq": result.last_seq, "last_h": result.last_h}
    if as_json:
        emit_json(summary)
    else:
        console().print(
            f"{ref.text} -> {out}: {result.records} records, last seq {result.last_seq}, last digest {result.last_h}",
            markup=False,
            soft_wrap=True,
        )


@app.command("import")
@reports_errors
def import_(
    path: Path = typer.Argument(..., help="The JSONL log file to import.", show_default=False),
    url: str = typer.Argument(..., help="The log's stream: nats://HOST:PORT/STREAM[?replicas=N&timeout=S].", show_default=False),
    as_json: bool = JSON_OPT,
) -> None:
    """Publish a JSONL log's records, byte for byte, to a JetStream stream (created when
    missing, holding only the file's records, header first).

    The file is verified whole first: a damaged one is refused with the verify error (exit
    1) and nothing is published. A stream holding another log is refused (exit 1). Records
    the stream already holds must be the file's own: an interrupted import, run again,
    publishes only the rest. Exporting the stream gives back the file's bytes.

    Example: asup log import transfers.jsonl nats://127.0.0.1:4222/transfers
    """
    ref = log_arg(url)
    if ref.url is None:
        raise AsupError(ErrorCode.USAGE, "import publishes to a nats:// URL (to copy a file, use asup log export)", file=url)
    _verified_file(path)
    from events.jetstream.log import JetStreamLog  # nats-py is imported only for a URL

    with JetStreamLog.open(ref.url, header=False) as log:
        imported = log.import_lines(file_lines(path))
    with JetStreamLog.open(ref.url, create=False) as log:  # read back whole and verified: the head it now has
        seq, h = log.last_position()
    if as_json:
        emit_json({"log": str(path), "url": ref.text, "imported": imported, "last_seq": seq, "last_h": h})
    else:
        console().print(f"{path} -> {ref.text}: {imported} records imported; head: seq {seq}, digest {h}", markup=False, soft_wrap=True)
