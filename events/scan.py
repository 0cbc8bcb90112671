"""Streaming, verifying reads of a JSONL log.

The file is read in blocks, never whole; each complete line is checked (framing, digest,
typed decode, chain). The first bad line decides the outcome. It is a torn tail (a crash
cut the last write; repairable) only where no acknowledged record can be: with a
high-water mark (`mark`, the acknowledged size from `events.head_record`), bytes that
fail their framing or digest at or beyond it, whatever follows them; with no mark, only an
incomplete final line or a final run of NUL bytes. Anything else (a complete line with a
bad digest before the mark, a digest-valid line that does not decode or chain) is
corruption, never skipped.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO

import msgspec
from blake3 import blake3

from events.chain import ChainState
from events.digest import open_regular
from events.errors import DECODE_ERRORS, AsupError, ErrorCode
from events.head_record import load as load_head
from events.record import MAX_LINE, TRAILER_HEAD, TRAILER_LEN, LineFault, Record, check_line
from events.schema import SCHEMA, Schema, decode_line

BLOCK = 1 << 18  # 256 KiB: see Scanner.__iter__
FROM_HEAD = -1  # a Scanner's default mark: the acknowledged size the log's head record states


class Line(msgspec.Struct, frozen=True, gc=False):
    number: int
    offset: int
    body: bytes  # without the newline
    complete: bool  # False: the file ended (or MAX_LINE ran out) before a newline


def iter_lines(fh: BinaryIO, offset: int, first_number: int) -> Iterator[Line]:
    """Lines from byte `offset`; memory stays within BLOCK + MAX_LINE.

    A line longer than MAX_LINE is yielded once, cut at MAX_LINE and marked incomplete
    (its fault is `too_long`); the rest of it is skipped, and reading goes on after its
    newline, so whatever follows it is still seen (and judged).
    """
    fh.seek(offset)
    number = first_number
    carry = b""
    skipping = False
    while block := fh.read(BLOCK):
        data = carry + block if carry else block
        start = 0
        if skipping:
            end = data.find(b"\n")
            if end < 0:
                offset += len(data)
                carry = b""
                continue
            start, skipping = end + 1, False
        while (end := data.find(b"\n", start)) >= 0:
            yield Line(number, offset + start, data[start:end], True)
            number += 1
            start = end + 1
        offset += start
        carry = data[start:]
        if len(carry) >= MAX_LINE:
            yield Line(number, offset, carry[:MAX_LINE], False)
            number += 1
            offset += len(carry)
            carry, skipping = b"", True
    if carry:
        yield Line(number, offset, carry, False)


def line_at(fh: BinaryIO, offset: int) -> bytes:
    """The line starting at byte `offset` (without its newline); b"" past the end or at -1."""
    if offset < 0:
        return b""
    return next((line.body for line in iter_lines(fh, offset, 0)), b"")


class Problem(msgspec.Struct, frozen=True):
    """The first thing wrong with a log."""

    kind: str  # torn_tail | corrupt | schema_unsupported (a record a newer asup wrote: not damage) | rollback (asup log verify)
    line: int
    offset: int
    reason: str
    message: str
    field: str | None = None
    seq: int | None = None
    tail_bytes: int = 0  # for a torn tail: bytes from offset to the end of the file

    def error(self, file: str) -> AsupError:
        code = _ERROR_CODES.get(self.kind, ErrorCode.CORRUPT_RECORD)
        message = self.message
        if self.kind == "torn_tail":
            message += f"; {self.tail_bytes} torn bytes at the tail: run `asup log repair {file}`"
        return AsupError(code, message, file=file, line=self.line, field=self.field, seq=self.seq)


_ERROR_CODES = {"torn_tail": ErrorCode.TORN_TAIL, "schema_unsupported": ErrorCode.SCHEMA_UNSUPPORTED, "rollback": ErrorCode.LOG_ROLLBACK}


class ScanResult(msgspec.Struct):
    records: int
    valid_size: int  # bytes up to the end of the last valid record
    problem: Problem | None


Opener = Callable[[], BinaryIO]


def _file_opener(path: Path) -> Opener:
    def opener() -> BinaryIO:
        try:
            return open_regular(path, follow=True)  # a FIFO there must not block the reader
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise AsupError(ErrorCode.USAGE, "not a regular file; a log is one", file=str(path)) from exc
            raise

    return opener


class Scanner:
    """Iterates the verified records of a log from `offset` (where `chain` left off).

    After iteration, `problem` holds the first thing wrong (or None), `records` the count
    read and `valid_size` the byte offset just past the last valid record.
    """

    def __init__(
        self, source: Path | Opener, chain: ChainState, offset: int = 0, schema: Schema = SCHEMA, *, mark: int | None = FROM_HEAD
    ) -> None:
        self._open: Opener = _file_opener(source) if isinstance(source, Path) else source
        if mark == FROM_HEAD:
            mark = mark_of(source) if isinstance(source, Path) else None
        self.mark = mark
        self.chain = chain
        self.schema = schema
        self.offset = offset
        self.records = 0
        self.valid_size = offset
        self.problem: Problem | None = None

    def __iter__(self) -> Iterator[Record]:  # noqa: C901 - the per-line hot loop of every read, inline by measurement (see below)
        """Whole blocks split at once, each line checked inline; the first line that is not
        a plain next record (a fault, a chain problem, an incomplete or over-long tail) hands
        over to the per-line path from its offset, which decides and reports it. Counters live
        in locals and reach the scanner and chain whenever control leaves the fast loop.

        Measured choices (bench/log_bench.py): 256 KiB blocks stay in cache between the split,
        the hash and the decode (1 MiB blocks cost ~0.2 us more per record); the trailer is
        checked with slices, and byte offsets are summed only when control leaves the loop."""
        chain = self.chain
        hasher = blake3()  # reset per line: cheaper than a new hasher each time
        reset, update, hexdigest, decode = hasher.reset, hasher.update, hasher.hexdigest, self.schema.decoder.decode
        version = self.schema.version  # an older record leaves the fast loop: the per-line path lifts it
        trailer, longest, close = TRAILER_HEAD, MAX_LINE, b'"}'  # locals: this loop runs per line
        streams, window = chain.streams, chain.id_window
        find = streams.get
        offset, last_seq, last_h = self.offset, chain.last_seq, chain.last_h
        cut, hex_at = -TRAILER_LEN, len(TRAILER_HEAD) - TRAILER_LEN  # where the trailer and its hex start
        bodies: list[bytes] = []
        base = done = 0  # `offset` is where bodies[base] starts; `done` lines after it are admitted
        with self._open() as fh:
            fh.seek(offset)
            carry, handed = b"", False
            try:
                while block := fh.read(BLOCK):
                    offset = self._settle(offset, bodies[base : base + done], last_seq, last_h)
                    base = done = 0
                    data = carry + block if carry else block
                    short = len(data) < longest  # then no line of it can be too long
                    bodies = data.split(b"\n")
                    carry = bodies.pop()
                    for body in bodies:
                        # the fast path of `decode_line`, inline: framing, digest and typed decode of a plain line
                        record = None
                        if body[cut:hex_at] == trailer and body[-2:] == close and (short or len(body) < longest):
                            reset()
                            update(body[:cut])
                            # the hex text itself, byte for byte (fromhex would also accept upper case)
                            if body[hex_at:-2] == hexdigest().encode():
                                try:
                                    record = decode(body)
                                except DECODE_ERRORS:
                                    record = None
                        if record is None or record.v != version:
                            offset = self._settle(offset, bodies[base : base + done], last_seq, last_h)
                            handed = True  # the per-line path owns the counters from here
                            yield from self._per_line(fh, offset)
                            return
                        head = find(record.stream)
                        seq = record.seq
                        if head is not None and not window and seq == last_seq + 1 and record.sv == head.sv + 1 and record.prev == head.h:
                            head.h = last_h = record.h  # the common case of `chain.advance`, inline
                            head.sv += 1
                            last_seq = seq
                        else:
                            offset = self._settle(offset, bodies[base : base + done], last_seq, last_h)
                            base, done = base + done, 0
                            if chain.advance(record, offset) is not None:
                                handed = True
                                yield from self._per_line(fh, offset)
                                return
                            last_seq, last_h = chain.last_seq, chain.last_h
                        done += 1
                        yield record
                    if len(carry) >= MAX_LINE:
                        break
            finally:
                if not handed:
                    offset = self._settle(offset, bodies[base : base + done], last_seq, last_h)
                    base = done = 0
            if carry:
                yield from self._per_line(fh, offset)

    def _settle(self, offset: int, admitted: list[bytes], last_seq: int, last_h: str) -> int:
        """Hand the fast loop's counters to the scanner and chain; the offset past `admitted`."""
        offset += sum(map(len, admitted)) + len(admitted)
        self.chain.last_seq, self.chain.last_h, self.valid_size = last_seq, last_h, offset
        self.records += len(admitted)
        return offset

    def _per_line(self, fh: BinaryIO, offset: int) -> Iterator[Record]:
        chain = self.chain
        lines = iter_lines(fh, offset, chain.last_seq + 1)
        for line in lines:
            outcome = decode_line(line.body, line.complete, self.schema)
            if isinstance(outcome, LineFault):
                self.problem = _classify(line, outcome, lines, fh, self.mark)
                return
            issue = chain.advance(outcome, line.offset)
            if issue is not None:
                self.problem = Problem("corrupt", line.number, line.offset, "chain", issue, seq=outcome.seq)
                return
            self.records += 1
            self.valid_size = line.offset + len(line.body) + 1
            yield outcome

    def result(self) -> ScanResult:
        return ScanResult(self.records, self.valid_size, self.problem)


