"""Damage to a real JSONL log is found where it is, by kind, and never papered over.

A 50-record log (header + 49 events over three streams, StepClock) is written once; each
test damages a copy. Mid-log damage (bit flips, edits, deletions, swaps, duplicates,
splices from another log, a bad first line) is `corrupt` at the right line and seq for
Scanner, read_records and JsonlLog.open, and the open refuses without touching the
file. Damage confined to the tail (a cut last line, garbage after the last newline) is a
`torn_tail`: the open quarantines exactly those bytes, records `log_repaired`, and
appends continue at the next seq; a second open repairs nothing. A bad line followed by
a valid one is corruption, never a torn tail. The copies are opened cold (no head index)
unless a test says otherwise.
"""

from __future__ import annotations

import random
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
from blake3 import blake3

from events.chain import ChainState
from events.clock import StepClock
from events.digest import digest_bytes
from events.errors import AsupError, ErrorCode
from events.head_record import head_path
from events.jsonl_log import JsonlLog
from events.payloads import LogRepaired, Transition
from events.record import HEADER_STREAM, TRAILER_LEN, Record, encode_into, genesis
from events.scan import Problem, Scanner, read_records
from events.store import Pending
from events.vocabulary import Durability, State, Trigger
from events.writer_index import index_path

STREAMS = ("alpha", "beta", "gamma")
EVENTS = 49  # after the header: 50 lines, line number == seq
MIDDLE = 25  # a middle record (gamma); line 26 belongs to alpha
TRAILER_HEAD = b',"h":"blake3:'


def event(stream: str, i: int) -> Transition:
    return Transition(
        transfer_id=stream, from_state=State.SYNCING, trigger=Trigger.CHUNK_COMMITTED, to_state=State.SYNCING, attempt=1, committed_cursor=i
    )


def _write_log(path: Path, log_id: str) -> None:
    with JsonlLog.open(path, log_id=log_id, clock=StepClock()) as log:
        items = [Pending(STREAMS[i % 3], event(STREAMS[i % 3], i)) for i in range(EVENTS)]
        for start in range(0, EVENTS, 7):
            log.append_batch(items[start : start + 7])


@dataclass(frozen=True)
class Base:
    """The undamaged log: its lines (with newlines), a twin from another log id, and its valid next line."""

    dir: Path
    lines: list[bytes]
    other: list[bytes]  # the same appends into a log with another id
    next_line: bytes  # the record the log would get next (seq 51), valid

    @property
    def data(self) -> bytes:
        return b"".join(self.lines)

    def offset(self, line: int) -> int:
        """Byte offset where 1-based `line` starts."""
        return sum(len(x) for x in self.lines[: line - 1])

    def parsed(self, line: int) -> dict[str, Any]:
        obj: dict[str, Any] = orjson.loads(self.lines[line - 1])
        return obj

    def next_of_stream(self, line: int) -> int:
        stream = self.parsed(line)["stream"]
        return next(n for n in range(line + 1, len(self.lines) + 1) if self.parsed(n)["stream"] == stream)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Base:
    root = tmp_path_factory.mktemp("base")
    _write_log(root / "log.jsonl", "corruption-src")
    _write_log(root / "other.jsonl", "corruption-other")
    shutil.copy(root / "log.jsonl", root / "longer.jsonl")
    with JsonlLog.open(root / "longer.jsonl", clock=StepClock(start_ns=2_000_000_000_000_000_000)) as log:
        log.append("alpha", [event("alpha", 99)])
    lines = (root / "log.jsonl").read_bytes().splitlines(keepends=True)
    assert len(lines) == EVENTS + 1
    return Base(
        dir=root,
        lines=lines,
        other=(root / "other.jsonl").read_bytes().splitlines(keepends=True),
        next_line=(root / "longer.jsonl").read_bytes().splitlines(keepends=True)[-1],
    )


# --- helpers ---------------------------------------------------------------------------


def rehash(obj: dict[str, Any]) -> bytes:
    """An edited record re-serialised with a valid digest trailer, newline included."""
    prefix = orjson.dumps({k: v for k, v in obj.items() if k != "h"})[:-1]
    return prefix + TRAILER_HEAD + blake3(prefix).hexdigest().encode() + b'"}\n'


def flip(line: bytes, position: int, bit: int) -> bytes:
    damaged = bytearray(line)
    damaged[position] ^= 1 << bit
    return bytes(damaged)


