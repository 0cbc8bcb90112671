"""Verifying a big log on several cores: the file is cut at line boundaries into segments,
each scanned by its own process, and the segments' chains are stitched together.

A segment after the first starts mid-log, so its scan cannot know the seq or the stream
heads before it: it takes the seq from its first record, and each stream's first record
in it as that stream's *entry* (sv, prev). Everything else (framing, digest, typed decode,
seq and per-stream chain inside the segment) is checked as in a plain scan. The stitch
then checks what no segment could: each segment's first seq follows the previous one's
last, and every entry links to the stream's head so far (or, for a stream's first record
in the log, to version 1 and its genesis digest).

Only a clean log is decided here. Any problem, in a segment or at a seam, sends the whole
log through the ordinary sequential scan, so a damaged log is reported exactly as
`asup log verify` always reports it (first bad line, torn tail versus corruption).
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from types import TracebackType
from typing import BinaryIO, cast

import msgspec

from events.chain import ChainState
from events.digest import open_regular
from events.payloads import LogCreated
from events.record import MAX_LINE, Record, genesis
from events.scan import Problem, Scanner
from events.schema import decode_line

PARALLEL_FROM = 32 << 20  # smaller logs verify faster than the worker processes start


class Verified(msgspec.Struct, frozen=True):
    """What a whole-log verify found."""

    records: int
    log_id: str | None
    streams: int
    last_seq: int
    last_h: str
    problem: Problem | None
    segments: int  # 1: scanned sequentially (also after any problem)
    heads: dict[str, tuple[int, str]] | None = None  # stream -> (sv, h) at the end, when clean


class Segment(msgspec.Struct, frozen=True):
    """One segment's scan: its counts, its seam facts, and whether it was clean."""

    clean: bool
    records: int
    first_seq: int
    last_seq: int
    last_h: str
    entries: dict[str, tuple[int, str]]  # stream -> (sv, prev) of its first record here
    heads: dict[str, tuple[int, str]]  # stream -> (sv, h) of its last record here
    log_id: str | None = None


class SegmentChain(ChainState):
    """The chain rules for a segment that starts mid-log (see the module doc)."""

    def __init__(self, log_id: str) -> None:
        super().__init__()
        self.log_id = log_id
        self.first_seq: int | None = None  # None until the segment's first record (0 is a seq a damaged line can carry)
        self.entries: dict[str, tuple[int, str]] = {}

    def problem(self, record: Record) -> str | None:
        if self.first_seq is None:
            self.first_seq = record.seq
            self.last_seq = record.seq - 1
        if record.stream not in self.streams and record.v >= 1 and record.seq == self.last_seq + 1:
            self.entries[record.stream] = (record.sv, record.prev)  # its link is the stitch's to check
            return None
        return super().problem(record)


class _Bounded:
    """A binary file that ends at byte `end`: what a segment's scanner reads."""

    def __init__(self, path: Path, end: int) -> None:
        self._fh = open_regular(path, follow=True)
        self._end = end

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._fh.tell(), os.SEEK_END: self._end}[whence]
        return self._fh.seek(max(0, min(base + offset, self._end)))

    def read(self, size: int = -1) -> bytes:
        left = max(0, self._end - self._fh.tell())
        return self._fh.read(left if size < 0 else min(size, left))

    def __enter__(self) -> _Bounded:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._fh.close()