def scan(
    path: Path | Opener,
    chain: ChainState,
    *,
    offset: int = 0,
    on_record: Callable[[Record], None] | None = None,
    mark: int | None = FROM_HEAD,
) -> ScanResult:
    """Verify from `offset`, calling `on_record` for each record; never raises on damage."""
    scanner = Scanner(path, chain, offset, mark=mark)
    for record in scanner:
        if on_record is not None:
            on_record(record)
    return scanner.result()


def _classify(first: Line, fault: LineFault, rest: Iterator[Line], fh: BinaryIO, mark: int | None) -> Problem:
    more, valid_after = False, False
    for later in rest:  # before any seek: `rest` reads from `fh`
        more = True
        if later.complete and check_line(later.body) is None:
            valid_after = True
            break
    size = fh.seek(0, 2)
    if fault.torn and _torn(first, more, fh, mark, size):
        return Problem(
            "torn_tail",
            first.number,
            first.offset,
            fault.reason,
            fault.message,
            fault.field,
            seq=first.number,
            tail_bytes=size - first.offset,
        )
    message = fault.message
    if fault.torn:
        if valid_after:
            message += ", and valid records follow it"
        elif mark is not None:
            message += f", before the high-water mark at byte {mark}"
        else:
            message += ", and it is not an incomplete last line"
        message += ": corruption, not a torn tail"
    # line N of a log holds seq N, so the bad line's seq is its number even when its bytes cannot say
    kind = "schema_unsupported" if fault.reason == "schema_unsupported" else "corrupt"
    return Problem(kind, first.number, first.offset, fault.reason, message, fault.field, seq=first.number)