def scan_of(path: Path) -> tuple[Problem | None, list[Record]]:
    scanner = Scanner(path, ChainState())
    records = list(scanner)
    if scanner.problem is not None:
        assert scanner.valid_size == scanner.problem.offset, "valid bytes end where the first bad line begins"
    else:
        assert scanner.valid_size == path.stat().st_size
    assert scanner.records == len(records)
    return scanner.problem, records


def side_files(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir() if p.name != path.name and not p.name.endswith(".lock"))


def torn_files(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.torn-*"))


@dataclass(frozen=True)
class Expect:
    line: int
    reason: str
    seq: int | None = None  # checked when set
    message: str = ""  # a substring of the message
    kind: str = "corrupt"  # or schema_unsupported: refused the same way, but not damage
    foreign: bool = False  # the first line is not an asup header: a writer says not_an_asup_log


def line_offset(data: bytes, line: int) -> int:
    """Byte offset where 1-based `line` of `data` starts."""
    offset = 0
    for _ in range(line - 1):
        offset = data.index(b"\n", offset) + 1
    return offset


def assert_corrupt(path: Path, expect: Expect) -> None:
    """Scanner, read_records and JsonlLog.open all report `expect`; the open leaves the file as it was."""
    offset = line_offset(path.read_bytes(), expect.line)
    problem, records = scan_of(path)
    assert problem is not None, "damage went unnoticed"
    assert (problem.kind, problem.line, problem.offset, problem.reason) == (expect.kind, expect.line, offset, expect.reason), problem
    assert expect.message in problem.message
    if expect.seq is not None:
        assert problem.seq == expect.seq, problem
    assert [r.seq for r in records] == list(range(1, expect.line))

    yielded: list[int] = []
    with pytest.raises(AsupError) as raised:
        yielded.extend(r.seq for r in read_records(path))
    assert yielded == list(range(1, expect.line)), "read_records yields the verified prefix, then raises"
    _check_error(raised.value, path, expect)

    before, sides = path.read_bytes(), side_files(path)
    for _attempt in range(2):  # a refused open releases its lock: the second attempt is refused the same way
        with pytest.raises(AsupError) as refused:
            JsonlLog.open(path, clock=StepClock())
        _check_error(refused.value, path, expect, writer=True)
    assert path.read_bytes() == before, "a refused open must not modify the log"
    assert side_files(path) == sides, "a refused open writes no quarantine or index"


def _check_error(error: AsupError, path: Path, expect: Expect, *, writer: bool = False) -> None:
    if writer and expect.foreign:
        assert (error.code, error.file, error.line) == (ErrorCode.NOT_AN_ASUP_LOG, str(path), 1), error
        return
    assert error.code is (ErrorCode.CORRUPT_RECORD if expect.kind == "corrupt" else ErrorCode.SCHEMA_UNSUPPORTED), error
    assert (error.file, error.line) == (str(path), expect.line), error
    if expect.seq is not None:
        assert error.seq == expect.seq, error
    assert f"{path}:{expect.line}:" in error.one_line()


def write(tmp_path: Path, lines: list[bytes], name: str = "log.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(b"".join(lines))
    return path


def replaced(lines: list[bytes], line: int, new: bytes) -> list[bytes]:
    return [*lines[: line - 1], new, *lines[line:]]


# --- bit flips ---------------------------------------------------------------------------

FLIP_SPOTS: dict[str, Callable[[bytes], int]] = {
    "type": lambda line: line.index(b'"type":"') + 8,
    "seq digit": lambda line: line.index(b'"seq":') + 6,
    "data": lambda line: line.index(b'"data":{') + 12,
    "prev": lambda line: line.index(b'"prev":"blake3:') + 20,
    "h hex": lambda line: len(line) - 1 - TRAILER_LEN + len(TRAILER_HEAD) + 5,
    "h key": lambda line: len(line) - 1 - TRAILER_LEN + 2,
    "newline": lambda line: len(line) - 1,
}


@pytest.mark.parametrize("spot", list(FLIP_SPOTS))
def test_bit_flip_in_a_middle_record_is_corrupt_at_its_line(base: Base, tmp_path: Path, spot: str) -> None:
    """Any bit flipped at a spot of record 25 (type, seq, data, prev, h, newline) is a digest mismatch at line 25, not a torn tail."""
    line = base.lines[MIDDLE - 1]
    position = FLIP_SPOTS[spot](line)
    for bit in range(8):
        directory = tmp_path / f"bit{bit}"
        directory.mkdir()
        path = write(directory, replaced(base.lines, MIDDLE, flip(line, position, bit)))
        expect = Expect(MIDDLE, "digest_mismatch", message="valid records follow it")
        assert_corrupt(path, expect)


def test_bit_flip_anywhere_in_a_middle_record_is_found_at_its_line(base: Base, tmp_path: Path) -> None:
    """Every byte of record 25 (newline included), one bit each, is caught by the scan at line 25 with 24 records verified."""
    line = base.lines[MIDDLE - 1]
    path = tmp_path / "log.jsonl"
    misses = []
    for position in range(len(line)):
        path.write_bytes(b"".join(replaced(base.lines, MIDDLE, flip(line, position, position % 8))))
        problem, records = scan_of(path)
        if problem is None or (problem.kind, problem.line, problem.offset, len(records)) != (
            "corrupt",
            MIDDLE,
            base.offset(MIDDLE),
            MIDDLE - 1,
        ):
            misses.append((position, problem))
    assert not misses, f"flips reported wrongly: {misses[:5]}"


def test_line_fault_reports_the_seq_of_its_line(base: Base, tmp_path: Path) -> None:
    """A damaged middle line names the seq that belongs there (line == seq), in the Problem and in the error."""
    path = write(tmp_path, replaced(base.lines, MIDDLE, flip(base.lines[MIDDLE - 1], 100, 0)))
    problem, _ = scan_of(path)
    assert problem is not None
    assert problem.seq == MIDDLE, problem
    assert f"(seq {MIDDLE})" in problem.error(str(path)).one_line()


# --- edits ---------------------------------------------------------------------------------


def test_rehashed_edit_breaks_the_chain_at_the_streams_next_record(base: Base, tmp_path: Path) -> None:
    """An edited record re-hashed to a valid digest passes itself; the chain breaks at the NEXT record of its stream, not the next line."""
    obj = base.parsed(MIDDLE)
    obj["data"]["committed_cursor"] += 1000
    nxt = base.next_of_stream(MIDDLE)
    assert nxt > MIDDLE + 1, "the next line belongs to another stream: the two candidate lines differ"
    path = write(tmp_path, replaced(base.lines, MIDDLE, rehash(obj)))
    expect = Expect(nxt, "chain", seq=nxt, message=f"prev of stream {obj['stream']!r}")
    assert_corrupt(path, expect)
    _, records = scan_of(path)
    edited = records[MIDDLE - 1].data
    assert isinstance(edited, Transition) and edited.committed_cursor == obj["data"]["committed_cursor"], (
        "the edited record itself verifies"
    )


def test_edit_without_rehash_is_a_digest_mismatch(base: Base, tmp_path: Path) -> None:
    """An edited record whose digest was left alone is a digest mismatch at its own line."""
    line = base.lines[MIDDLE - 1].replace(b'"attempt":1', b'"attempt":7')
    assert line != base.lines[MIDDLE - 1]
    path = write(tmp_path, replaced(base.lines, MIDDLE, line))
    assert_corrupt(path, Expect(MIDDLE, "digest_mismatch"))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("seq", MIDDLE + 1, "follows seq"),
        ("sv", 99, "version 99"),
        ("prev", "blake3:" + "0" * 64, "prev of stream"),
        ("v", 0, "schema version"),
    ],
)
def test_rehashed_envelope_edit_is_a_chain_break_at_its_line(base: Base, tmp_path: Path, key: str, value: object, message: str) -> None:
    """Re-hashed edits of seq, sv, prev or v break the chain at the edited line itself, naming the seq found there."""
    obj = base.parsed(MIDDLE)
    obj[key] = value
    path = write(tmp_path, replaced(base.lines, MIDDLE, rehash(obj)))
    assert_corrupt(path, Expect(MIDDLE, "chain", seq=obj["seq"], message=message))


