"""Verifying a log in line-aligned segments on several processes (`events.segments`).

`verify_log` must give exactly the verdict of one sequential scan: on a clean log the same
records, log id, stream count, last seq and last digest (decided by stitching the segment
scans, so `segments` > 1); on any damage, in a segment or only at a seam, the very same
`Problem` (it falls back to `sequential`, so `segments` == 1).

Logs are written through `JsonlLog` (no fsync, StepClock) and damaged as copies; every
parallel run passes `parallel_from=0` so a log of a few hundred lines takes the parallel
path. "Seam-only" damage is damage each segment scan accepts on its own (every segment is
clean) that only the stitch can see; those tests prove it before asserting the verdict.
"""

from __future__ import annotations

import bisect
import itertools
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from blake3 import blake3
from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import replace
from typer.testing import CliRunner

import events.segments
import runbook.log_commands
from events.clock import StepClock
from events.jsonl_log import JsonlLog
from events.payloads import LogRepaired
from events.record import HEADER_STREAM, TRAILER_HEAD, TRAILER_LEN, Record, check_line, derive_event_id, encode_into, genesis
from events.schema import decode_line
from events.segments import Segment, SegmentChain, Verified, boundaries, scan_segment, sequential, stitch, verify_log
from events.store import Pending
from events.testing import tags, transition
from events.vocabulary import Durability
from runbook.cli import app

JOBS = (2, 3, 4, 7)
LOG_ID = "segments-main"
OTHER_ID = "segments-else"  # a second log with the same appends (for splices)
EVENTS = 300  # after the header
DENSE = 6  # streams s0..s5, round robin
# Sparse streams: (name, period, phase). About one record per segment for some `jobs`, so a
# seam has a stream with exactly one record on each side (what a seam-only swap needs).
SPARSE = (("p97", 97, 50), ("p71", 71, 30), ("p53", 53, 20), ("p37", 37, 10))
LATER_START_NS = 1_790_000_000_000_000_000  # a reopened log's clock starts after the first one's


# --- building logs -----------------------------------------------------------------------


def open_log(path: Path, log_id: str = LOG_ID, start_ns: int | None = None) -> JsonlLog:
    clock = StepClock() if start_ns is None else StepClock(start_ns=start_ns)
    return JsonlLog.open(path, log_id=log_id, durability=Durability.NONE, clock=clock)


def stream_of(i: int) -> str:
    """The stream of the i-th event of the interleaved log: sparse streams at their phase, else round robin."""
    return next((name for name, period, phase in SPARSE if i % period == phase), f"s{i % DENSE}")


def write_interleaved(path: Path, log_id: str = LOG_ID, events: int = EVENTS) -> None:
    """Many streams interleaved (dense round robin plus sparse ones), appended in batches of 10."""
    with open_log(path, log_id) as log:
        items = [Pending(stream_of(i), transition(f"t{i:04d}", i)) for i in range(events)]
        for start in range(0, events, 10):
            log.append_batch(items[start : start + 10])


def write_single_stream(path: Path) -> None:
    """One stream only (besides the header's `$log`)."""
    with open_log(path) as log:
        for start in range(0, 250, 25):
            log.append("only", [transition(f"o{i:04d}", i) for i in range(start, start + 25)])


def write_late_streams(path: Path) -> None:
    """240 events of one stream, then four streams that first appear in the last fifth of the log."""
    with open_log(path) as log:
        log.append("early", [transition(f"e{i:04d}", i) for i in range(240)])
        log.append_batch([Pending(f"late{i % 4}", transition(f"l{i:04d}", i)) for i in range(60)])


def write_repaired(path: Path) -> None:
    """180 events, a torn tail repaired by reopening (a `log_repaired` in `$log`), then 120 more events."""
    with open_log(path) as log:
        log.append_batch([Pending(f"s{i % 3}", transition(f"r{i:04d}", i)) for i in range(180)])
    with path.open("ab") as fh:
        fh.write(b'{"type":"transition","v":1,"seq":182,"str')  # a write cut by a crash
    with open_log(path, start_ns=LATER_START_NS) as log:
        assert log.repaired is not None, "the torn tail was repaired on open"
        log.append_batch([Pending(f"s{i % 3}", transition(f"r{i:04d}", i)) for i in range(180, 300)])