def _torn(first: Line, more: bool, fh: BinaryIO, mark: int | None, size: int) -> bool:
    """Whether damage from `first` on lies where no acknowledged record can be."""
    if mark is not None:
        return first.offset >= mark
    if not first.complete and not more and not _ends_in_newline(fh, size):
        return True  # an incomplete final line (an over-long one that has its newline is not)
    return _all_nul(fh, first.offset, size)


def _ends_in_newline(fh: BinaryIO, size: int) -> bool:
    fh.seek(max(0, size - 1))
    return fh.read(1) == b"\n"


def _all_nul(fh: BinaryIO, start: int, end: int) -> bool:
    fh.seek(start)
    while start < end:
        block = fh.read(min(BLOCK, end - start))
        if not block or block.count(0) != len(block):
            return False
        start += len(block)
    return True


def mark_of(path: Path) -> int | None:
    """The acknowledged size the log's head record states, or None when it has none."""
    head = load_head(path)
    return None if head is None else head.size


def read_records(path: Path, from_seq: int = 1, *, tolerate_torn_tail: bool = True, schema: Schema = SCHEMA) -> Iterator[Record]:
    """Every verified record with seq >= from_seq, streaming; fails closed on corruption.

    A torn tail ends the iteration quietly when `tolerate_torn_tail` (a writer may be
    mid-append; verify reports it); corruption always raises.
    """
    if not path.exists():
        raise AsupError(ErrorCode.LOG_NOT_FOUND, "no such log", file=str(path))
    scanner = Scanner(path, ChainState(), schema=schema)
    for record in scanner:
        if record.seq >= from_seq:
            yield record
    problem = scanner.problem
    if problem is not None and not (problem.kind == "torn_tail" and tolerate_torn_tail):
        raise problem.error(str(path))