# --- deletion, reordering, duplication, splicing ---------------------------------------------


def test_deleted_middle_line_is_a_seq_gap(base: Base, tmp_path: Path) -> None:
    """Removing line 25 leaves seq 26 at line 25: a gap reported at line 25, seq 26."""
    path = write(tmp_path, [*base.lines[: MIDDLE - 1], *base.lines[MIDDLE:]])
    expect = Expect(MIDDLE, "chain", seq=MIDDLE + 1, message=f"seq {MIDDLE + 1} follows seq {MIDDLE - 1}")
    assert_corrupt(path, expect)


@pytest.mark.parametrize(("a", "b"), [(MIDDLE, MIDDLE + 1), (20, 30), (2, 50)])
def test_swapped_lines_are_out_of_order_at_the_first(base: Base, tmp_path: Path, a: int, b: int) -> None:
    """Swapping lines a and b is reported at line a, which now holds seq b."""
    lines = list(base.lines)
    lines[a - 1], lines[b - 1] = lines[b - 1], lines[a - 1]
    path = write(tmp_path, lines)
    assert_corrupt(path, Expect(a, "chain", seq=b, message=f"seq {b} follows seq {a - 1}"))


@pytest.mark.parametrize("line", [MIDDLE, EVENTS + 1])
def test_duplicated_line_is_a_repeat_at_the_copy(base: Base, tmp_path: Path, line: int) -> None:
    """A line repeated right after itself (in the middle or at the very end) is corrupt at the copy: seq k follows seq k."""
    path = write(tmp_path, [*base.lines[:line], base.lines[line - 1], *base.lines[line:]])
    assert_corrupt(path, Expect(line + 1, "chain", seq=line, message=f"seq {line} follows seq {line}"))