SHAPES: dict[str, Callable[[Path], None]] = {
    "interleaved": write_interleaved,
    "single_stream": write_single_stream,
    "late_streams": write_late_streams,
    "repaired": write_repaired,
}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Each valid shape written once, in its own directory (a repair leaves a quarantine file beside the log)."""
    paths: dict[str, Path] = {}
    for name, write in SHAPES.items():
        path = tmp_path_factory.mktemp(name) / "log.jsonl"
        write(path)
        paths[name] = path
    return paths


@dataclass(frozen=True)
class Base:
    """The interleaved log undamaged: its path, its lines (newlines kept) and those of its twin from another log id."""

    path: Path
    lines: list[bytes]
    other: list[bytes]

    @property
    def records(self) -> list[Record]:
        return [record_of(line) for line in self.lines]


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    root = tmp_path_factory.mktemp("base")
    write_interleaved(root / "log.jsonl")
    write_interleaved(root / "other.jsonl", OTHER_ID)
    lines = (root / "log.jsonl").read_bytes().splitlines(keepends=True)
    other = (root / "other.jsonl").read_bytes().splitlines(keepends=True)
    assert len(lines) == len(other) == EVENTS + 1
    assert [len(x) for x in lines[1:]] == [len(x) for x in other[1:]], "the twin's records have the same lengths"
    return Base(root / "log.jsonl", lines, other)


# --- helpers -----------------------------------------------------------------------------


def record_of(line: bytes) -> Record:
    outcome = decode_line(line.rstrip(b"\n"))
    assert isinstance(outcome, Record), outcome
    return outcome


def starts(lines: list[bytes]) -> list[int]:
    """Byte offset where each line begins."""
    return [0, *itertools.accumulate(len(x) for x in lines)][:-1]


def segment_index(cuts: list[int], offset: int) -> int:
    """Which segment (0-based) the byte at `offset` falls in."""
    return bisect.bisect_right(cuts, offset) - 1


def write(directory: Path, lines: Iterable[bytes], name: str = "damaged.jsonl") -> Path:
    path = directory / name
    path.write_bytes(b"".join(lines))
    return path


def flip(line: bytes, position: int, bit: int = 0) -> bytes:
    damaged = bytearray(line)
    damaged[position] ^= 1 << bit
    return bytes(damaged)


def flip_payload(line: bytes) -> bytes:
    """One bit flipped inside the transfer id (the digest no longer matches)."""
    return flip(line, line.index(b'"transfer_id":"') + len(b'"transfer_id":"') + 1)


def reseq(line: bytes, seq: int) -> bytes:
    """The line with its seq rewritten and its digest trailer recomputed (a valid line again)."""
    old = b'"seq":%d,' % record_of(line).seq
    prefix = line[: -TRAILER_LEN - 1].replace(old, b'"seq":%d,' % seq, 1)
    out = prefix + TRAILER_HEAD + blake3(prefix).hexdigest().encode() + b'"}\n'
    assert check_line(out.rstrip(b"\n")) is None
    return out


def segment_scans(path: Path, jobs: int, log_id: str = LOG_ID) -> list[Segment]:
    """The segment scans `verify_log` would make, made here in one process."""
    return [scan_segment(str(path), a, b, None if a == 0 else log_id) for a, b in itertools.pairwise(boundaries(path, jobs))]


def assert_seam_only(path: Path, jobs: int) -> None:
    """Every segment accepts its bytes on its own; only the stitch refuses them."""
    scans = segment_scans(path, jobs)
    assert len(scans) > 1
    assert all(s.clean for s in scans), [s.clean for s in scans]
    assert stitch(scans) is None


def assert_in_segment(path: Path, jobs: int) -> None:
    """Some segment's own scan already finds the damage."""
    assert not all(s.clean for s in segment_scans(path, jobs))


def assert_reported_as_sequential(path: Path, jobs: int) -> Verified:
    """verify_log on `jobs` segments reports exactly what the sequential scan reports (a problem), from one scan."""
    want = sequential(path)
    got = verify_log(path, jobs, parallel_from=0)
    assert want.problem is not None, "the damage went unnoticed by the sequential scan"
    assert got.problem is not None
    problem, expected = got.problem, want.problem
    assert (problem.kind, problem.line, problem.offset, problem.reason, problem.message, problem.field, problem.seq) == (
        expected.kind,
        expected.line,
        expected.offset,
        expected.reason,
        expected.message,
        expected.field,
        expected.seq,
    )
    assert got == want
    assert got.segments == 1
    return got


def first_at_seam(directory: Path, jobs: int, variants: Iterable[tuple[list[bytes], int]]) -> tuple[Path, int]:
    """The first variant (lines, index) whose line `index` begins a segment of its own file, written out."""
    for lines, index in variants:
        path = write(directory, lines)
        if sum(map(len, lines[:index])) in boundaries(path, jobs)[1:-1]:
            return path, index
    pytest.fail("no variant puts its damage exactly at a cut")


def inner_cut_lines(base: Base, jobs: int) -> list[int]:
    """Indexes (0-based) of the lines that begin a segment other than the first."""
    offsets = starts(base.lines)
    return [offsets.index(cut) for cut in boundaries(base.path, jobs)[1:-1]]


# --- 1. valid logs -----------------------------------------------------------------------


@pytest.mark.parametrize("jobs", JOBS)
@pytest.mark.parametrize("shape", list(SHAPES))
def test_valid_log_parallel_equals_sequential(shapes: dict[str, Path], shape: str, jobs: int) -> None:
    """A valid log verified on `jobs` segments gives the sequential verdict (records, log id, streams,
    last seq and digest, no problem), decided by the stitch: one segment per cut."""
    path = shapes[shape]
    want = sequential(path)
    got = verify_log(path, jobs, parallel_from=0)
    assert want.problem is None
    assert (got.records, got.log_id, got.streams, got.last_seq, got.last_h, got.problem) == (
        want.records,
        want.log_id,
        want.streams,
        want.last_seq,
        want.last_h,
        None,
    )
    assert got.segments == len(boundaries(path, jobs)) - 1 == jobs
    assert got.segments > 1


