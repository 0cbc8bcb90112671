"""I/O faults and durability of the JSONL log, injected at the OS boundary.

`os.fsync`, `os.write` and `os.ftruncate` are wrapped (monkeypatch) to trace calls on the
log's files and to fail once: the log's own parts are never mocked. A failed write or
fsync must fence the writer, cut the file back to where the batch began and acknowledge
nothing; a reopen must find a verifying log without any of the failed batch.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from events.chain import ChainState
from events.errors import AsupError, ErrorCode
from events.jsonl_log import JsonlLog
from events.record import Record
from events.scan import Scanner
from events.store import Pending
from events.testing import tags, transition
from events.vocabulary import Durability


class Trace:
    """Wraps os.fsync, os.write and os.ftruncate; records (call, inode) and fails chosen calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[str, int]] = []
        self.fail_fsync_at: int | None = None  # the n-th traced fsync (1-based) raises EIO
        self.short_write_inode: int | None = None  # the next write to this inode is cut short, then ENOSPC
        self.faults = 0
        real_fsync, real_write, real_ftruncate = os.fsync, os.write, os.ftruncate

        def fsync(fd: int) -> None:
            self.calls.append(("fsync", _inode(fd)))
            if self.fail_fsync_at is not None and self.count("fsync") == self.fail_fsync_at:
                self.faults += 1
                raise OSError(errno.EIO, os.strerror(errno.EIO))
            real_fsync(fd)

        def write(fd: int, data: bytes | bytearray | memoryview) -> int:
            inode = _inode(fd)
            self.calls.append(("write", inode))
            if inode == self.short_write_inode:
                if self.faults == 0:
                    self.faults += 1
                    return real_write(fd, memoryview(data)[: max(1, len(data) // 2)])
                self.short_write_inode = None
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real_write(fd, data)

        def ftruncate(fd: int, length: int) -> None:
            self.calls.append(("ftruncate", _inode(fd)))
            real_ftruncate(fd, length)

        monkeypatch.setattr(os, "fsync", fsync)
        monkeypatch.setattr(os, "write", write)
        monkeypatch.setattr(os, "ftruncate", ftruncate)

    def count(self, call: str, inode: int | None = None) -> int:
        return sum(1 for c, i in self.calls if c == call and (inode is None or i == inode))

    def reset(self) -> None:
        self.calls.clear()


def _inode(fd: int) -> int:
    return os.fstat(fd).st_ino


def _is_dir(inode: int, directory: Path) -> bool:
    st = directory.stat()
    return stat.S_ISDIR(st.st_mode) and st.st_ino == inode


def _verified(path: Path) -> list[Record]:
    scanner = Scanner(path, ChainState())
    records = list(scanner)
    assert scanner.problem is None, scanner.problem
    return records


def _doomed_batch() -> list[Pending]:
    return [Pending("a", transition("doomed-1")), Pending("b", transition("doomed-2")), Pending("a", transition("doomed-3"))]


def _assert_failed_append_left_no_trace(path: Path, log: JsonlLog, trace: Trace, size_before: int, last_before: tuple[int, str]) -> None:
    """The file is back at its pre-append size, the writer is fenced (no more writes or fsyncs), a reopen verifies without the batch."""
    assert path.stat().st_size == size_before
    calls = len(trace.calls)
    with pytest.raises(AsupError) as again:
        log.append("a", [transition("after-fence")])
    assert again.value.code is ErrorCode.IO_FAILED
    log.close()
    assert trace.calls[calls:] == [], "the fenced writer wrote or fsynced again"
    assert path.stat().st_size == size_before
    with JsonlLog.open(path) as reopened:
        assert reopened.repaired is None
        assert reopened.last_position() == last_before
        reopened.append("a", [transition("after-reopen")])
    found = tags(_verified(path))
    assert not [tag for tag in found if tag.startswith("doomed") or tag == "after-fence"]
    assert found[-1] == "after-reopen"


@pytest.mark.parametrize(("durability", "failing_fsync"), [(Durability.BATCH, 1), (Durability.ALWAYS, 1), (Durability.ALWAYS, 2)])
def test_fsync_eio_fences_the_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durability: Durability, failing_fsync: int) -> None:
    """fsync raising EIO during an append: io_failed, no fsync retry, file cut back, writer fenced, reopen clean."""
    path = tmp_path / "log.jsonl"
    log = JsonlLog.open(path, durability=durability)
    log.append("a", [transition("kept")])
    size_before, last_before = path.stat().st_size, log.last_position()
    trace = Trace(monkeypatch)
    trace.fail_fsync_at = failing_fsync
    with pytest.raises(AsupError) as info:
        log.append_batch(_doomed_batch())
    assert info.value.code is ErrorCode.IO_FAILED
    assert trace.faults == 1
    assert trace.count("fsync") == failing_fsync, "the failed fsync was retried"
    _assert_failed_append_left_no_trace(path, log, trace, size_before, last_before)


def _inode_of(path: Path) -> int:
    return path.stat().st_ino


@pytest.mark.parametrize("durability", list(Durability))
def test_short_write_then_enospc_fences_the_writer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durability: Durability) -> None:
    """A write cut short then failing with ENOSPC: io_failed, the half-written bytes cut off, writer fenced, reopen clean."""
    path = tmp_path / "log.jsonl"
    log = JsonlLog.open(path, durability=durability)
    log.append("a", [transition("kept")])
    size_before, last_before = path.stat().st_size, log.last_position()
    trace = Trace(monkeypatch)
    trace.short_write_inode = _inode_of(path)
    with pytest.raises(AsupError) as info:
        log.append_batch(_doomed_batch())
    assert info.value.code is ErrorCode.IO_FAILED
    assert trace.faults == 1 and trace.short_write_inode is None, "the fault did not fire as planned"
    _assert_failed_append_left_no_trace(path, log, trace, size_before, last_before)


EXPECTED_FSYNCS: dict[Durability, Callable[[int, int], int]] = {
    Durability.BATCH: lambda batches, records: batches,
    Durability.ALWAYS: lambda batches, records: records,
    Durability.NONE: lambda batches, records: 0,
}


@pytest.mark.parametrize("durability", list(Durability))
def test_fsyncs_per_durability(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, durability: Durability) -> None:
    """batch: one fsync per append_batch call; always: one per record; none: none."""
    path = tmp_path / "log.jsonl"
    sizes = [1, 5, 2, 17, 3]
    with JsonlLog.open(path, durability=durability) as log:
        trace = Trace(monkeypatch)
        for n, size in enumerate(sizes):
            log.append_batch([Pending(f"s{(n + k) % 3}", transition(f"{n}-{k}")) for k in range(size)])
        assert trace.count("fsync", _inode_of(path)) == EXPECTED_FSYNCS[durability](len(sizes), sum(sizes))
        assert trace.count("fsync") == trace.count("fsync", _inode_of(path))  # nothing else synced
    assert len(_verified(path)) == 1 + sum(sizes)


def test_new_log_fsyncs_its_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Creating a log fsyncs its header and then its directory before open returns."""
    trace = Trace(monkeypatch)
    path = tmp_path / "new.jsonl"
    with JsonlLog.open(path):
        synced = [inode for call, inode in trace.calls if call == "fsync"]
        assert synced[-1] != _inode_of(path) and _is_dir(synced[-1], tmp_path), "the directory was not fsynced last"
        assert _inode_of(path) in synced[:-1], "the header was not fsynced before the directory"


def test_repair_syncs_quarantine_before_cutting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A repair fsyncs the quarantine file and the directory before it truncates the log, then fsyncs the log."""
    path = tmp_path / "log.jsonl"
    with JsonlLog.open(path) as log:
        log.append("a", [transition("a-0")])
    with path.open("ab") as fh:
        fh.write(b'{"type":"transition","v":1,"seq":3,"str')  # a torn final line
    trace = Trace(monkeypatch)
    with JsonlLog.open(path) as log:
        assert log.repaired is not None
        quarantine = _inode_of(tmp_path / log.repaired.quarantine)
    log_inode = _inode_of(path)
    steps = trace.calls
    cut = steps.index(("ftruncate", log_inode))
    assert steps.index(("fsync", quarantine)) < cut
    assert any(call == "fsync" and _is_dir(inode, tmp_path) for call, inode in steps[:cut])
    assert ("fsync", log_inode) in steps[cut:]
    assert tags(_verified(path)) == ["a-0"]


@pytest.mark.parametrize(("step", "failing_fsync"), [("header", 1), ("directory", 2), ("repair_event", 4)])
def test_failed_open_releases_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str, failing_fsync: int) -> None:
    """An open whose own write fails raises io_failed and releases the writer lock, so a retry can open the log."""
    path = tmp_path / "log.jsonl"
    if step == "repair_event":  # fsyncs: quarantine file, directory, cut log, then the log_repaired append
        with JsonlLog.open(path) as log:
            log.append("a", [transition("a-0")])
        with path.open("ab") as fh:
            fh.write(b'{"type":"transition","v":1,"seq":3,"str')
    trace = Trace(monkeypatch)
    trace.fail_fsync_at = failing_fsync
    with pytest.raises(AsupError) as info:
        JsonlLog.open(path)
    assert info.value.code is ErrorCode.IO_FAILED
    assert trace.faults == 1
    with JsonlLog.open(path) as log:  # must not be log_locked by the failed open's leaked descriptor
        log.append("a", [transition("a-1")])
    assert tags(_verified(path))[-1] == "a-1"


def test_retry_acknowledged_from_window_is_durable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A retry answered from the id window acks records a dead writer may never have fsynced: the log must be fsynced first."""
    path = tmp_path / "log.jsonl"
    batch = [Pending("a", transition("a-0"), expected_version=0), Pending("a", transition("a-1"), expected_version=1)]
    with JsonlLog.open(path, durability=Durability.NONE) as log:  # its bytes reach the page cache only, like a
        original = log.append_batch(batch)  # batch writer killed between its write and its fsync
    trace = Trace(monkeypatch)
    with JsonlLog.open(path) as log:  # durability batch
        assert log.append_batch(batch) == original
        assert trace.count("fsync", _inode_of(path)) >= 1, "acknowledged records that were never fsynced"