@pytest.mark.parametrize("line", [4, MIDDLE, EVENTS + 1])
def test_line_pasted_from_another_log_breaks_the_chain(base: Base, tmp_path: Path, line: int) -> None:
    """A valid line of another log with the same seq, stream and sv (a stream's first record, a middle one, the last) fails its prev."""
    pasted = base.other[line - 1]
    assert orjson.loads(pasted)["seq"] == line and pasted != base.lines[line - 1]
    stream = orjson.loads(pasted)["stream"]
    path = write(tmp_path, replaced(base.lines, line, pasted))
    assert_corrupt(path, Expect(line, "chain", seq=line, message=f"prev of stream {stream!r}"))


def test_other_logs_header_breaks_the_chain_at_line_two(base: Base, tmp_path: Path) -> None:
    """Another log's header is self-consistent, but every stream's genesis then differs: line 2 fails its prev."""
    path = write(tmp_path, replaced(base.lines, 1, base.other[0]))
    assert_corrupt(path, Expect(2, "chain", seq=2, message="prev of stream 'alpha'"))


# --- the first line --------------------------------------------------------------------------


def _non_header_first_record(base: Base) -> bytes:
    buf = bytearray()
    log_id = base.parsed(1)["data"]["log_id"]
    encode_into(buf, seq=1, stream="alpha", sv=1, event_id="e-x", ts="T", data=event("alpha", 0), prev=genesis(log_id, "alpha"))
    return bytes(buf)


def _edited_header(base: Base, **changes: Any) -> bytes:
    obj = base.parsed(1)
    for key, value in changes.items():
        if key == "schema":
            obj["data"]["schema"] = value
        else:
            obj[key] = value
    return rehash(obj)


@pytest.mark.parametrize(
    ("case", "make", "expect"),
    [
        ("header deleted", lambda b: b.lines[1:], Expect(1, "chain", seq=2, message="seq 2 follows seq 0", foreign=True)),
        (
            "event at seq 1",
            lambda b: replaced(b.lines, 1, _non_header_first_record(b)),
            Expect(1, "chain", seq=1, message="not the log_created header", foreign=True),
        ),
        (
            "header on a stream",
            lambda b: replaced(b.lines, 1, _edited_header(b, stream="alpha")),
            Expect(1, "chain", message="not the log_created header"),
        ),
        ("header schema", lambda b: replaced(b.lines, 1, _edited_header(b, schema="asup.log/9")), Expect(1, "chain", message="log schema")),
        ("garbage line", lambda b: [b"hello, not a record\n", *b.lines[1:]], Expect(1, "digest_mismatch", foreign=True)),
        ("blank line", lambda b: [b"\n", *b.lines], Expect(1, "digest_mismatch", foreign=True)),
    ],
)
def test_first_line_not_a_header_is_corrupt_at_line_one(
    base: Base, tmp_path: Path, case: str, make: Callable[[Base], list[bytes]], expect: Expect
) -> None:
    """A log whose first line is not its valid log_created header is refused at line 1 (by a
    writer as not an asup log when the line is not even the start of a header)."""
    path = write(tmp_path, make(base))
    assert_corrupt(path, expect)