def test_shapes_are_what_they_claim(shapes: dict[str, Path]) -> None:
    """The late streams first appear after the first cut and the repaired log's `log_repaired` lies after
    it too, for every jobs value (so their entries are checked at a seam, against genesis or `$log`'s head)."""
    late = shapes["late_streams"].read_bytes().splitlines(keepends=True)
    late_records = [record_of(line) for line in late]
    assert len(tags(late_records)) == 300
    first_late = min(offset for offset, r in zip(starts(late), late_records, strict=True) if r.stream.startswith("late"))

    repaired = shapes["repaired"].read_bytes().splitlines(keepends=True)
    repaired_records = [record_of(line) for line in repaired]
    marks = [(offset, r) for offset, r in zip(starts(repaired), repaired_records, strict=True) if isinstance(r.data, LogRepaired)]
    assert len(marks) == 1
    mark_offset, mark = marks[0]
    assert (mark.stream, mark.sv) == (HEADER_STREAM, 2)
    assert len(tags(repaired_records)) == 300

    for jobs in JOBS:
        assert first_late >= boundaries(shapes["late_streams"], jobs)[1]
        assert mark_offset >= boundaries(shapes["repaired"], jobs)[1]
    assert {r.stream for r in [record_of(x) for x in shapes["single_stream"].read_bytes().splitlines()]} == {HEADER_STREAM, "only"}


