"""The head index (LOG.head.json): trusted only when it matches the log's tail, then only
the bytes after it are scanned; anything stale or unreadable is rebuilt by a full scan."""

from __future__ import annotations

import shutil
from pathlib import Path

import msgspec
import pytest

from events.chain import ChainState
from events.errors import AsupError, ErrorCode
from events.head_index import HeadIndex, index_path
from events.jsonl_log import JsonlLog
from events.record import Record
from events.scan import Scanner
from events.store import Pending
from events.testing import tags, transition


def _scan(path: Path) -> tuple[list[Record], Scanner]:
    scanner = Scanner(path, ChainState())
    return list(scanner), scanner


def _verified(path: Path) -> list[Record]:
    records, scanner = _scan(path)
    assert scanner.problem is None, scanner.problem
    return records


def _index(path: Path) -> HeadIndex:
    return msgspec.json.decode(index_path(path).read_bytes(), type=HeadIndex)


def _line_offsets(path: Path) -> list[int]:
    """Byte offset of each line (index 0 is seq 1), plus the file size at the end."""
    offsets = [0]
    for line in path.read_bytes().splitlines(keepends=True):
        offsets.append(offsets[-1] + len(line))
    return offsets


def _damage_line(path: Path, seq: int) -> None:
    """Change one byte inside the payload of record `seq` (its digest no longer matches)."""
    data = bytearray(path.read_bytes())
    start = _line_offsets(path)[seq - 1]
    at = data.index(b'"transfer_id":"', start) + len(b'"transfer_id":"')
    data[at] = ord("Z") if data[at] != ord("Z") else ord("Y")
    path.write_bytes(bytes(data))


def _build(path: Path, streams: dict[str, int], log_id: str | None = None) -> None:
    with JsonlLog.open(path, log_id=log_id) as log:
        for stream, count in streams.items():
            log.append(stream, [transition(f"{stream}-{i}", i) for i in range(count)])


def _expect_state_of_file(log: JsonlLog, path: Path, streams: list[str]) -> None:
    """The opened log's heads are those of a fresh full scan of its file."""
    records = _verified(path)
    assert log.last_position() == (records[-1].seq, records[-1].h)
    for stream in streams:
        assert log.stream_version(stream) == sum(1 for r in records if r.stream == stream)


def test_close_writes_an_index_matching_the_file(tmp_path: Path) -> None:
    """Closing a log leaves an index at the file's size naming its last seq, digest and stream heads."""
    path = tmp_path / "log.jsonl"
    _build(path, {"a": 3, "b": 2})
    index = _index(path)
    records = _verified(path)
    assert index.size == path.stat().st_size
    assert (index.last_seq, index.last_h) == (records[-1].seq, records[-1].h)
    assert index.streams["a"] == (3, next(r.h for r in reversed(records) if r.stream == "a"))
    assert index.log_id == "log"


def test_valid_index_means_no_rescan(tmp_path: Path) -> None:
    """With a valid index, damage before index.size goes unseen by open (no rescan) while a Scanner from 0 reports it."""
    path = tmp_path / "log.jsonl"
    _build(path, {"a": 8})
    _damage_line(path, 3)
    _, scanner = _scan(path)
    assert scanner.problem is not None
    assert (scanner.problem.kind, scanner.problem.line) == ("corrupt", 3)
    with JsonlLog.open(path) as log:
        assert log.last_position() == (9, _index(path).last_h)
        assert [p.seq for p in log.append("a", [transition("after")])] == [10]


def test_tail_after_index_is_scanned(tmp_path: Path) -> None:
    """Records appended after the index was saved are scanned on open: heads and id windows include them."""
    path = tmp_path / "log.jsonl"
    _build(path, {"a": 4})
    behind = index_path(path).read_bytes()
    retry = [Pending("b", transition("b-0"), expected_version=0), Pending("a", transition("a-4"), expected_version=4)]
    with JsonlLog.open(path) as log:
        original = log.append_batch(retry)
        log.append("b", [transition("b-1")])
    index_path(path).write_bytes(behind)  # as if the writer died before saving the index
    with JsonlLog.open(path) as log:
        _expect_state_of_file(log, path, ["a", "b"])
        assert log.stream_version("b") == 2
        size = path.stat().st_size
        assert log.append_batch(retry) == original  # the windows hold the tail's ids
        assert path.stat().st_size == size
        log.append("b", [transition("b-2")], expected_version=2)
    assert tags(_verified(path))[-3:] == ["a-4", "b-1", "b-2"]