# --- torn tails ----------------------------------------------------------------------------


def assert_repaired(path: Path, *, good: bytes, torn: bytes, reason: str, line: int) -> None:
    """Open repairs: `torn` quarantined byte-exact, the log cut to `good`, log_repaired at seq `line`, the next append at line+1."""
    with JsonlLog.open(path, clock=StepClock(), durability=Durability.NONE) as log:
        repaired = log.repaired
        assert repaired is not None, "the torn tail was not repaired"
        assert (repaired.offset, repaired.length, repaired.reason) == (len(good), len(torn), reason)
        assert repaired.torn_digest == digest_bytes(torn)
        assert repaired.quarantine == f"{path.name}.torn-{len(good)}"
        assert (path.parent / repaired.quarantine).read_bytes() == torn
        assert log.last_position()[0] == line
        now = list(read_records(path, line))
        assert len(now) == 1 and now[0].data == repaired, "log_repaired is the last record"
        positions = log.append("alpha", [event("alpha", 1000)])
        assert positions[0].seq == line + 1
    data = path.read_bytes()
    assert data.startswith(good)
    problem, records = scan_of(path)
    assert problem is None, problem
    assert [r.seq for r in records] == list(range(1, line + 2))
    last_but_one = records[line - 1]
    assert last_but_one.stream == HEADER_STREAM and last_but_one.data == repaired
    assert isinstance(records[-1].data, Transition)


def test_last_line_cut_at_every_offset_is_a_repairable_torn_tail(base: Base, tmp_path: Path) -> None:
    """A last line cut after 1 .. len-1 bytes (no newline) is torn_tail at line 50; open quarantines exactly the cut bytes."""
    last = base.lines[-1]
    good = base.data[: base.offset(EVENTS + 1)]
    for cut in range(1, len(last)):
        directory = tmp_path / f"cut{cut}"
        directory.mkdir()
        path = directory / "log.jsonl"
        path.write_bytes(good + last[:cut])
        problem, records = scan_of(path)
        assert problem is not None, f"cut {cut}: not noticed"
        expected = ("torn_tail", EVENTS + 1, len(good), "no_newline", cut)
        assert (problem.kind, problem.line, problem.offset, problem.reason, problem.tail_bytes) == expected, f"cut {cut}: {problem}"
        assert len(records) == EVENTS
        assert [r.seq for r in read_records(path)] == list(range(1, EVENTS + 1)), f"cut {cut}: tolerant read"
        with pytest.raises(AsupError) as strict:
            list(read_records(path, tolerate_torn_tail=False))
        assert (strict.value.code, strict.value.line) == (ErrorCode.TORN_TAIL, EVENTS + 1)
        assert f"asup log repair {path}" in strict.value.message
        assert_repaired(path, good=good, torn=last[:cut], reason="no_newline", line=EVENTS + 1)


def _wrong_hash(line: bytes) -> bytes:
    position = len(line) - 1 - TRAILER_LEN + len(TRAILER_HEAD) + 10
    return line[:position] + (b"0" if line[position : position + 1] != b"0" else b"1") + line[position + 1 :]


# what each garbage tail is without a high-water mark: torn only if it is an incomplete last line or all NULs
GARBAGE: dict[str, tuple[Callable[[Base], bytes], str | None, bool]] = {
    "NULs": (lambda b: b"\0" * 64, "no_newline", True),
    "NUL line": (lambda b: b"\0" * 63 + b"\n", "digest_mismatch", False),
    "random bytes": (lambda b: random.Random(5).randbytes(400), None, False),
    "random lines": (lambda b: b"\n".join(random.Random(6).randbytes(50) for _ in range(4)) + b"\n", None, False),
    "plain JSON": (lambda b: b'{"type":"transition","v":1}\n', "digest_mismatch", False),
    "valid JSON, wrong hash": (lambda b: _wrong_hash(b.next_line), "digest_mismatch", False),
    "valid JSON, wrong hash, no newline": (lambda b: _wrong_hash(b.next_line)[:-1], "no_newline", True),
    "valid record, no newline": (lambda b: b.next_line[:-1], "no_newline", True),
}