def test_small_log_or_one_job_is_sequential(shapes: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """Below `parallel_from` bytes, or with one job, the log gets one sequential scan (segments == 1); at
    exactly `parallel_from` bytes it is cut; jobs=0 means default_jobs() processes."""
    path = shapes["interleaved"]
    size = path.stat().st_size
    want = sequential(path)
    assert verify_log(path, 4, parallel_from=size + 1) == want
    assert verify_log(path, 4) == want  # the default threshold (32 MiB) is far above this log
    assert verify_log(path, 1, parallel_from=0) == want
    assert verify_log(path, 4, parallel_from=size) == replace(want, segments=4)
    monkeypatch.setattr(events.segments, "default_jobs", lambda: 3)
    assert verify_log(path, 0, parallel_from=0) == replace(want, segments=3)
    monkeypatch.setattr(events.segments, "default_jobs", lambda: 1)
    assert verify_log(path, 0, parallel_from=0) == want


# --- 2. boundaries -----------------------------------------------------------------------


def assert_cuts_well_formed(path: Path, cuts: list[int], parts: int) -> None:
    data = path.read_bytes()
    assert cuts[0] == 0
    assert cuts[-1] == len(data)
    assert all(a < b for a, b in itertools.pairwise(cuts)), cuts
    assert all(data[cut - 1 : cut] == b"\n" for cut in cuts[1:-1]), "every inner cut follows a newline"
    assert len(cuts) - 1 <= max(parts, 1)


@pytest.mark.parametrize("parts", [1, 2, 3, 4, 7, 64, 1000])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_boundaries_are_line_aligned(shapes: dict[str, Path], shape: str, parts: int) -> None:
    """Cuts start at 0, end at the file size, strictly increase, each inner one right after a newline, and
    there are at most `parts` segments (exactly `parts` when lines are small and many)."""
    path = shapes[shape]
    cuts = boundaries(path, parts)
    assert_cuts_well_formed(path, cuts, parts)
    if parts <= 64:
        assert len(cuts) == parts + 1


@pytest.mark.parametrize("parts", JOBS)
def test_boundaries_about_evenly_spaced(base: Base, parts: int) -> None:
    """Each inner cut is the end of the line holding its even share of the bytes (size * i // parts)."""
    size = base.path.stat().st_size
    longest = max(map(len, base.lines))
    for i, cut in enumerate(boundaries(base.path, parts)[1:-1], start=1):
        assert size * i // parts < cut <= size * i // parts + longest


@pytest.mark.parametrize("after", [2, 10])
def test_boundaries_collapse_around_a_giant_line(tmp_path: Path, after: int) -> None:
    """A giant (but valid) line near the front swallows the guesses that land in it: it is never cut, the first
    inner cut is its end, later guesses behind a cut advance one line each, so with few lines after it there are
    fewer segments than asked (at most one per line after the giant); verify_log still equals the sequential scan."""
    path = tmp_path / "log.jsonl"
    with open_log(path) as log:
        log.append("a", [transition(f"a{i}", i) for i in range(10)])
        log.append("giant", [transition("x" * 400_000)])  # beyond one read block (256 KiB), below MAX_LINE
        log.append("a", [transition(f"b{i}", i) for i in range(after)])
    lines = path.read_bytes().splitlines(keepends=True)
    giant_start = starts(lines)[11]
    giant_end = giant_start + len(lines[11])
    for parts in JOBS:
        cuts = boundaries(path, parts)
        assert_cuts_well_formed(path, cuts, parts)
        assert not any(giant_start < cut < giant_end for cut in cuts)
        assert cuts[1] == giant_end
        assert len(cuts) - 1 == min(parts, after + 1)
        got = verify_log(path, parts, parallel_from=0)
        assert got.segments == len(cuts) - 1 > 1
        assert replace(got, segments=1) == sequential(path)
        assert got.problem is None


def test_boundaries_collapse_to_one_segment_when_the_giant_line_is_last(tmp_path: Path) -> None:
    """When every guess lands in a giant last line there is no inner cut: one segment, verified sequentially."""
    path = tmp_path / "log.jsonl"
    with open_log(path) as log:
        log.append("a", [transition(f"a{i}", i) for i in range(3)])
        log.append("giant", [transition("x" * 400_000)])
    for parts in JOBS:
        cuts = boundaries(path, parts)
        assert cuts == [0, path.stat().st_size]
        assert verify_log(path, parts, parallel_from=0) == sequential(path)
    assert sequential(path).problem is None


def test_boundaries_of_an_empty_file(tmp_path: Path) -> None:
    """An empty file has the single cut pair [0, 0]; verify_log reports it sequentially (no header)."""
    path = write(tmp_path, [], "empty.jsonl")
    assert boundaries(path, 4) == [0, 0]
    assert verify_log(path, 4, parallel_from=0) == sequential(path)


# --- 3. damage: always the sequential verdict --------------------------------------------


@pytest.mark.parametrize("jobs", JOBS)
def test_flipped_byte_in_a_middle_segment(base: Base, tmp_path: Path, jobs: int) -> None:
    """A bit flipped in a record in a middle segment: that segment's scan fails; verify_log reports the
    sequential verdict (corrupt at that line, valid records follow it)."""
    cuts = boundaries(base.path, jobs)
    middle = max(1, (len(cuts) - 1) // 2)
    offsets = starts(base.lines)
    index = min(range(len(offsets)), key=lambda i: abs(offsets[i] - (cuts[middle] + cuts[middle + 1]) // 2))
    assert segment_index(cuts, offsets[index]) == middle
    lines = list(base.lines)
    lines[index] = flip_payload(lines[index])
    path = write(tmp_path, lines)
    assert boundaries(path, jobs) == cuts
    assert_in_segment(path, jobs)
    got = assert_reported_as_sequential(path, jobs)
    assert got.problem is not None
    assert (got.problem.kind, got.problem.line, got.problem.reason) == ("corrupt", index + 1, "digest_mismatch")


@pytest.mark.parametrize("jobs", JOBS)
def test_deleted_first_line_of_each_segment(base: Base, tmp_path: Path, jobs: int) -> None:
    """Deleting the line at each inner cut of the log: reported as the sequential scan reports it (a seq gap there)."""
    for index in inner_cut_lines(base, jobs):
        path = write(tmp_path, [*base.lines[:index], *base.lines[index + 1 :]])
        got = assert_reported_as_sequential(path, jobs)
        assert got.problem is not None
        assert (got.problem.line, got.problem.reason, got.problem.seq) == (index + 1, "chain", index + 2)


@pytest.mark.parametrize("jobs", JOBS)
def test_deleted_line_seam_only(base: Base, tmp_path: Path, jobs: int) -> None:
    """A deleted line whose successor begins a segment of the damaged file: every segment is clean on its
    own (the successor is its stream's entry), only the seq at the seam breaks; reported sequentially."""
    variants = (([*base.lines[:j], *base.lines[j + 1 :]], j) for j in range(2, len(base.lines)))
    path, index = first_at_seam(tmp_path, jobs, variants)
    assert_seam_only(path, jobs)
    got = assert_reported_as_sequential(path, jobs)
    assert got.problem is not None
    assert (got.problem.kind, got.problem.line, got.problem.reason, got.problem.seq) == ("corrupt", index + 1, "chain", index + 2)


@pytest.mark.parametrize("jobs", JOBS)
def test_duplicated_line_at_each_cut(base: Base, tmp_path: Path, jobs: int) -> None:
    """The last line before each inner cut repeated right at the cut: reported as the sequential scan reports it."""
    for index in inner_cut_lines(base, jobs):
        path = write(tmp_path, [*base.lines[:index], base.lines[index - 1], *base.lines[index:]])
        got = assert_reported_as_sequential(path, jobs)
        assert got.problem is not None
        assert (got.problem.line, got.problem.reason, got.problem.seq) == (index + 1, "chain", index)


@pytest.mark.parametrize("jobs", JOBS)
def test_duplicated_line_seam_only(base: Base, tmp_path: Path, jobs: int) -> None:
    """A line repeated so that the copy begins a segment of the damaged file: both segments are clean, the seam's
    seq repeats; reported sequentially."""
    variants = (([*base.lines[:j], base.lines[j - 1], *base.lines[j:]], j) for j in range(2, len(base.lines)))
    path, index = first_at_seam(tmp_path, jobs, variants)
    assert_seam_only(path, jobs)
    got = assert_reported_as_sequential(path, jobs)
    assert got.problem is not None
    assert (got.problem.kind, got.problem.line, got.problem.reason, got.problem.seq) == ("corrupt", index + 1, "chain", index)


def swapped(lines: list[bytes], i: int, j: int, *, rechain_seq: bool) -> list[bytes]:
    """Lines i and j exchanged; with `rechain_seq` each keeps the seq of its new position (re-digested)."""
    out = list(lines)
    out[i], out[j] = (reseq(lines[j], i + 1), reseq(lines[i], j + 1)) if rechain_seq else (lines[j], lines[i])
    return out


@pytest.mark.parametrize("jobs", JOBS)
def test_swapped_lines_of_one_stream_across_a_cut(base: Base, tmp_path: Path, jobs: int) -> None:
    """The last s0 record before a cut and the first after it exchanged, as they are and with their seqs
    rewritten to fit their new lines: reported sequentially (a seq or stream-version fault)."""
    cuts = boundaries(base.path, jobs)
    cut = cuts[len(cuts) // 2]
    offsets, records = starts(base.lines), base.records
    before = max(i for i, r in enumerate(records) if r.stream == "s0" and offsets[i] < cut)
    after = min(i for i, r in enumerate(records) if r.stream == "s0" and offsets[i] >= cut)
    for rechain_seq in (False, True):
        path = write(tmp_path, swapped(base.lines, before, after, rechain_seq=rechain_seq))
        got = assert_reported_as_sequential(path, jobs)
        assert got.problem is not None
        assert (got.problem.line, got.problem.reason) == (before + 1, "chain")


def seam_only_swaps(base: Base, jobs: int) -> Iterator[tuple[int, int]]:
    """(i, j): a stream's only record in segment m >= 1 and its only record in segment m + 1."""
    cuts = boundaries(base.path, jobs)
    segment = [segment_index(cuts, offset) for offset in starts(base.lines)]
    records = base.records
    for m in range(1, len(cuts) - 2):
        for name, _period, _phase in SPARSE:
            here = [i for i, r in enumerate(records) if r.stream == name and segment[i] == m]
            there = [i for i, r in enumerate(records) if r.stream == name and segment[i] == m + 1]
            if len(here) == 1 and len(there) == 1:
                yield here[0], there[0]


@pytest.mark.parametrize("jobs", [3, 4, 7])
def test_swapped_lines_seam_only(base: Base, tmp_path: Path, jobs: int) -> None:
    """Two consecutive records of a sparse stream on opposite sides of a cut (each its stream's only record in
    its segment, neither segment the first), exchanged with seqs rewritten: each segment takes its record as
    the stream's entry and is clean; only the stitch sees the stream go v(k+1) then vk; reported sequentially."""
    for i, j in seam_only_swaps(base, jobs):
        path = write(tmp_path, swapped(base.lines, i, j, rechain_seq=True))
        if boundaries(path, jobs) == boundaries(base.path, jobs):
            break
    else:
        pytest.fail("no seam-only swap in this log")
    assert_seam_only(path, jobs)
    got = assert_reported_as_sequential(path, jobs)
    assert got.problem is not None
    stream, sv = base.records[j].stream, base.records[j].sv
    assert (got.problem.line, got.problem.reason, got.problem.seq) == (i + 1, "chain", i + 1)
    assert got.problem.message == f"stream {stream!r} version {sv}, expected {sv - 1}"


@pytest.mark.parametrize("jobs", JOBS)
def test_spliced_record_from_another_log(base: Base, tmp_path: Path, jobs: int) -> None:
    """A middle-segment record replaced by the same position's record of a log with another id (valid digest,
    same seq, sv and length): reported sequentially as a chain fault at that line."""
    cuts = boundaries(base.path, jobs)
    middle = max(1, (len(cuts) - 1) // 2)
    offsets = starts(base.lines)
    index = next(i for i, offset in enumerate(offsets) if offset > (cuts[middle] + cuts[middle + 1]) // 2)
    path = write(tmp_path, [*base.lines[:index], base.other[index], *base.lines[index + 1 :]])
    assert boundaries(path, jobs) == cuts
    got = assert_reported_as_sequential(path, jobs)
    assert got.problem is not None
    assert (got.problem.line, got.problem.reason, got.problem.seq) == (index + 1, "chain", index + 1)
    assert "spliced" in got.problem.message


@pytest.mark.parametrize("jobs", JOBS)
def test_spliced_entry_seam_only(base: Base, tmp_path: Path, jobs: int) -> None:
    """A sparse stream's only record in a later segment replaced by its twin from another log: the segment
    takes it as the stream's entry (clean); only the stitch sees its prev miss the stream's head."""
    cuts = boundaries(base.path, jobs)
    segment = [segment_index(cuts, offset) for offset in starts(base.lines)]
    records = base.records
    index = next(
        i
        for i, r in enumerate(records)
        if segment[i] >= 1 and r.stream in {name for name, _p, _f in SPARSE}
        if sum(1 for k, x in enumerate(records) if x.stream == r.stream and segment[k] == segment[i]) == 1
        if any(x.stream == r.stream for x in records[:i])  # not the stream's first record: its prev is a head, not genesis
    )
    path = write(tmp_path, [*base.lines[:index], base.other[index], *base.lines[index + 1 :]])
    assert_seam_only(path, jobs)
    got = assert_reported_as_sequential(path, jobs)
    assert got.problem is not None
    assert (got.problem.line, got.problem.reason) == (index + 1, "chain")


@pytest.mark.parametrize("jobs", JOBS)
def test_torn_tail(base: Base, tmp_path: Path, jobs: int) -> None:
    """The last line cut mid-way (no newline), or only its newline missing: the sequential torn-tail verdict."""
    last = base.lines[-1]
    for tail, reason in ((last[: len(last) // 2], "no_newline"), (last[:-1], "no_newline")):
        path = write(tmp_path, [*base.lines[:-1], tail])
        got = assert_reported_as_sequential(path, jobs)
        assert got.problem is not None
        assert (got.problem.kind, got.problem.line, got.problem.reason) == ("torn_tail", len(base.lines), reason)
        assert got.problem.tail_bytes == len(tail)


@pytest.mark.parametrize("jobs", JOBS)
def test_damaged_header(base: Base, tmp_path: Path, jobs: int) -> None:
    """A bit flipped in the header (line 1), or the header of another log in its place: the sequential verdict."""
    path = write(tmp_path, [flip(base.lines[0], 20), *base.lines[1:]])
    got = assert_reported_as_sequential(path, jobs)
    assert got.problem is not None
    assert (got.problem.kind, got.problem.line) == ("corrupt", 1)

    path = write(tmp_path, [base.other[0], *base.lines[1:]])  # names OTHER_ID: line 2 no longer chains to its genesis
    got = assert_reported_as_sequential(path, jobs)
    assert got.problem is not None
    assert (got.problem.kind, got.problem.line, got.problem.reason, got.log_id) == ("corrupt", 2, "chain", OTHER_ID)


def seq_zero_line(log_id: str) -> bytes:
    """A well-formed record (valid digest, a new stream chained to its genesis) that carries seq 0."""
    buf = bytearray()
    stream = "zero"
    encode_into(
        buf,
        seq=0,
        stream=stream,
        sv=1,
        event_id=derive_event_id(log_id, stream, 1),
        ts="2026-05-28T20:26:40.000000Z",
        data=transition("z"),
        prev=genesis(log_id, stream),
    )
    return bytes(buf)


@pytest.mark.parametrize("jobs", JOBS)
def test_seq_zero_record_at_a_cut(base: Base, tmp_path: Path, jobs: int) -> None:
    """A record carrying seq 0 inserted so that it begins a segment is reported as the sequential scan reports
    it (corrupt: seq 0 follows seq N).

    Found by this test: `SegmentChain` once took `first_seq == 0` for "no record seen yet", so a seq-0 first
    record was dropped from the segment's seq chain when the next new stream reset it, and the stitch
    accepted the damaged log."""
    zero = seq_zero_line(LOG_ID)
    variants = (([*base.lines[:j], zero, *base.lines[j:]], j) for j in range(2, len(base.lines)))
    path, index = first_at_seam(tmp_path, jobs, variants)
    want = sequential(path)
    assert want.problem is not None
    assert (want.problem.line, want.problem.reason, want.problem.seq) == (index + 1, "chain", 0)
    scans = segment_scans(path, jobs)
    assert verify_log(path, jobs, parallel_from=0) == want, "segments (clean, records, first_seq, last_seq): " + repr(
        [(s.clean, s.records, s.first_seq, s.last_seq) for s in scans]
    )


# --- 4. the stitch, the segment scan and the segment chain -------------------------------

HAND = "L"
FIRST = Segment(
    clean=True, records=3, first_seq=1, last_seq=3, last_h="h3", entries={}, heads={HEADER_STREAM: (1, "h1"), "a": (2, "h3")}, log_id=HAND
)
SECOND = Segment(
    clean=True,
    records=2,
    first_seq=4,
    last_seq=5,
    last_h="h5",
    entries={"a": (3, "h3"), "b": (1, genesis(HAND, "b"))},
    heads={"a": (3, "h4"), "b": (1, "h5")},
)
THIRD = Segment(clean=True, records=1, first_seq=6, last_seq=6, last_h="h6", entries={"a": (4, "h4")}, heads={"a": (4, "h6")})


def test_stitch_links_hand_built_segments() -> None:
    """Segments that link (seq follows, each entry is (head sv + 1, head h) or (1, genesis) for a new stream)
    stitch to a Verified with the records summed, the union of streams and the last segment's seq and digest."""
    heads = {"$log": (1, "h1"), "a": (4, "h6"), "b": (1, "h5")}
    assert stitch([FIRST, SECOND, THIRD]) == Verified(6, HAND, 3, 6, "h6", None, 3, heads)
    assert stitch([FIRST]) == Verified(3, HAND, 2, 3, "h3", None, 1, FIRST.heads)


BROKEN_SEAMS = {
    "seq skips": [FIRST, replace(SECOND, first_seq=5)],
    "seq repeats": [FIRST, replace(SECOND, first_seq=3)],
    "later seq skips": [FIRST, SECOND, replace(THIRD, first_seq=7)],
    "entry sv skips": [FIRST, replace(SECOND, entries={**SECOND.entries, "a": (4, "h3")})],
    "entry sv repeats": [FIRST, replace(SECOND, entries={**SECOND.entries, "a": (2, "h3")})],
    "entry prev not the head": [FIRST, replace(SECOND, entries={**SECOND.entries, "a": (3, "h2")})],
    "entry links to a stale head": [FIRST, SECOND, replace(THIRD, entries={"a": (3, "h3")})],
    "new stream not at version 1": [FIRST, replace(SECOND, entries={**SECOND.entries, "b": (2, genesis(HAND, "b"))})],
    "new stream not at its genesis": [FIRST, replace(SECOND, entries={**SECOND.entries, "b": (1, "h3")})],
    "new stream at another log's genesis": [FIRST, replace(SECOND, entries={**SECOND.entries, "b": (1, genesis("M", "b"))})],
    "new stream at another stream's genesis": [FIRST, replace(SECOND, entries={**SECOND.entries, "b": (1, genesis(HAND, "a"))})],
    "first segment not clean": [replace(FIRST, clean=False), SECOND],
    "later segment not clean": [FIRST, replace(SECOND, clean=False)],
    "last segment not clean": [FIRST, SECOND, replace(THIRD, clean=False)],
    "no verified header": [replace(FIRST, log_id=None), SECOND],
    "empty later segment": [FIRST, replace(SECOND, records=0)],
}


@pytest.mark.parametrize("segments", list(BROKEN_SEAMS.values()), ids=list(BROKEN_SEAMS))
def test_stitch_refuses_a_broken_seam(segments: list[Segment]) -> None:
    """Any seam that does not link, any unclean segment, or no verified header: no verdict (None)."""
    assert stitch(segments) is None


@pytest.mark.parametrize("jobs", [3, 4, 7])
def test_stitch_of_real_segment_scans(base: Base, jobs: int) -> None:
    """The scans of a real log's segments stitch to the sequential verdict; altering one seam fact of a
    later segment (its first seq, an entry's sv or prev, a new stream's entry, cleanliness) breaks it."""
    scans = segment_scans(base.path, jobs)
    want = sequential(base.path)
    assert stitch(scans) == replace(want, segments=jobs)
    assert sum(s.records for s in scans) == want.records == EVENTS + 1

    def with_later(**changes: Any) -> list[Segment]:
        return [*scans[:2], replace(scans[2], **changes), *scans[3:]]

    later = scans[2]
    stream, (sv, prev) = next(iter(later.entries.items()))
    assert stitch(with_later(first_seq=later.first_seq + 1)) is None
    assert stitch(with_later(first_seq=later.first_seq - 1)) is None
    assert stitch(with_later(entries={**later.entries, stream: (sv + 1, prev)})) is None
    assert stitch(with_later(entries={**later.entries, stream: (sv, genesis(LOG_ID, stream))})) is None
    assert stitch(with_later(clean=False)) is None
    fresh = {"entries": {**later.entries, "fresh": (1, genesis(LOG_ID, "fresh"))}, "heads": {**later.heads, "fresh": (1, "hf")}}
    stitched = stitch(with_later(**fresh))
    assert stitched is not None and stitched.heads is not None and stitched.heads["fresh"] == (1, "hf")
    assert replace(stitched, heads=None) == replace(want, streams=want.streams + 1, segments=jobs, heads=None)
    assert stitch(with_later(entries={**fresh["entries"], "fresh": (1, genesis(OTHER_ID, "fresh"))}, heads=fresh["heads"])) is None


@pytest.mark.parametrize("jobs", JOBS)
def test_scan_segment_reports_its_seam_facts(base: Base, jobs: int) -> None:
    """Each segment's scan is clean and reports its record count, first and last seq, last digest, each stream's
    entry (sv, prev) (none for the first segment, which checks every link itself) and each stream's head (sv, h)."""
    cuts = boundaries(base.path, jobs)
    located = list(zip(starts(base.lines), base.records, strict=True))
    for number, (start, end) in enumerate(itertools.pairwise(cuts)):
        mine = [r for offset, r in located if start <= offset < end]
        entries: dict[str, tuple[int, str]] = {}
        heads: dict[str, tuple[int, str]] = {}
        for r in mine:
            entries.setdefault(r.stream, (r.sv, r.prev))
            heads[r.stream] = (r.sv, r.h)
        expected = Segment(
            clean=True,
            records=len(mine),
            first_seq=mine[0].seq,
            last_seq=mine[-1].seq,
            last_h=mine[-1].h,
            entries={} if number == 0 else entries,
            heads=heads,
            log_id=LOG_ID if number == 0 else None,
        )
        assert scan_segment(str(base.path), start, end, None if number == 0 else LOG_ID) == expected


def test_segment_chain_takes_entries_then_checks_links(base: Base) -> None:
    """SegmentChain starts at any seq, takes each stream's first record as its entry unchecked, and from then on
    checks seq contiguity and each stream's sv and prev like the ordinary chain."""
    records = base.records
    chain = SegmentChain(LOG_ID)
    for r in records[100:140]:
        assert chain.advance(r) is None
    assert chain.first_seq == 101
    assert chain.last_seq == 140
    assert set(chain.entries) == {r.stream for r in records[100:140]}
    assert all(chain.entries[s] == next((r.sv, r.prev) for r in records[100:140] if r.stream == s) for s in chain.entries)
    issue = chain.advance(records[141])  # seq 142 after 140
    assert issue is not None
    assert "seq 142 follows seq 140" in issue

    chain = SegmentChain(LOG_ID)
    assert chain.advance(records[100]) is None
    later = next(r for r in records[102:] if r.stream == records[100].stream)
    mid = [r for r in records[101:] if r.seq < later.seq]
    for r in mid:
        assert chain.advance(r) is None
    skipped = replace(later, sv=later.sv + 1)
    issue = chain.advance(skipped)
    assert issue is not None
    assert issue == f"stream {later.stream!r} version {later.sv + 1}, expected {later.sv}"


# --- 5. a property over mutations ------------------------------------------------------------


def _pristine() -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log.jsonl"
        write_interleaved(path, events=120)
        return path.read_bytes()


PRISTINE = _pristine()
PRISTINE_LINES = PRISTINE.splitlines(keepends=True)
_LAST_LINE = len(PRISTINE_LINES) - 1

MUTATIONS = st.one_of(
    st.tuples(st.just("delete"), st.integers(0, _LAST_LINE), st.just(0)),
    st.tuples(st.just("duplicate"), st.integers(0, _LAST_LINE), st.just(0)),
    st.tuples(st.just("swap"), st.integers(0, _LAST_LINE), st.integers(0, _LAST_LINE)),
    st.tuples(st.just("flip"), st.integers(0, len(PRISTINE) - 1), st.integers(0, 7)),
)


def mutate(mutation: tuple[str, int, int]) -> bytes:
    kind, a, b = mutation
    lines = list(PRISTINE_LINES)
    if kind == "delete":
        del lines[a]
    elif kind == "duplicate":
        lines.insert(a, lines[a])
    elif kind == "swap":
        lines[a], lines[b] = lines[b], lines[a]
    else:
        return flip(PRISTINE, a, b)
    return b"".join(lines)


def test_pristine_log_is_valid_in_parallel() -> None:
    """The property's unmutated log: no problem, sequentially or on 2 and 3 segments."""
    with tempfile.TemporaryDirectory() as tmp:
        path = write(Path(tmp), PRISTINE_LINES)
        want = sequential(path)
        assert want.problem is None
        assert want.records == len(PRISTINE_LINES)
        for jobs in (2, 3):
            assert verify_log(path, jobs, parallel_from=0) == replace(want, segments=jobs)


@settings(max_examples=40, deadline=None)
@given(mutation=MUTATIONS)
def test_any_line_mutation_gives_the_sequential_verdict(mutation: tuple[str, int, int]) -> None:
    """Delete, duplicate or swap lines, or flip a bit anywhere: verify_log on 2 or 3 segments gives exactly the
    sequential verdict (problem, records, last seq; one segment when there is a problem, one per cut otherwise)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "log.jsonl"
        path.write_bytes(mutate(mutation))
        want = sequential(path)
        for jobs in (2, 3):
            got = verify_log(path, jobs, parallel_from=0)
            assert (got.problem, got.records, got.last_seq) == (want.problem, want.records, want.last_seq)
            assert replace(got, segments=1) == want
            assert got.segments == (1 if want.problem is not None else len(boundaries(path, jobs)) - 1)


# --- 6. the CLI ---------------------------------------------------------------------------------


def verify_json(path: Path, jobs: int) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(app, ["log", "verify", str(path), "--jobs", str(jobs), "--json"])
    doc: dict[str, Any] = orjson.loads(result.stdout)
    return result.exit_code, doc


@pytest.fixture
def parallel_cli(monkeypatch: pytest.MonkeyPatch) -> list[Verified]:
    """`asup log verify` with its 32 MiB threshold lowered to 0 (it is verify_log's default argument, bound at
    definition, so the command's reference is wrapped); collects each Verified the command got."""
    seen: list[Verified] = []

    def spy(path: Path, jobs: int = 0) -> Verified:
        result = verify_log(path, jobs, parallel_from=0)
        seen.append(result)
        return result

    monkeypatch.setattr(runbook.log_commands, "verify_log", spy)
    return seen


def test_cli_verify_same_json_for_one_and_two_jobs(base: Base, parallel_cli: list[Verified]) -> None:
    """`asup log verify --json` on a valid log: the same JSON with --jobs 1 (sequential) and --jobs 2 (two segments)."""
    one, two = verify_json(base.path, 1), verify_json(base.path, 2)
    assert one == two
    assert one[0] == 0
    assert one[1]["ok"] is True
    assert (one[1]["records"], one[1]["last_seq"], one[1]["log_id"]) == (EVENTS + 1, EVENTS + 1, LOG_ID)
    assert [v.segments for v in parallel_cli] == [1, 2]


def test_cli_verify_damaged_log_same_problem_for_one_and_two_jobs(base: Base, tmp_path: Path, parallel_cli: list[Verified]) -> None:
    """`asup log verify --json` on a log with a flipped byte exits 1 with the same JSON problem for --jobs 1 and 2."""
    index = len(base.lines) * 3 // 4
    path = write(tmp_path, [*base.lines[:index], flip_payload(base.lines[index]), *base.lines[index + 1 :]])
    one, two = verify_json(path, 1), verify_json(path, 2)
    assert one == two
    assert one[0] == 1
    assert one[1]["ok"] is False
    assert (one[1]["problem"]["kind"], one[1]["problem"]["line"]) == ("corrupt", index + 1)
    assert [v.segments for v in parallel_cli] == [1, 1]


def test_cli_verify_default_threshold(base: Base) -> None:
    """Unpatched, a small log is below the 32 MiB default: --jobs 1 and --jobs 2 print the same JSON."""
    assert verify_json(base.path, 1) == verify_json(base.path, 2)


_REAL_SCAN = events.segments.scan_segment


def _dying_scan(path: str, start: int, end: int, log_id: str | None) -> Segment:
    """scan_segment, except that a worker (any segment after the first) exits hard."""
    if log_id is not None:
        os._exit(3)
    return _REAL_SCAN(path, start, end, log_id)


def test_a_worker_that_dies_falls_back_to_the_sequential_verdict(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """If a worker process dies while scanning, verify_log still gives the sequential verdict
    instead of failing with the pool's error."""
    path = tmp_path / "log.jsonl"
    with JsonlLog.open(path, log_id="dies", durability=Durability.NONE, clock=StepClock()) as log:
        for i in range(200):
            log.append(f"s{i % 7}", [transition(f"e{i}", i)])
    monkeypatch.setattr(events.segments, "scan_segment", _dying_scan)
    result = verify_log(path, 2, parallel_from=0)
    assert result == sequential(path) and result.problem is None and result.segments == 1
