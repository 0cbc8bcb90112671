"""`write_atomic`: the one writer of asup's small files, and the OS errors of the log's
side files (head index, lock, close) as one-line `AsupError`s naming the file.

The failures are real: a parent that is a regular file, a target that is a directory
(chmod does not stop root, which the tests may run as). Only an fsync failure, which no
real file can be made to produce, is injected at `os.fsync`.
"""

from __future__ import annotations

import errno
import multiprocessing
import os
from pathlib import Path

import pytest

from events import writer_index as head_index
from events.atomic import make_dirs, temp_name, write_atomic
from events.chain import ChainState
from events.errors import AsupError, ErrorCode
from events.jsonl_log import JsonlLog
from events.testing import transition


def test_write_atomic_replaces_the_bytes_and_leaves_no_temp_file(tmp_path: Path) -> None:
    """The target holds exactly the new bytes and the directory holds nothing else."""
    target = tmp_path / "state.json"
    target.write_bytes(b"old")
    write_atomic(target, b'{"new": true}\n')
    assert target.read_bytes() == b'{"new": true}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_write_atomic_fsyncs_the_file_then_the_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """sync=True fsyncs the new file before the directory; sync=False fsyncs nothing."""
    synced: list[int] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append(os.fstat(fd).st_ino)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    target = tmp_path / "synced.json"
    write_atomic(target, b"x")
    assert synced == [target.stat().st_ino, tmp_path.stat().st_ino]
    synced.clear()
    write_atomic(tmp_path / "cache.json", b"y", sync=False)
    assert synced == []


def test_temp_names_are_unique_per_process_and_call(tmp_path: Path) -> None:
    """Two temp names for one target differ, carry the pid and end in .tmp (inventories skip them)."""
    first, second = temp_name(tmp_path / "a.json"), temp_name(tmp_path / "a.json")
    assert first != second
    assert all(name.startswith(f"a.json.{os.getpid()}-") and name.endswith(".tmp") for name in (first, second))


def _hammer(path: str, payload: bytes, rounds: int) -> None:
    for _ in range(rounds):
        write_atomic(Path(path), payload, sync=False)


def test_two_processes_replacing_one_file_never_mix_bytes(tmp_path: Path) -> None:
    """Two processes replacing the same file in a loop both succeed; the file is one whole payload, no temp is left."""
    target = tmp_path / "raced.json"
    payloads = [b"A" * 50_000, b"B" * 70_000]
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_hammer, args=(str(target), p, 200)) for p in payloads]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    assert [w.exitcode for w in workers] == [0, 0]
    assert target.read_bytes() in payloads
    assert [p.name for p in tmp_path.iterdir()] == ["raced.json"]


def test_parent_that_is_a_file_is_a_usage_error_naming_the_path(tmp_path: Path) -> None:
    """A target under a regular file raises usage (exit 2) with one line naming the target."""
    (tmp_path / "plain").write_bytes(b"")
    target = tmp_path / "plain" / "state.json"
    with pytest.raises(AsupError) as info:
        write_atomic(target, b"x")
    assert info.value.code is ErrorCode.USAGE and info.value.exit_code == 2
    assert info.value.one_line().startswith(f"{target}: usage: cannot write:")


def test_target_that_is_a_directory_fails_and_removes_its_temp_file(tmp_path: Path) -> None:
    """Replacing a directory fails as usage naming it, and the temp file written first is gone."""
    target = tmp_path / "occupied"
    target.mkdir()
    with pytest.raises(AsupError) as info:
        write_atomic(target, b"x")
    assert info.value.code is ErrorCode.USAGE and info.value.file == str(target)
    assert [p.name for p in tmp_path.iterdir()] == ["occupied"]


def test_make_dirs_through_a_file_names_the_directory(tmp_path: Path) -> None:
    """mkdir -p through a regular file raises usage naming the directory it could not create."""
    (tmp_path / "plain").write_bytes(b"")
    with pytest.raises(AsupError) as info:
        make_dirs(tmp_path / "plain" / "sub")
    assert info.value.code is ErrorCode.USAGE and info.value.file == str(tmp_path / "plain" / "sub")


def test_head_index_save_failure_is_an_asup_error(tmp_path: Path) -> None:
    """A head index that cannot be replaced raises AsupError naming the index file, not OSError."""
    log = tmp_path / "log.jsonl"
    with JsonlLog.open(log) as writer:
        writer.append("a", [transition("a-0")])
    head_index.index_path(log).unlink()
    head_index.index_path(log).mkdir()
    chain = ChainState()
    chain.log_id = "log"
    with pytest.raises(AsupError) as info:
        head_index.save(log, chain, log.stat().st_size)
    assert info.value.file == str(head_index.index_path(log))


def test_close_with_an_unwritable_index_still_closes_and_the_log_reopens(tmp_path: Path) -> None:
    """The index is a cache: failing to save it at close neither raises nor holds the lock; the log reopens whole."""
    log = tmp_path / "log.jsonl"
    head_index.index_path(log).mkdir(parents=True)
    with JsonlLog.open(log) as writer:
        writer.append("a", [transition("a-0")])
    with JsonlLog.open(log) as writer:  # not log_locked, and found by a full scan
        assert writer.last_position()[0] == 2
        writer.append("a", [transition("a-1")])
    assert head_index.index_path(log).is_dir()


def test_close_fsync_failure_is_io_failed_and_releases_the_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """fsync failing at close raises io_failed naming the log, and the lock is released for the next writer."""
    log = tmp_path / "log.jsonl"
    writer = JsonlLog.open(log)
    writer.append("a", [transition("a-0")])
    real_fsync = os.fsync

    def failing(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", failing)
    with pytest.raises(AsupError) as info:
        writer.close()
    assert info.value.code is ErrorCode.IO_FAILED and info.value.file == str(log)
    monkeypatch.setattr(os, "fsync", real_fsync)
    with JsonlLog.open(log) as again:
        again.append("a", [transition("a-1")])


def test_log_in_a_missing_directory_is_a_usage_error(tmp_path: Path) -> None:
    """Opening a log whose directory does not exist raises usage naming the log, not FileNotFoundError."""
    with pytest.raises(AsupError) as info:
        JsonlLog.open(tmp_path / "missing" / "log.jsonl")
    assert info.value.code is ErrorCode.USAGE
    assert info.value.file == str(tmp_path / "missing" / "log.jsonl")


def test_log_that_is_a_directory_is_refused_with_the_lock_released(tmp_path: Path) -> None:
    """A log path that is a directory raises an AsupError naming it; the lock taken first is released."""
    log = tmp_path / "log.jsonl"
    log.mkdir()
    with pytest.raises(AsupError) as info:
        JsonlLog.open(log)
    assert info.value.file == str(log)
    log.rmdir()
    with JsonlLog.open(log) as writer:
        writer.append("a", [transition("a-0")])
