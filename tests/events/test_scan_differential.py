"""The scanner's hand-inlined fast loop against the plain per-line reading it stands for.

`Scanner.__iter__` inlines framing, digest, decode and the common chain step, and hands any
line it does not like to the per-line path. The reference here reads the whole file at once,
splits it at newlines and judges each line with `decode_line` and `ChainState.problem` /
`admit` (never the inline `advance` shortcut), classifying the first bad line the way the
module docstring of `events.scan` says. Both run on generated logs damaged by generated
mutations, at several block sizes (so lines straddle reads) and line limits, from the start
or from a record boundary with the chain preloaded; they must agree on every record, the
count, the valid size, the problem (kind, line, offset, reason, message, seq) and the heads.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from unittest import mock

import msgspec
import pytest
from blake3 import blake3
from hypothesis import event, given, settings
from hypothesis import strategies as st

from events import record as record_module
from events import scan as scan_module
from events.chain import ChainState
from events.clock import StepClock
from events.memory_log import MemoryLog
from events.payloads import Event, LogRepaired
from events.record import SCHEMA_VERSION, TRAILER_HEAD, LineFault, Record, check_line
from events.scan import Problem, Scanner
from events.schema import decode_line
from events.store import Pending
from events.testing import transition

STREAMS = ("t-1", "t-2", 'quo"te', "τ-4")  # a quote and a non-ASCII name: escaped JSON in the line
SMALL_LINE = 1024  # a patched MAX_LINE, so over-long lines cost a kilobyte, not a megabyte
BLOCKS = (1, 7, 64, 333, 4096, scan_module.BLOCK)


def payload(stream: str, cursor: int) -> Event:
    """A transition (or now and then a repair record) unique to (stream, cursor)."""
    if cursor % 5 == 4:
        return LogRepaired(offset=cursor, length=3, torn_digest="blake3:" + "0" * 64, quarantine="q", reason="no_newline")
    return transition(stream, cursor)


def build_log(log_id: str, plan: list[tuple[int, int]], salt: int = 0) -> list[bytes]:
    """The lines (with newlines) of a log holding `plan`'s (stream index, batch size) appends."""
    log = MemoryLog(log_id, clock=StepClock())
    cursor = 0
    for stream_index, size in plan:
        stream = STREAMS[stream_index]
        log.append_batch([Pending(stream, payload(stream, salt + cursor + i)) for i in range(size)])
        cursor += size
    return bytes(log.data).splitlines(keepends=True)


def reseal(body: bytes) -> bytes:
    """`body` (an edited line prefix, up to before the trailer) with a valid digest trailer."""
    return body + TRAILER_HEAD + blake3(body).hexdigest().encode() + b'"}'


def resealed_edit(line: bytes, key: str, value: Any) -> bytes:
    """The line with one envelope field set to `value`, digest recomputed (so only the chain can tell)."""
    fields: dict[str, Any] = msgspec.json.decode(line)
    fields[key] = value
    del fields["h"]
    return reseal(msgspec.json.encode(fields)[:-1]) + b"\n"


# --- mutations ---------------------------------------------------------------------

RESEALED = ("seq", "sv", "v", "prev", "stream", "ts")  # envelope fields an edit with a recomputed digest changes
KINDS = ("flip", "truncate", "swap", "duplicate", "delete", "crlf", "nul", "splice", "fork", "fat", "long", "garbage", *RESEALED)
Mutation = tuple[str, int, int, int]  # kind, and three numbers each kind reads as it needs


@dataclass(frozen=True)
class Donors:
    other: list[bytes]  # the same appends in a log with another id
    fork: list[bytes]  # other appends in a log with the same id


def _fields(line: bytes) -> dict[str, Any] | None:
    try:
        fields: dict[str, Any] = msgspec.json.decode(line)
    except (msgspec.DecodeError, UnicodeDecodeError):  # a flipped bit can leave invalid UTF-8
        return None
    return fields if isinstance(fields, dict) and "h" in fields else None


def _reseal_mutation(lines: list[bytes], key: str, i: int, b: int) -> None:
    """Edit one envelope field of line `i` and recompute its digest (lines already too damaged to parse stay as they are)."""
    fields, donor = _fields(lines[i]), _fields(lines[b % len(lines)])
    if fields is None or donor is None:
        return
    values: dict[str, Any] = {
        "seq": fields["seq"] + (-2, -1, 1, 2)[b % 4],
        "sv": fields["sv"] + (-2, -1, 1, 2)[b % 4],
        "v": (0, SCHEMA_VERSION + 1, SCHEMA_VERSION)[b % 3],
        "prev": donor["h"],
        "stream": STREAMS[b % len(STREAMS)],
        "ts": "2026-01-01T00:00:00.000000Z",
        "fat": fields["ts"] + "0" * SMALL_LINE,  # digest-valid and chain-valid, but longer than the line limit
    }
    lines[i] = resealed_edit(lines[i], "ts" if key == "fat" else key, values[key])