@pytest.mark.parametrize(("damaged", "opens"), [(5, True), (6, False), (7, False)])
def test_scan_starts_exactly_at_index_size(tmp_path: Path, damaged: int, opens: bool) -> None:
    """Damage in the last indexed record is not rescanned; damage in the unindexed tail refuses the open."""
    path = tmp_path / "log.jsonl"
    _build(path, {"a": 4})  # seq 1..5, index at the end of seq 5
    behind = index_path(path).read_bytes()
    with JsonlLog.open(path) as log:
        log.append("a", [transition(f"tail-{i}") for i in range(3)])  # seq 6..8
    index_path(path).write_bytes(behind)
    _damage_line(path, damaged)
    if opens:
        with JsonlLog.open(path) as log:
            assert log.last_position()[0] == 8
        return
    with pytest.raises(AsupError) as info:
        JsonlLog.open(path)
    assert info.value.code is ErrorCode.CORRUPT_RECORD
    assert info.value.line == damaged


def test_index_of_truncated_and_regrown_log_is_rebuilt(tmp_path: Path) -> None:
    """An index describing bytes the log no longer holds (cut back, then appended differently) is rebuilt."""
    path = tmp_path / "log.jsonl"
    _build(path, {"a": 6})
    stale = index_path(path).read_bytes()
    offsets = _line_offsets(path)
    with path.open("r+b") as fh:
        fh.truncate(offsets[3])  # keep the header and a-0, a-1
    with JsonlLog.open(path) as log:
        log.append_batch([Pending("b", transition(f"x{i}")) for i in range(12)])
    assert path.stat().st_size > _index_size(stale)
    index_path(path).write_bytes(stale)
    with JsonlLog.open(path) as log:
        _expect_state_of_file(log, path, ["a", "b"])
        assert log.stream_version("a") == 2
        log.append("a", [transition("a-2")], expected_version=2)
    assert _index(path).size == path.stat().st_size
    assert tags(_verified(path))[-1] == "a-2"


def test_index_of_shorter_log_is_rebuilt(tmp_path: Path) -> None:
    """A log cut below the index's size (say, by a repair) gets its index rebuilt."""
    path = tmp_path / "log.jsonl"
    _build(path, {"a": 6})
    offsets = _line_offsets(path)
    stale = index_path(path).read_bytes()
    with path.open("r+b") as fh:
        fh.truncate(offsets[4])
    index_path(path).write_bytes(stale)
    with JsonlLog.open(path) as log:
        assert log.repaired is None
        _expect_state_of_file(log, path, ["a"])
        assert log.stream_version("a") == 3


def test_index_from_another_log_is_rebuilt(tmp_path: Path) -> None:
    """An index copied from another log is not trusted: the log's own heads and id are rebuilt."""
    mine, other = tmp_path / "mine.jsonl", tmp_path / "other.jsonl"
    _build(mine, {"a": 9, "c": 3}, log_id="mine")
    _build(other, {"a": 2, "b": 4}, log_id="other")
    assert other.stat().st_size < mine.stat().st_size
    shutil.copyfile(index_path(other), index_path(mine))
    with JsonlLog.open(mine) as log:
        _expect_state_of_file(log, mine, ["a", "b", "c"])
        log.append("a", [transition("a-9")], expected_version=9)
    assert _index(mine).log_id == "mine"
    assert tags(_verified(mine))[-1] == "a-9"


def _index_size(raw: bytes) -> int:
    return msgspec.json.decode(raw, type=HeadIndex).size


GARBAGE = {
    "empty": b"",
    "text": b"garbage\n",
    "truncated": b'{"format":1,"log_id":"log","size":',
    "array": b"[1, 2, 3]",
    "wrong_format": None,  # built from the real index below
    "unknown_field": None,
    "wrong_type": None,
    "negative_size": None,
    "size_mid_record": None,
}


def _garbage(kind: str, real: bytes, path: Path) -> bytes:
    fixed = GARBAGE[kind]
    if fixed is not None:
        return fixed
    fields = msgspec.json.decode(real)
    if kind == "wrong_format":
        fields["format"] = 99
    elif kind == "unknown_field":
        fields["extra"] = True
    elif kind == "wrong_type":
        fields["size"] = str(fields["size"])
    elif kind == "negative_size":
        fields["size"] = -200
    else:
        fields["size"] = _line_offsets(path)[3] + 40
    return msgspec.json.encode(fields)


