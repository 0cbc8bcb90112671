"""I/O faults and durability of the JSONL log, injected through its file-system seam.

The log is opened with a `FaultyFS` (`events.testing.faulty_fs`) that traces every call it
makes (with the inode each descriptor names) and fails the chosen ones: the log's own parts
are never mocked. A failed write or fsync must fence the writer, cut the file back to where
the batch began and acknowledge nothing; a reopen must find a verifying log without any of
the failed batch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from events.chain import ChainState
from events.errors import AsupError, ErrorCode
from events.jsonl_log import JsonlLog
from events.record import Record
from events.scan import Scanner
from events.store import Pending
from events.testing import FaultyFS, tags, transition
from events.testing.faulty_fs import Call
from events.vocabulary import Durability

WRITES = ("write", "fsync", "ftruncate")


def _since(fs: FaultyFS, start: int, ops: tuple[str, ...] = WRITES) -> list[Call]:
    """The traced calls of `ops` made after the first `start` calls."""
    return [c for c in fs.trace[start:] if c.op in ops]


def _inode_of(path: Path) -> int:
    return path.stat().st_ino


def _verified(path: Path) -> list[Record]:
    scanner = Scanner(path, ChainState())
    records = list(scanner)
    assert scanner.problem is None, scanner.problem
    return records


def _doomed_batch() -> list[Pending]:
    return [Pending("a", transition("doomed-1")), Pending("b", transition("doomed-2")), Pending("a", transition("doomed-3"))]


def _assert_failed_append_left_no_trace(path: Path, log: JsonlLog, fs: FaultyFS, size_before: int, last_before: tuple[int, str]) -> None:
    """The file is back at its pre-append size, the writer is fenced (no more writes or fsyncs), a reopen verifies without the batch."""
    assert path.stat().st_size == size_before
    calls = len(fs.trace)
    with pytest.raises(AsupError) as again:
        log.append("a", [transition("after-fence")])
    assert again.value.code is ErrorCode.IO_FAILED
    log.close()
    assert _since(fs, calls) == [], "the fenced writer wrote or fsynced again"
    assert path.stat().st_size == size_before
    with JsonlLog.open(path) as reopened:
        assert reopened.repaired is None
        assert reopened.last_position() == last_before
        reopened.append("a", [transition("after-reopen")])
    found = tags(_verified(path))
    assert not [tag for tag in found if tag.startswith("doomed") or tag == "after-fence"]
    assert found[-1] == "after-reopen"


@pytest.mark.parametrize(("durability", "failing_fsync"), [(Durability.BATCH, 1), (Durability.ALWAYS, 1), (Durability.ALWAYS, 2)])
def test_fsync_eio_fences_the_writer(tmp_path: Path, durability: Durability, failing_fsync: int) -> None:
    """fsync raising EIO during an append: io_failed, no fsync retry, file cut back, writer fenced, reopen clean."""
    path = tmp_path / "log.jsonl"
    fs = FaultyFS()
    log = JsonlLog.open(path, durability=durability, fs=fs)
    log.append("a", [transition("kept")])
    size_before, last_before = path.stat().st_size, log.last_position()
    calls = len(fs.trace)
    fs.fail_at(failing_fsync, ops={"fsync"})
    with pytest.raises(AsupError) as info:
        log.append_batch(_doomed_batch())
    assert info.value.code is ErrorCode.IO_FAILED
    assert fs.faults == 1
    assert len(_since(fs, calls, ("fsync",))) == failing_fsync, "the failed fsync was retried"
    _assert_failed_append_left_no_trace(path, log, fs, size_before, last_before)


@pytest.mark.parametrize("durability", list(Durability))
def test_short_write_then_enospc_fences_the_writer(tmp_path: Path, durability: Durability) -> None:
    """A write cut short then failing with ENOSPC: io_failed, the half-written bytes cut off, writer fenced, reopen clean."""
    path = tmp_path / "log.jsonl"
    fs = FaultyFS()
    log = JsonlLog.open(path, durability=durability, fs=fs)
    log.append("a", [transition("kept")])
    size_before, last_before = path.stat().st_size, log.last_position()
    fs.short_write_at(1, paths=path.name)  # the next write to the log itself
    with pytest.raises(AsupError) as info:
        log.append_batch(_doomed_batch())
    assert info.value.code is ErrorCode.IO_FAILED
    assert fs.faults == 2, "the fault did not fire as planned (a short write, then ENOSPC)"
    _assert_failed_append_left_no_trace(path, log, fs, size_before, last_before)


EXPECTED_FSYNCS: dict[Durability, Callable[[int, int], int]] = {
    Durability.BATCH: lambda batches, records: batches,
    Durability.ALWAYS: lambda batches, records: records,
    Durability.NONE: lambda batches, records: 0,
}


@pytest.mark.parametrize("durability", list(Durability))
def test_fsyncs_per_durability(tmp_path: Path, durability: Durability) -> None:
    """batch: one fsync per append_batch call; always: one per record; none: none."""
    path = tmp_path / "log.jsonl"
    sizes = [1, 5, 2, 17, 3]
    fs = FaultyFS()
    with JsonlLog.open(path, durability=durability, fs=fs) as log:
        calls = len(fs.trace)
        for n, size in enumerate(sizes):
            log.append_batch([Pending(f"s{(n + k) % 3}", transition(f"{n}-{k}")) for k in range(size)])
        synced = [c.ino for c in _since(fs, calls, ("fsync",))]
        assert synced.count(_inode_of(path)) == EXPECTED_FSYNCS[durability](len(sizes), sum(sizes))
        assert len(synced) == synced.count(_inode_of(path))  # nothing else synced
    assert len(_verified(path)) == 1 + sum(sizes)


def test_new_log_fsyncs_its_directory(tmp_path: Path) -> None:
    """Creating a log fsyncs its header and then its directory before open returns."""
    fs = FaultyFS()
    path = tmp_path / "new.jsonl"
    with JsonlLog.open(path, fs=fs):
        synced = [c.ino for c in fs.calls("fsync")]
        assert synced[-1] != _inode_of(path) and synced[-1] == _inode_of(tmp_path), "the directory was not fsynced last"
        assert _inode_of(path) in synced[:-1], "the header was not fsynced before the directory"


def test_repair_syncs_quarantine_before_cutting(tmp_path: Path) -> None:
    """A repair fsyncs the quarantine file and the directory before it truncates the log, then fsyncs the log."""
    path = tmp_path / "log.jsonl"
    with JsonlLog.open(path) as log:
        log.append("a", [transition("a-0")])
    with path.open("ab") as fh:
        fh.write(b'{"type":"transition","v":1,"seq":3,"str')  # a torn final line
    fs = FaultyFS()
    with JsonlLog.open(path, fs=fs) as log:
        assert log.repaired is not None
        quarantine = _inode_of(tmp_path / log.repaired.quarantine)
    log_inode = _inode_of(path)
    steps = [(c.op, c.ino) for c in _since(fs, 0)]
    cut = steps.index(("ftruncate", log_inode))
    assert steps.index(("fsync", quarantine)) < cut
    assert ("fsync", _inode_of(tmp_path)) in steps[:cut]
    assert ("fsync", log_inode) in steps[cut:]
    assert tags(_verified(path)) == ["a-0"]


@pytest.mark.parametrize(("step", "failing_fsync"), [("header", 1), ("directory", 2), ("repair_event", 4)])
def test_failed_open_releases_the_lock(tmp_path: Path, step: str, failing_fsync: int) -> None:
    """An open whose own write fails raises io_failed and releases the writer lock, so a retry can open the log."""
    path = tmp_path / "log.jsonl"
    if step == "repair_event":  # fsyncs: quarantine file, directory, cut log, then the log_repaired append
        with JsonlLog.open(path) as log:
            log.append("a", [transition("a-0")])
        with path.open("ab") as fh:
            fh.write(b'{"type":"transition","v":1,"seq":3,"str')
    fs = FaultyFS()
    fs.fail_at(failing_fsync, ops={"fsync"})
    with pytest.raises(AsupError) as info:
        JsonlLog.open(path, fs=fs)
    assert info.value.code is ErrorCode.IO_FAILED
    assert fs.faults == 1
    with JsonlLog.open(path, lock_timeout=0.5) as log:  # must not be log_locked by the failed open's leaked descriptor
        log.append("a", [transition("a-1")])
    assert tags(_verified(path))[-1] == "a-1"


def test_retry_acknowledged_from_window_is_durable(tmp_path: Path) -> None:
    """A retry answered from the id window acks records a dead writer may never have fsynced: the log must be fsynced first."""
    path = tmp_path / "log.jsonl"
    batch = [Pending("a", transition("a-0"), expected_version=0), Pending("a", transition("a-1"), expected_version=1)]
    with JsonlLog.open(path, durability=Durability.NONE) as log:  # its bytes reach the page cache only, like a
        original = log.append_batch(batch)  # batch writer killed between its write and its fsync
    fs = FaultyFS()
    with JsonlLog.open(path, fs=fs) as log:  # durability batch
        assert log.append_batch(batch) == original
        assert [c.ino for c in fs.calls("fsync")].count(_inode_of(path)) >= 1, "acknowledged records that were never fsynced"