def _line_mutation(lines: list[bytes], kind: str, i: int, a: int, b: int, donors: Donors) -> None:
    j = a % len(lines)
    if kind == "swap":
        lines[i], lines[j] = lines[j], lines[i]
    elif kind == "duplicate":
        lines.insert(j, lines[i])
    elif kind == "delete":
        del lines[i]
    elif kind == "crlf":
        lines[i] = lines[i].replace(b"\n", b"\r\n")
    elif kind in ("splice", "fork"):
        donor = donors.other if kind == "splice" else donors.fork
        piece = donor[a % len(donor)]
        if b % 2:
            lines[i] = piece
        else:
            lines.insert(i, piece)
    elif kind in (*RESEALED, "fat"):
        _reseal_mutation(lines, kind, i, b)
    elif kind == "long":
        lines.insert(i, b"x" * (SMALL_LINE + a % 100) + (b"\n" if b % 2 else b""))


def mutate(pristine: list[bytes], mutations: list[Mutation], donors: Donors) -> bytes:
    """Apply each mutation in turn; byte-level kinds address the joined bytes, line-level kinds a line."""
    lines = list(pristine)
    for kind, x, a, b in mutations:
        if not lines:
            break
        if kind in ("flip", "truncate", "nul", "garbage"):
            data = bytearray(b"".join(lines))
            at = x % len(data)
            if kind == "flip":
                data[at] ^= 1 << (a % 8)
            elif kind == "truncate":
                del data[at:]
            elif kind == "nul":
                data[at : at + 1 + a % 4] = bytes(1 + b % 4)
            else:
                data += bytes((a + k * b) % 256 for k in range(1 + a % 40))
            lines = bytes(data).splitlines(keepends=True)
        else:
            _line_mutation(lines, kind, x % len(lines), a, b, donors)
    return b"".join(lines)


# --- the reference -----------------------------------------------------------------


@dataclass
class Outcome:
    records: list[Record]
    count: int
    valid_size: int
    problem: Problem | None
    heads: tuple[Any, ...]


def heads_of(chain: ChainState) -> tuple[Any, ...]:
    streams = {name: (head.sv, head.h) for name, head in chain.streams.items()}
    return chain.log_id, chain.last_seq, chain.last_h, streams, chain.recent


def split(data: bytes, offset: int) -> list[tuple[int, bytes, bool]]:
    """(offset, body, complete) of every line from `offset`; the last is incomplete when no newline ends it."""
    pieces = data[offset:].split(b"\n")
    out: list[tuple[int, bytes, bool]] = []
    for index, body in enumerate(pieces):
        complete = index < len(pieces) - 1
        if complete or body:
            out.append((offset, body, complete))
        offset += len(body) + 1
    return out


def classify(
    number: int, at: int, fault: LineFault, complete: bool, later: list[tuple[int, bytes, bool]], data: bytes, mark: int | None
) -> Problem:
    """A torn fault is a torn tail at or beyond the high-water mark, or, with no mark, when it is an
    incomplete last line or NULs to the end; a newer asup's record is schema_unsupported; anything
    else is corruption."""
    size = len(data)
    no_mark_torn = (not complete and not later) or data[at:].count(0) == size - at  # a cut last line, or NULs to the end
    torn = at >= mark if mark is not None else no_mark_torn
    if fault.torn and torn:
        return Problem("torn_tail", number, at, fault.reason, fault.message, fault.field, seq=number, tail_bytes=size - at)
    message = fault.message
    if fault.torn:
        if any(done and check_line(body) is None for _, body, done in later):
            message += ", and valid records follow it"
        elif mark is not None:
            message += f", before the high-water mark at byte {mark}"
        else:
            message += ", and it is not an incomplete last line"
        message += ": corruption, not a torn tail"
    kind = "schema_unsupported" if fault.reason == "schema_unsupported" else "corrupt"  # a newer asup's record is not damage
    return Problem(kind, number, at, fault.reason, message, fault.field, seq=number)


def reference_scan(data: bytes, chain: ChainState, offset: int = 0, mark: int | None = None) -> Outcome:
    """Line by line, nothing inlined: decode_line, then the chain's full check and admit."""
    records: list[Record] = []
    valid, problem = offset, None
    lines = split(data, offset)
    first = chain.last_seq + 1
    for index, (at, body, complete) in enumerate(lines):
        outcome = decode_line(body, complete)
        if isinstance(outcome, LineFault):
            problem = classify(first + index, at, outcome, complete, lines[index + 1 :], data, mark)
            break
        issue = chain.problem(outcome)
        if issue is not None:
            problem = Problem("corrupt", first + index, at, "chain", issue, seq=outcome.seq)
            break
        chain.admit(outcome, at)
        records.append(outcome)
        valid = at + len(body) + 1
    return Outcome(records, len(records), valid, problem, heads_of(chain))


def fast_scan(data: bytes, chain: ChainState, offset: int = 0, mark: int | None = None) -> Outcome:
    scanner = Scanner(lambda: io.BytesIO(data), chain, offset, mark=mark)
    records = list(scanner)
    return Outcome(records, scanner.records, scanner.valid_size, scanner.problem, heads_of(chain))


