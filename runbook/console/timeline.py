"""One transfer's records, read back from its log on demand, as timeline entries.

The model keeps no record objects: a stream's records are found again by binary search on
`seq` (a line's seq sits in its first bytes, and seqs rise with the offset), then read from
there with the same verified scanner every reader uses, checked as a window the way
`asup tail -n` checks one (each record's digest and framing, the chain within the window).

`records_at` reads one stream by the seqs the model keeps for it (an `array('q')` per
stream, 8 bytes a record): each found by the same binary search, so a transfer costs its
own records however interleaved or long-lived it is.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from events.chain import ChainState
from events.digest import open_regular
from events.errors import AsupError, ErrorCode
from events.payloads import LogCreated, LogRepaired, Transition
from events.record import LineFault, Record
from events.scan import Line, Scanner, iter_lines
from events.schema import decode_line
from events.segments import SegmentChain, header_log_id, line_start
from runbook.console.views import TimelineEntry

_SEQ = re.compile(rb'"seq":(\d+)')
_PROBE = 512  # a line's seq is within its first bytes (type, v, seq)
LOG_EVENTS = (LogCreated, LogRepaired)


def entry(record: Record, previous_ts: str = "") -> TimelineEntry:
    """The timeline row of one record; `previous_ts` is its stream's record before it."""
    data = record.data
    since = _ms_between(previous_ts, record.ts) if previous_ts else 0.0
    payload: dict[str, Any] = msgspec.to_builtins(data)
    common: dict[str, Any] = {"seq": record.seq, "ts": record.ts, "type": record.type, "since_previous_ms": since}
    common |= {"digest": record.h, "data": payload}
    if isinstance(data, Transition):
        reason = data.reason_code.value if data.reason_code else ""
        summary = f"{data.from_state} -{data.trigger}-> {data.to_state}" + (f" ({reason})" if reason else "")
        return TimelineEntry(
            group="transition",
            summary=summary,
            from_state=data.from_state.value,
            to_state=data.to_state.value,
            trigger=data.trigger.value,
            reason_code=reason,
            **common,
        )
    group = "log" if isinstance(data, LOG_EVENTS) else "observation"
    return TimelineEntry(group=group, summary=_summary(record.type, payload), **common)


def _summary(kind: str, payload: dict[str, Any]) -> str:
    """The payload's scalar fields, short: enough to tell records of one type apart."""
    parts = [f"{k}={v}" for k, v in payload.items() if isinstance(v, (str, int, float)) and not isinstance(v, bool) and v != ""]
    text = " ".join(parts)
    return kind if not text else f"{kind}: {text[:160]}"


def _ms_between(earlier: str, later: str) -> float:
    try:
        delta = datetime.fromisoformat(later.replace("Z", "+00:00")) - datetime.fromisoformat(earlier.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return round(delta.total_seconds() * 1000, 3)


def offset_of(path: Path, seq: int, size: int) -> int:
    """The byte offset of the line holding `seq` (or of the first line after it), by
    binary search over line starts; 0 for the first record."""
    lo, hi = 0, size
    with path.open("rb") as fh:
        while hi - lo > _PROBE:
            mid = line_start(path, (lo + hi) // 2)
            fh.seek(mid)
            found = _SEQ.search(fh.read(_PROBE))
            if found is None or mid <= lo or mid >= hi:
                break
            if int(found.group(1)) < seq:
                lo = mid
            else:
                hi = mid
    return line_start(path, lo) if lo else 0


def window(path: Path, start: int) -> Iterator[Record]:
    """The records from byte `start` (a line start) on, verified as a window: each record's
    digest and framing, seqs contiguous, each stream's chain from its first record here."""
    log_id = header_log_id(path) if start else None
    chain = SegmentChain(log_id) if log_id is not None else ChainState()
    scanner = Scanner(path, chain, start if log_id is not None else 0)
    yield from scanner
    if scanner.problem is not None and scanner.problem.kind != "torn_tail":
        raise scanner.problem.error(str(path))


def stream_records(path: Path, stream: str, first_seq: int, last_seq: int) -> Iterator[Record]:
    """The records of `stream` from `first_seq` to `last_seq`."""
    for record in window(path, offset_of(path, first_seq, path.stat().st_size)):
        if record.seq > last_seq:
            return
        if record.seq >= first_seq and record.stream == stream:
            yield record


_GAP = 256  # records between two of a stream's read through rather than searched for


def records_at(path: Path, stream: str, seqs: Sequence[int]) -> Iterator[Record]:
    """The records of `stream` at `seqs` (its seqs, rising): each found by binary search on
    seq over the file (a run of records close together read in one forward pass), each line
    checked on its own (framing, digest, typed decode) and the stream's chain across them
    (each record's `prev` is the `h` of the one before it). An interleaved or long-lived
    transfer costs its own records, not the log between its first and last."""
    size = path.stat().st_size
    previous: Record | None = None
    i = 0
    with open_regular(path, follow=True) as fh:
        while i < len(seqs):
            for line in iter_lines(fh, offset_of(path, seqs[i], size), 0):
                record = _decoded(path, line)
                if record.seq < seqs[i]:
                    continue
                if record.seq > seqs[i]:
                    raise _gone(path, seqs[i])
                _check_link(path, stream, previous, record)
                previous = record
                yield record
                i += 1
                if i == len(seqs) or seqs[i] - record.seq > _GAP:
                    break
            else:
                raise _gone(path, seqs[i])


def _gone(path: Path, seq: int) -> AsupError:
    return AsupError(ErrorCode.CORRUPT_RECORD, f"seq {seq} is no longer where it was read (log replaced or cut?)", file=str(path), seq=seq)


def _decoded(path: Path, line: Line) -> Record:
    outcome = decode_line(line.body, line.complete)
    if isinstance(outcome, LineFault):
        raise AsupError(ErrorCode.CORRUPT_RECORD, f"byte {line.offset}: {outcome.message}", file=str(path), field=outcome.field)
    return outcome


def _check_link(path: Path, stream: str, previous: Record | None, record: Record) -> None:
    if record.stream != stream or (previous is not None and record.prev != previous.h):
        raise AsupError(ErrorCode.CORRUPT_RECORD, f"seq {record.seq} does not continue stream {stream}", file=str(path), seq=record.seq)