def boundaries(path: Path, parts: int) -> list[int]:
    """Line-aligned cut points 0 = b0 < b1 < ... < bn = size, about size/parts apart."""
    size = path.stat().st_size
    cuts = [0]
    with open_regular(path, follow=True) as fh:
        for i in range(1, parts):
            fh.seek(max(size * i // parts, cuts[-1]))
            fh.readline(MAX_LINE)  # to the end of the line the guess landed in (a longer one: the scans refuse it)
            at = fh.tell()
            if cuts[-1] < at < size:
                cuts.append(at)
    return [*cuts, size]


def scan_segment(path: str, start: int, end: int, log_id: str | None) -> Segment:
    """Scan bytes [start, end) of the log (in a worker process; `log_id` None: the first segment)."""
    chain: ChainState = ChainState() if log_id is None else SegmentChain(log_id)
    source = Path(path)
    scanner = Scanner(lambda: cast(BinaryIO, _Bounded(source, end)), chain, start)
    for _record in scanner:
        pass
    entries = chain.entries if isinstance(chain, SegmentChain) else {}
    first = chain.first_seq if isinstance(chain, SegmentChain) else 1
    first = chain.last_seq + 1 if first is None else first  # an empty segment
    return Segment(
        clean=scanner.problem is None and scanner.valid_size == end,
        records=scanner.records,
        first_seq=first,
        last_seq=chain.last_seq,
        last_h=chain.last_h,
        entries=entries,
        heads={name: (head.sv, head.h) for name, head in chain.streams.items()},
        log_id=chain.log_id if log_id is None else None,
    )


def stitch(segments: list[Segment]) -> Verified | None:
    """The verdict on a clean log from its segments in order, or None when a seam breaks."""
    head = segments[0]
    if head.log_id is None or head.first_seq != 1:
        return None
    if not all(s.clean and s.records == s.last_seq - s.first_seq + 1 for s in segments):
        return None  # a segment's seqs are contiguous from its first: a count that differs means one was skipped
    log_id = head.log_id
    heads = dict(head.heads)
    last_seq, last_h, records = head.last_seq, head.last_h, head.records
    for segment in segments[1:]:
        if segment.records == 0 or segment.first_seq != last_seq + 1:
            return None
        for stream, entry in segment.entries.items():
            before = heads.get(stream)
            if entry != ((before[0] + 1, before[1]) if before else (1, genesis(log_id, stream))):
                return None
        heads.update(segment.heads)
        last_seq, last_h, records = segment.last_seq, segment.last_h, records + segment.records
    return Verified(records, log_id, len(heads), last_seq, last_h, None, len(segments), heads)


def sequential(path: Path) -> Verified:
    scanner = Scanner(path, ChainState())
    for _record in scanner:
        pass
    chain = scanner.chain
    heads = {name: (head.sv, head.h) for name, head in chain.streams.items()} if scanner.problem is None else None
    return Verified(scanner.records, chain.log_id, len(chain.streams), chain.last_seq, chain.last_h, scanner.problem, 1, heads)


def default_jobs() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def verify_log(path: Path, jobs: int = 0, *, parallel_from: int = PARALLEL_FROM) -> Verified:
    """Verify the whole log: on `jobs` cores (0: every usable one) when it is at least
    `parallel_from` bytes, else (or on any problem) with one sequential scan."""
    jobs = jobs or default_jobs()
    if jobs < 2 or path.stat().st_size < parallel_from:
        return sequential(path)
    cuts = boundaries(path, jobs)
    if len(cuts) < 3:
        return sequential(path)
    log_id = header_log_id(path)
    if log_id is None:
        return sequential(path)
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    try:
        with ProcessPoolExecutor(max_workers=len(cuts) - 2, mp_context=context) as pool:
            futures = [pool.submit(scan_segment, str(path), a, b, log_id) for a, b in itertools.pairwise(cuts[1:])]
            first = scan_segment(str(path), 0, cuts[1], None)  # this process takes the first segment meanwhile
            rest = [future.result() for future in futures]
    except (BrokenProcessPool, OSError):
        return sequential(path)  # a worker died or could not start: the one-process scan still gives the verdict
    if first.log_id != log_id:
        return sequential(path)
    return stitch([first, *rest]) or sequential(path)


def line_start(path: Path, offset: int) -> int:
    """The offset of the first line that starts at or after `offset` (the file's size when none does)."""
    with open_regular(path, follow=True) as fh:
        fh.seek(offset - 1)
        fh.readline(MAX_LINE + 1)  # to the end of the line byte offset - 1 is in: a newline there means `offset` starts one
        return fh.tell()


def header_log_id(path: Path) -> str | None:
    """The log id the header (line 1) names, unverified: the first segment's scan verifies it."""
    with open_regular(path, follow=True) as fh:
        line = fh.readline(MAX_LINE)
    outcome = decode_line(line.rstrip(b"\n"))
    return outcome.data.log_id if isinstance(outcome, Record) and isinstance(outcome.data, LogCreated) else None