def preloaded(data: bytes, window: int, records: int) -> tuple[ChainState, int]:
    """A chain that has read the first `records` valid records of `data`, and the offset after them."""
    chain = ChainState(window)
    offset = 0
    for at, body, complete in split(data, 0)[:records]:
        outcome = decode_line(body, complete)
        assert isinstance(outcome, Record) and chain.problem(outcome) is None
        chain.admit(outcome, at)
        offset = at + len(body) + 1
    return chain, offset


@contextmanager
def limits(block: int, max_line: int) -> Iterator[None]:
    """Read in `block`-byte blocks, with `max_line` as the line limit of both paths."""
    with (
        mock.patch.object(scan_module, "BLOCK", block),
        mock.patch.object(scan_module, "MAX_LINE", max_line),
        mock.patch.object(record_module, "MAX_LINE", max_line),
    ):
        yield


# --- the property ------------------------------------------------------------------

APPENDS = st.lists(st.tuples(st.integers(0, len(STREAMS) - 1), st.integers(1, 4)), min_size=1, max_size=10)
MUTATIONS = st.lists(
    st.tuples(st.sampled_from(KINDS), st.integers(0, 1 << 16), st.integers(0, 63), st.integers(0, 63)), min_size=1, max_size=3
)


@settings(max_examples=400)
@given(
    appends=APPENDS,
    mutations=MUTATIONS,
    block=st.sampled_from(BLOCKS),
    small_lines=st.booleans(),
    window=st.sampled_from([0, 2]),
    start=st.integers(0, 50),
    marked=st.none() | st.integers(0, 40),
)
def test_fast_loop_agrees_with_the_per_line_reference(
    appends: list[tuple[int, int]], mutations: list[Mutation], block: int, small_lines: bool, window: int, start: int, marked: int | None
) -> None:
    """On any generated log and damage, with or without a high-water mark (at the end of one of the
    pristine log's lines), the fast loop yields the reference's records, counts, valid size,
    problem and heads."""
    pristine = build_log("diff", appends)
    donors = Donors(other=build_log("other", appends), fork=build_log("diff", appends[::-1], salt=1000))
    assert max(map(len, pristine + donors.other + donors.fork)) < SMALL_LINE
    data = mutate(pristine, mutations, donors)
    with limits(block, SMALL_LINE if small_lines else record_module.MAX_LINE):
        readable = reference_scan(data, ChainState(window)).count
        records = min(start, readable)
        mark = None if marked is None else len(b"".join(pristine[: 1 + marked % len(pristine)]))
        expected = reference_scan(data, *preloaded(data, window, records), mark=mark)
        got = fast_scan(data, *preloaded(data, window, records), mark=mark)
    event("clean" if expected.problem is None else f"{expected.problem.kind}: {expected.problem.reason}")
    assert got == expected


@pytest.mark.parametrize("block", BLOCKS)
def test_undamaged_log_reads_whole_on_both_paths(block: int) -> None:
    """Without damage both paths read every record and report no problem (the property's baseline is not vacuous)."""
    lines = build_log("diff", [(0, 3), (1, 2), (2, 4), (3, 1), (0, 2)])
    data = b"".join(lines)
    with limits(block, SMALL_LINE):
        expected, got = reference_scan(data, ChainState(2)), fast_scan(data, ChainState(2))
    assert got == expected
    assert got.problem is None and got.count == len(lines) and got.valid_size == len(data)


@pytest.mark.parametrize(
    ("mutation", "kind", "reason"),
    [
        (("seq", 3, 0, 2), "corrupt", "chain"),  # seq + 1, digest valid
        (("sv", 3, 0, 2), "corrupt", "chain"),  # sv + 1
        (("prev", 4, 0, 1), "corrupt", "chain"),  # prev of another line
        (("stream", 4, 0, 2), "corrupt", "chain"),  # moved to another stream
        (("fork", 5, 5, 1), "corrupt", "chain"),  # a line of another history of the same log
        (("splice", 5, 5, 1), "corrupt", "chain"),  # a line of another log
        (("crlf", 2, 0, 0), "corrupt", "digest_mismatch"),
        (("long", 4, 0, 1), "corrupt", "too_long"),
        (("truncate", -5, 0, 0), "torn_tail", "no_newline"),  # five bytes off the last line
        (("v", 3, 0, 1), "schema_unsupported", "schema_unsupported"),  # the next v
    ],
)
def test_each_damage_kind_is_judged_alike(mutation: Mutation, kind: str, reason: str) -> None:
    """A few fixed damages: both paths report the same problem, and it is the expected kind and reason."""
    pristine = build_log("diff", [(0, 3), (1, 3), (2, 3)])
    donors = Donors(other=build_log("other", [(0, 3)]), fork=build_log("diff", [(1, 3)]))
    data = mutate(pristine, [mutation], donors)
    with limits(64, SMALL_LINE):
        expected, got = reference_scan(data, ChainState()), fast_scan(data, ChainState())
    assert got == expected
    assert got.problem is not None and (got.problem.kind, got.problem.reason) == (kind, reason)