@pytest.mark.parametrize("with_mark", [False, True], ids=["cold", "head-record"])
@pytest.mark.parametrize("kind", list(GARBAGE))
def test_garbage_after_the_last_record_is_a_repairable_torn_tail(base: Base, tmp_path: Path, kind: str, with_mark: bool) -> None:
    """Bytes after the last acknowledged record (the high-water mark) are torn_tail at line 51 and
    open moves exactly them aside; with no mark, only a cut last line or a NUL run is, and any
    other garbage is corruption, refused with the file untouched."""
    make, reason, torn_cold = GARBAGE[kind]
    garbage = make(base)
    path = tmp_path / "log.jsonl"
    path.write_bytes(base.data + garbage)
    if with_mark:
        shutil.copy(head_path(base.dir / "log.jsonl"), head_path(path))
    problem, records = scan_of(path)
    assert problem is not None and len(records) == EVENTS + 1
    if not (with_mark or torn_cold):
        assert_corrupt(path, Expect(EVENTS + 2, problem.reason, message="corruption, not a torn tail"))
        assert torn_files(path) == []
        return
    assert (problem.kind, problem.line, problem.offset, problem.tail_bytes) == ("torn_tail", EVENTS + 2, len(base.data), len(garbage))
    if reason is not None:
        assert problem.reason == reason
    assert_repaired(path, good=base.data, torn=garbage, reason=problem.reason, line=EVENTS + 2)