@pytest.mark.parametrize("kind", sorted(GARBAGE))
def test_unreadable_index_is_rebuilt(tmp_path: Path, kind: str) -> None:
    """An index that does not decode or does not fit the log is rebuilt by a full scan, then rewritten on close."""
    path = tmp_path / "log.jsonl"
    _build(path, {"a": 5, "b": 2})
    index_path(path).write_bytes(_garbage(kind, index_path(path).read_bytes(), path))
    with JsonlLog.open(path) as log:
        _expect_state_of_file(log, path, ["a", "b"])
        log.append("b", [transition("b-2")], expected_version=2)
    assert _index(path).size == path.stat().st_size
    assert tags(_verified(path))[-1] == "b-2"


@pytest.mark.parametrize("field", ["last_seq", "stream_version"])
def test_bit_rotted_index_never_corrupts_the_log(tmp_path: Path, field: str) -> None:
    """An index whose numbers were damaged (tail digest intact) must not make the next append write a broken chain."""
    path = tmp_path / "log.jsonl"
    _build(path, {"a": 5})
    fields = msgspec.json.decode(index_path(path).read_bytes())
    if field == "last_seq":
        fields["last_seq"] -= 1
    else:
        fields["streams"]["a"][0] -= 1
    index_path(path).write_bytes(msgspec.json.encode(fields))
    with JsonlLog.open(path) as log:
        position = log.append("a", [transition("a-5")])[0]
    records, scanner = _scan(path)
    assert scanner.problem is None, f"an acknowledged append left the log unreadable: {scanner.problem}"
    assert tags(records)[-1] == "a-5", f"the append was acknowledged at {position} but its event is not in the log"


def _set_index(path: Path, state: str, behind: bytes) -> None:
    """Leave the head index valid, remove it, or put back an older one (`behind`)."""
    if state == "missing":
        index_path(path).unlink()
    elif state == "behind":
        index_path(path).write_bytes(behind)


@pytest.mark.parametrize("index_state", ["valid", "missing", "behind"])
def test_recent_ids_survive_reopen(tmp_path: Path, index_state: str) -> None:
    """After a reopen (index valid, missing or behind), a retried batch returns its original positions and writes nothing."""
    path = tmp_path / "log.jsonl"
    _build(path, {"a": 2})
    behind = index_path(path).read_bytes()
    batch = [
        Pending("a", transition("a-2"), expected_version=2),
        Pending("b", transition("b-0"), id="client-key-1"),
        Pending("a", transition("a-3"), expected_version=3, id="client-key-2"),
    ]
    with JsonlLog.open(path) as log:
        original = log.append_batch(batch)
        log.append("c", [transition("c-0")])
    _set_index(path, index_state, behind)
    size = path.stat().st_size
    with JsonlLog.open(path) as log:
        assert log.append_batch(batch) == original
        assert log.append_batch(batch[1:2]) == original[1:2]
    assert path.stat().st_size == size
    assert tags(_verified(path)) == ["a-0", "a-1", "a-2", "b-0", "a-3", "c-0"]


@pytest.mark.parametrize("index_state", ["valid", "missing", "behind"])
def test_stale_writer_after_reopen_conflicts(tmp_path: Path, index_state: str) -> None:
    """After a reopen, a different event at an already-taken version is a stale writer's: it
    conflicts and writes nothing (its derived id matches, the stored event does not)."""
    path = tmp_path / "log.jsonl"
    _build(path, {"a": 2})
    behind = index_path(path).read_bytes()
    with JsonlLog.open(path) as log:
        winner = log.append("a", [transition("winner")], expected_version=2)
    _set_index(path, index_state, behind)
    size = path.stat().st_size
    with JsonlLog.open(path) as log:
        with pytest.raises(AsupError) as info:
            log.append("a", [transition("loser")], expected_version=2)
        assert info.value.code is ErrorCode.CONFLICT_DETECTED
        assert log.append("a", [transition("winner")], expected_version=2) == winner
    assert path.stat().st_size == size
    assert tags(_verified(path)) == ["a-0", "a-1", "winner"]


def test_retry_checked_against_a_damaged_stored_line_conflicts(tmp_path: Path) -> None:
    """If the stored line a retry is compared with no longer verifies, the retry is not
    taken as a duplicate: the append fails closed (conflict), nothing is written."""
    path = tmp_path / "log.jsonl"
    _build(path, {"a": 3})
    with JsonlLog.open(path) as log:
        log.append("b", [transition("b-0")])
        retry = log.append("a", [transition("a-1", 1)], expected_version=1)
        assert [(p.seq, p.sv) for p in retry] == [(3, 2)], "intact, the same retry is recognised"
        _damage_line(path, 3)  # a-1: behind the index, so the open did not see it
        size = path.stat().st_size
        with pytest.raises(AsupError) as info:
            log.append("a", [transition("a-1", 1)], expected_version=1)
        assert info.value.code is ErrorCode.CONFLICT_DETECTED
    assert path.stat().st_size == size