def test_damage_in_an_acknowledged_last_record_is_corruption(base: Base, tmp_path: Path) -> None:
    """A flipped bit in the last record, which the high-water mark covers, is refused, never quarantined."""
    last = base.lines[-1]
    path = write(tmp_path, replaced(base.lines, EVENTS + 1, flip(last, len(last) // 2, 3)))
    shutil.copy(head_path(base.dir / "log.jsonl"), head_path(path))
    assert_corrupt(path, Expect(EVENTS + 1, "digest_mismatch", message="before the high-water mark"))
    assert torn_files(path) == []


def test_torn_header_is_repaired_into_a_fresh_log(tmp_path: Path, base: Base) -> None:
    """A log whose only line is a cut header is torn at line 1; open quarantines it, writes a header, then log_repaired."""
    torn = base.lines[0][:40]
    path = tmp_path / "log.jsonl"
    path.write_bytes(torn)
    problem, _ = scan_of(path)
    assert problem is not None and (problem.kind, problem.line, problem.offset) == ("torn_tail", 1, 0)
    with JsonlLog.open(path, clock=StepClock()) as log:
        assert log.repaired is not None and log.repaired.length == len(torn)
    problem, records = scan_of(path)
    assert problem is None
    assert [r.type for r in records] == ["log_created", "log_repaired"]
    assert (path.parent / f"{path.name}.torn-0").read_bytes() == torn


TAILS = {
    "cut 1": lambda b: b.data[: b.offset(EVENTS + 1)] + b.lines[-1][:1],
    "cut half": lambda b: b.data[: b.offset(EVENTS + 1)] + b.lines[-1][: len(b.lines[-1]) // 2],
    "cut all but newline": lambda b: b.data[:-1],
    "NULs": lambda b: b.data + b"\0" * 10,
}


@pytest.mark.parametrize("drop_index", [False, True], ids=["head-index", "cold"])
@pytest.mark.parametrize("tail", list(TAILS))
def test_reopen_after_repair_repairs_nothing(base: Base, tmp_path: Path, tail: str, drop_index: bool) -> None:
    """A second open after a repair finds nothing torn: no second log_repaired, no new quarantine, the bytes unchanged."""
    path = tmp_path / "log.jsonl"
    path.write_bytes(TAILS[tail](base))
    with JsonlLog.open(path, clock=StepClock()) as log:
        assert log.repaired is not None
    after, quarantined = path.read_bytes(), torn_files(path)
    assert len(quarantined) == 1
    if drop_index:
        index_path(path).unlink()
    with JsonlLog.open(path, clock=StepClock()) as log:
        assert log.repaired is None
    assert path.read_bytes() == after
    assert torn_files(path) == quarantined
    _, records = scan_of(path)
    assert sum(isinstance(r.data, LogRepaired) for r in records) == 1


# --- a bad line with a valid one after it is never a torn tail ----------------------------------


BAD_THEN_VALID: dict[str, tuple[Callable[[Base], bytes], Expect]] = {
    "garbage line, then the next record": (
        lambda b: b.data + b"garbage\n" + b.next_line,
        Expect(EVENTS + 2, "digest_mismatch", message="valid records follow"),
    ),
    "NUL line, then the next record": (lambda b: b.data + b"\0" * 40 + b"\n" + b.next_line, Expect(EVENTS + 2, "digest_mismatch")),
    "wrong hash, then the next record": (lambda b: b.data + _wrong_hash(b.lines[-1]) + b.next_line, Expect(EVENTS + 2, "digest_mismatch")),
    "cut line, then a whole one": (
        lambda b: b.data[: b.offset(EVENTS + 1)] + b.lines[-1][:100] + b"\n" + b.lines[-1],
        Expect(EVENTS + 1, "digest_mismatch", message="valid records follow"),
    ),
}


@pytest.mark.parametrize("case", list(BAD_THEN_VALID))
def test_bad_line_followed_by_a_valid_line_is_corrupt_not_repaired(base: Base, tmp_path: Path, case: str) -> None:
    """A bad line with a validly digested line after it is corruption: refused, nothing quarantined, the file untouched."""
    make, expect = BAD_THEN_VALID[case]
    path = tmp_path / "log.jsonl"
    path.write_bytes(make(base))
    assert_corrupt(path, expect)
    assert torn_files(path) == []


def test_validly_digested_undecodable_tail_is_corrupt(base: Base, tmp_path: Path) -> None:
    """A last line with a valid digest that does not decode (a required field missing) is corruption, not a torn tail."""
    obj = base.parsed(EVENTS + 1)
    del obj["data"]["attempt"]
    path = write(tmp_path, replaced(base.lines, EVENTS + 1, rehash(obj)))
    expect = Expect(EVENTS + 1, "undecodable", message="attempt")
    assert_corrupt(path, expect)


def test_validly_digested_tail_with_an_unknown_field_is_schema_unsupported(base: Base, tmp_path: Path) -> None:
    """A digest-valid last line with a field this asup does not know is schema_unsupported: refused like corruption, never cut."""
    obj = base.parsed(EVENTS + 1)
    obj["data"]["surprise"] = 1
    path = write(tmp_path, replaced(base.lines, EVENTS + 1, rehash(obj)))
    expect = Expect(EVENTS + 1, "schema_unsupported", message="surprise", kind="schema_unsupported")
    assert_corrupt(path, expect)
    assert torn_files(path) == []


def test_an_over_long_line_before_valid_records_is_corruption_not_a_torn_tail(tmp_path: Path) -> None:
    """A line past MAX_LINE in the middle of a log is reported as corruption; opening refuses and cuts nothing."""
    from events.errors import AsupError, ErrorCode
    from events.jsonl_log import JsonlLog
    from events.payloads import Transition
    from events.record import MAX_LINE
    from events.vocabulary import State, Trigger

    path = tmp_path / "log.jsonl"
    event = Transition(
        transfer_id="x", from_state=State.IDLE, trigger=Trigger.START, to_state=State.CAPABILITY_CHECK, attempt=0, committed_cursor=0
    )
    with JsonlLog.open(path) as log:
        for _ in range(10):
            log.append("s", [event])
    lines = path.read_bytes().split(b"\n")
    path.write_bytes(b"\n".join([*lines[:5], b"x" * (2 * MAX_LINE), *lines[5:]]))
    path.with_name(path.name + ".head.json").unlink()
    before = path.read_bytes()
    with pytest.raises(AsupError) as refused:
        JsonlLog.open(path)
    assert refused.value.code is ErrorCode.CORRUPT_RECORD
    assert refused.value.line == 6
    assert path.read_bytes() == before


def test_an_over_long_complete_last_line_is_corruption_without_a_mark(base: Base, tmp_path: Path) -> None:
    """A last line past MAX_LINE that ends in its newline is not an incomplete line: with no high-water
    mark it is corruption, not a torn tail (the scanner cuts long lines, so it must look for the newline)."""
    from events.record import MAX_LINE

    path = write(tmp_path, [*base.lines, b"x" * (MAX_LINE + 10) + b"\n"])
    problem, records = scan_of(path)
    assert problem is not None and (problem.kind, problem.reason, problem.line) == ("corrupt", "too_long", EVENTS + 2)
    assert len(records) == EVENTS + 1
