"""`events.testing.faulty_fs.FaultyFS`, the fault harness, tested through its own calls:
counting and the trace, failing at call N (once and for good), short writes, and power cuts
that leave on disk only what the kernel promised was durable."""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

import pytest

from events.atomic import write_all, write_atomic
from events.errors import AsupError
from events.fs import OS
from events.testing import FaultyFS, PowerCut
from events.testing.faulty_fs import CUT_MODES, Call, CutMode

APPEND = os.O_WRONLY | os.O_APPEND | os.O_CREAT
DIRECTORY = os.O_RDONLY | os.O_DIRECTORY


def _append(fs: FaultyFS, path: Path, data: bytes, *, sync: bool = True) -> None:
    fd = fs.open(path, APPEND)
    try:
        write_all(fd, memoryview(data), fs)
        if sync:
            fs.fsync(fd)
    finally:
        fs.close(fd)


def _fsync_dir(fs: FaultyFS, directory: Path) -> None:
    fd = fs.open(directory, DIRECTORY)
    try:
        fs.fsync(fd)
    finally:
        fs.close(fd)


def _replace(fs: FaultyFS, path: Path, data: bytes, *, sync: bool) -> None:
    """write_atomic's sequence: temp file, (fsync), rename over, (directory fsync)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = fs.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        write_all(fd, memoryview(data), fs)
        if sync:
            fs.fsync(fd)
    finally:
        fs.close(fd)
    fs.replace(tmp, path)
    if sync:
        _fsync_dir(fs, path.parent)


# --- counting and the trace -------------------------------------------------------------


def test_every_call_is_counted_and_traced_with_its_path_and_arguments(tmp_path: Path) -> None:
    fs = FaultyFS()
    _append(fs, tmp_path / "a.log", b"hello\n")
    assert [(c.n, c.op, c.name) for c in fs.trace] == [(n, op, "a.log") for n, op in enumerate(("open", "write", "fsync", "close"), 1)]
    assert fs.count == 4
    assert fs.trace[0].detail == "O_WRONLY|O_APPEND|O_CREAT"
    assert fs.trace[1].detail == "6 bytes"
    assert fs.trace[0].path == str(tmp_path / "a.log")
    assert (tmp_path / "a.log").read_bytes() == b"hello\n"


def test_only_the_chosen_ops_and_paths_are_counted_but_all_are_traced(tmp_path: Path) -> None:
    fs = FaultyFS(ops={"write", "fsync"}, paths=".log")
    _append(fs, tmp_path / "a.log", b"x")
    _append(fs, tmp_path / "b.json", b"y")
    assert [(c.n, c.op, c.name) for c in fs.trace if c.n] == [(1, "write", "a.log"), (2, "fsync", "a.log")]
    assert len(fs.trace) == 8
    assert fs.counted("write") == 1 and fs.calls("fsync", "b.json")[0].n == 0
    predicate = FaultyFS(paths=lambda path: path.name.startswith("b"))
    _append(predicate, tmp_path / "a.log", b"x")
    _append(predicate, tmp_path / "b.json", b"y")
    assert {c.name for c in predicate.trace if c.n} == {"b.json"}


def test_an_unknown_op_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown ops"):
        FaultyFS(ops={"rename"})
    with pytest.raises(ValueError, match="unknown ops"):
        FaultyFS().fail_at(1, ops={"mkdirs"})


def test_a_path_relative_to_a_directory_descriptor_is_traced_as_its_full_path(tmp_path: Path) -> None:
    fs = FaultyFS()
    dir_fd = fs.open(tmp_path, DIRECTORY)
    fd = fs.open("f.tmp", os.O_WRONLY | os.O_CREAT | os.O_EXCL, dir_fd=dir_fd)
    fs.write(fd, b"data")
    fs.close(fd)
    fs.link("f.tmp", "f", src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    fs.unlink("f.tmp", dir_fd=dir_fd)
    fs.fsync(dir_fd)
    fs.close(dir_fd)
    assert [(c.op, c.path) for c in fs.trace[1:]] == [
        ("open", str(tmp_path / "f.tmp")),
        ("write", str(tmp_path / "f.tmp")),
        ("close", str(tmp_path / "f.tmp")),
        ("link", str(tmp_path / "f")),
        ("unlink", str(tmp_path / "f.tmp")),
        ("fsync", str(tmp_path)),
        ("close", str(tmp_path)),
    ]
    assert fs.calls("link")[0].detail == "f.tmp -> f"
    assert fs.calls("fsync")[0].detail == "directory"
    assert (tmp_path / "f").read_bytes() == b"data" and not (tmp_path / "f.tmp").exists()


# --- failing at call N --------------------------------------------------------------------


def test_fail_at_n_fails_that_call_once_and_does_not_do_it(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    fs = FaultyFS()
    fd = fs.open(path, APPEND)
    fs.fail_at(2, errno.ENOSPC)  # counted from now: the 1st write, then the 2nd
    fs.write(fd, b"one\n")
    with pytest.raises(OSError) as info:
        fs.write(fd, b"two\n")
    assert info.value.errno == errno.ENOSPC
    fs.write(fd, b"three\n")
    fs.close(fd)
    assert path.read_bytes() == b"one\nthree\n"
    assert fs.faults == 1


def test_a_persistent_fault_fails_every_later_call_of_its_ops(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    fs = FaultyFS()
    fd = fs.open(path, APPEND)
    fs.fail_at(2, persistent=True, ops={"fsync"})
    fs.write(fd, b"x")
    fs.fsync(fd)
    for _ in range(3):
        with pytest.raises(OSError) as info:
            fs.fsync(fd)
        assert info.value.errno == errno.EIO
    fs.write(fd, b"y")  # writes are not of the fault's ops
    fs.clear()
    fs.fsync(fd)
    fs.close(fd)
    assert path.read_bytes() == b"xy" and fs.faults == 3


def test_a_fault_on_a_path_filter_counts_only_calls_on_those_paths(tmp_path: Path) -> None:
    fs = FaultyFS()
    fs.fail_at(1, ops={"open"}, paths=".json")
    _append(fs, tmp_path / "a.log", b"x")
    with pytest.raises(OSError):
        _append(fs, tmp_path / "b.json", b"y")
    assert not (tmp_path / "b.json").exists()


def test_a_failed_close_still_releases_the_descriptor(tmp_path: Path) -> None:
    fs = FaultyFS()
    fd = fs.open(tmp_path / "a.log", APPEND)
    fs.fail_at(1, ops={"close"})
    with pytest.raises(OSError):
        fs.close(fd)
    with pytest.raises(OSError) as info:
        os.fstat(fd)
    assert info.value.errno == errno.EBADF


def test_n_counts_from_one(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="from 1"):
        FaultyFS().fail_at(0)


# --- short writes ----------------------------------------------------------------------------


def test_a_short_write_takes_half_then_the_next_write_raises_enospc(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    fs = FaultyFS()
    fd = fs.open(path, APPEND)
    fs.short_write_at(1)
    assert fs.write(fd, b"0123456789") == 5
    with pytest.raises(OSError) as info:
        fs.write(fd, b"56789")
    assert info.value.errno == errno.ENOSPC
    assert fs.write(fd, b"!") == 1
    fs.close(fd)
    assert path.read_bytes() == b"01234!"


def test_short_writes_alone_are_completed_by_write_all(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    fs = FaultyFS()
    fd = fs.open(path, APPEND)
    for n in (1, 2, 3):  # each counts writes from its arming: the 1st, 2nd and 3rd write
        fs.short_write_at(n, keep=2, then=None)
    write_all(fd, memoryview(b"abcdefghij"), fs)
    fs.close(fd)
    assert path.read_bytes() == b"abcdefghij"
    assert [c.detail for c in fs.calls("write")] == ["10 bytes", "8 bytes", "6 bytes", "4 bytes"]


def test_a_short_write_of_one_byte_still_writes_it(tmp_path: Path) -> None:
    fs = FaultyFS()
    fd = fs.open(tmp_path / "a.log", APPEND)
    fs.short_write_at(1, then=None)
    assert fs.write(fd, b"x") == 1  # never 0: a 0-byte write would spin write_all forever
    fs.close(fd)


# --- power cuts ------------------------------------------------------------------------------


def test_drop_keeps_only_what_was_fsynced(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"before\n")  # there before the harness: durable as found
    fs = FaultyFS()
    _append(fs, path, b"synced\n")
    _append(fs, path, b"lost\n", sync=False)
    assert fs.power_cut("drop") == ["a.log: 19 bytes -> 14 (drop)"]
    assert path.read_bytes() == b"before\nsynced\n"


@pytest.mark.parametrize("mode", ["zero", "garbage"])
def test_zero_and_garbage_fill_the_unsynced_range_at_its_full_length(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "a.log"
    path.touch()  # there before the harness: its name is durable
    fs = FaultyFS(seed=7)
    _append(fs, path, b"synced\n")
    _append(fs, path, b"x" * 64, sync=False)
    fs.power_cut(mode)  # type: ignore[arg-type]
    data = path.read_bytes()
    assert data[:7] == b"synced\n" and len(data) == 7 + 64
    tail = data[7:]
    assert tail != b"x" * 64
    assert (tail == bytes(64)) is (mode == "zero")


def test_garbage_is_the_same_for_the_same_seed(tmp_path: Path) -> None:
    tails = []
    for run in ("one", "two", "three"):
        path = tmp_path / f"{run}.log"
        path.touch()
        fs = FaultyFS(seed=3 if run != "three" else 4)
        _append(fs, path, b"s")
        _append(fs, path, b"x" * 32, sync=False)
        fs.power_cut("garbage")
        tails.append(path.read_bytes())
    assert tails[0] == tails[1] != tails[2]


def test_torn_keeps_a_prefix_of_what_was_appended(tmp_path: Path) -> None:
    kept = set()
    for seed in range(20):
        path = tmp_path / f"{seed}.log"
        path.touch()
        fs = FaultyFS(seed=seed)
        _append(fs, path, b"synced\n")
        _append(fs, path, b"0123456789", sync=False)
        fs.power_cut("torn")
        data = path.read_bytes()
        assert (b"synced\n0123456789").startswith(data) and len(data) >= 7
        kept.add(len(data))
    assert len(kept) > 3  # the cut lands at different points for different seeds


def _rewrite_in_place(fs: FaultyFS, path: Path, data: bytes) -> None:
    fd = fs.open(path, os.O_RDWR)
    try:
        assert fs.pwrite(fd, data, 0) == len(data)
    finally:
        fs.close(fd)


@pytest.mark.parametrize("mode", CUT_MODES)
def test_a_rewrite_in_place_without_fsync_is_lost_or_damaged_by_a_cut(tmp_path: Path, mode: CutMode) -> None:
    """A pwrite over durable bytes, never fsynced: drop brings the old bytes back, zero and
    garbage fill the rewritten range from its first changed byte, torn keeps a prefix of it."""
    path = tmp_path / "head.json"
    path.write_bytes(b"same-old-bytes")
    fs = FaultyFS(seed=5)
    _rewrite_in_place(fs, path, b"same-new-BYTES")
    fs.power_cut(mode)
    after = path.read_bytes()
    assert len(after) == 14 and after.startswith(b"same-")
    expected = {"drop": b"same-old-bytes", "zero": b"same-" + bytes(9)}
    if mode in expected:
        assert after == expected[mode]
    elif mode == "garbage":
        assert after[5:] not in (b"old-bytes", b"new-BYTES")
    else:
        assert any(after == b"same-new-BYTES"[:k] + b"same-old-bytes"[k:] for k in range(5, 15))


def test_a_short_pwrite_then_enospc(tmp_path: Path) -> None:
    path = tmp_path / "head.json"
    path.write_bytes(b"." * 8)
    fs = FaultyFS()
    fd = fs.open(path, os.O_RDWR)
    fs.short_write_at(1)
    assert fs.pwrite(fd, b"abcdefgh", 0) == 4
    with pytest.raises(OSError) as info:
        fs.pwrite(fd, b"efgh", 4)
    assert info.value.errno == errno.ENOSPC
    fs.close(fd)
    assert path.read_bytes() == b"abcd...."
    assert fs.calls("pwrite")[0].detail == "8 bytes at 0"


def test_a_new_name_without_a_directory_fsync_is_gone_after_a_cut(tmp_path: Path) -> None:
    fs = FaultyFS()
    _append(fs, tmp_path / "kept.log", b"k")
    _fsync_dir(fs, tmp_path)
    _append(fs, tmp_path / "new.log", b"n")  # its bytes fsynced, its name not
    fs.power_cut("drop")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.log"]


def test_names_false_keeps_every_name_and_a_never_synced_file_is_empty(tmp_path: Path) -> None:
    fs = FaultyFS()
    _append(fs, tmp_path / "synced.log", b"s")
    _append(fs, tmp_path / "unsynced.log", b"u", sync=False)
    fs.power_cut("drop", names=False)
    assert (tmp_path / "synced.log").read_bytes() == b"s"
    assert (tmp_path / "unsynced.log").read_bytes() == b""


def test_a_rename_without_a_directory_fsync_is_undone(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(b"old")
    fs = FaultyFS()
    _replace(fs, path, b"new", sync=False)
    fs.power_cut("drop")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_synced_replace_survives_a_cut(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    path.write_bytes(b"old")
    fs = FaultyFS()
    _replace(fs, path, b"new", sync=True)
    fs.power_cut("garbage")
    assert path.read_bytes() == b"new"


def test_repeated_unsynced_replaces_restore_the_first_file_even_when_inode_numbers_are_reused(tmp_path: Path) -> None:
    """Each replace frees the previous file's inode, which the next temp file may get: the
    harness must still know the durable file is the one found at the start."""
    path = tmp_path / "state.json"
    path.write_bytes(b"durable")
    fs = FaultyFS()
    for n in range(20):
        _replace(fs, path, f"version {n}".encode(), sync=False)
    fs.power_cut("drop")
    assert path.read_bytes() == b"durable"


def test_a_link_without_a_directory_fsync_is_undone_with_it(tmp_path: Path) -> None:
    """A new log is created as temp file + link: until the directory fsync, a cut loses it."""
    fs = FaultyFS()
    dir_fd = fs.open(tmp_path, DIRECTORY)
    fd = fs.open("log.tmp", os.O_WRONLY | os.O_CREAT | os.O_EXCL, dir_fd=dir_fd)
    fs.write(fd, b"header\n")
    fs.fsync(fd)
    fs.close(fd)
    fs.link("log.tmp", "log", src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    fs.unlink("log.tmp", dir_fd=dir_fd)
    fs.power_cut("drop")
    assert list(tmp_path.iterdir()) == []


def test_after_a_cut_every_call_raises_power_cut_and_locks_are_released(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.touch()
    fs = FaultyFS()
    fd = fs.open(path, APPEND)
    fs.flock(fd, fcntl.LOCK_EX)
    fs.power_cut("drop")
    for call in (lambda: fs.write(fd, b"x"), lambda: fs.fsync(fd), lambda: fs.open(path, APPEND), lambda: fs.close(fd)):
        with pytest.raises(PowerCut):
            call()
    other = OS.open(path, os.O_RDONLY)
    try:
        OS.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the dead writer's lock is gone
    finally:
        OS.close(other)


def test_cut_at_n_cuts_the_power_before_that_call(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.touch()
    fs = FaultyFS()
    _append(fs, path, b"synced\n")
    fd = fs.open(path, APPEND)
    fs.cut_at(2, "zero", ops={"write", "fsync"})
    fs.write(fd, b"unsynced\n")
    with pytest.raises(PowerCut):
        fs.fsync(fd)  # never done: the unsynced line is zeros
    fs.close_all()
    assert path.read_bytes() == b"synced\n" + bytes(9)
    with pytest.raises(OSError) as info:
        os.fstat(fd)
    assert info.value.errno == errno.EBADF
    assert fs.dead and fs.faults == 1


def test_an_unknown_cut_mode_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cut mode"):
        FaultyFS().power_cut("fire")  # type: ignore[arg-type]


def test_calls_on_a_descriptor_carry_its_inode_across_a_rename(tmp_path: Path) -> None:
    fs = FaultyFS()
    fd = fs.open(tmp_path / "f.tmp", os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    fs.replace(tmp_path / "f.tmp", tmp_path / "f")
    fs.fsync(fd)
    fs.close(fd)
    ino = (tmp_path / "f").stat().st_ino
    assert [(c.op, c.name, c.ino) for c in fs.trace[1:]] == [("replace", "f", 0), ("fsync", "f", ino), ("close", "f", ino)]


# --- through events.atomic.write_atomic ------------------------------------------------------


def _atomic_calls(tmp_path: Path, *, sync: bool) -> list[Call]:
    target = tmp_path / "count" / "state.json"
    target.parent.mkdir()
    target.write_bytes(b"old")
    fs = FaultyFS()
    write_atomic(target, b"new", sync=sync, fs=fs)
    return fs.trace


@pytest.mark.parametrize("persistent", [False, True], ids=["once", "for-good"])
def test_write_atomic_failing_at_any_call_leaves_the_old_bytes_or_the_new(tmp_path: Path, persistent: bool) -> None:
    """At every call of a replace: an AsupError (never a bare OSError), and the target old or new, never a mix;
    after a single fault no temp file is left either."""
    calls = _atomic_calls(tmp_path, sync=True)
    assert [c.op for c in calls] == ["open", "stat", "open", "write", "fsync", "close", "replace", "fsync", "close"]
    for n, call in enumerate(calls, 1):
        directory = tmp_path / f"run-{n}"
        directory.mkdir()
        target = directory / "state.json"
        target.write_bytes(b"old")
        fs = FaultyFS()
        fs.fail_at(n, persistent=persistent)
        try:
            write_atomic(target, b"new", fs=fs)
        except AsupError:
            pass
        else:  # only a failed close of the read-only directory descriptor may pass unreported: it loses nothing
            assert call.op == "close", f"a fault at call {n} ({call.op}) went unreported"
        assert target.read_bytes() in (b"old", b"new"), f"call {n} ({call.op})"
        if not persistent:
            assert sorted(p.name for p in directory.iterdir()) == ["state.json"], f"call {n} ({call.op}) left a temp file"
        fs.close_all()


@pytest.mark.parametrize("names", [True, False], ids=["names-undone", "names-kept"])
@pytest.mark.parametrize("mode", CUT_MODES)
def test_write_atomic_cut_at_any_call_leaves_the_old_bytes_or_the_new(tmp_path: Path, mode: CutMode, names: bool) -> None:
    """RELIABILITY row 4: a crash at every point of tmp -> fsync -> rename -> fsync(dir) leaves old or new, never partial."""
    calls = _atomic_calls(tmp_path, sync=True)
    for n in range(1, len(calls) + 2):  # len + 1: the cut comes after the last call
        directory = tmp_path / f"run-{n}"
        directory.mkdir()
        target = directory / "state.json"
        target.write_bytes(b"old")
        fs = FaultyFS(seed=n)
        if n <= len(calls):
            fs.cut_at(n, mode, names=names)
            with pytest.raises(PowerCut):
                write_atomic(target, b"new", fs=fs)
            fs.close_all()
        else:
            write_atomic(target, b"new", fs=fs)
            fs.power_cut(mode, names=names)
        assert target.read_bytes() in (b"old", b"new"), f"cut before call {n}"
    assert (tmp_path / f"run-{len(calls) + 1}" / "state.json").read_bytes() == b"new"


def test_write_atomic_without_sync_promises_nothing_across_a_cut(tmp_path: Path) -> None:
    """sync=False (the head record, the writer index): after a cut the old file is back, or,
    where the rename reached the disk but the bytes did not, an empty one: a cache only."""
    outcomes = []
    for names in (True, False):
        target = tmp_path / f"{names}.json"
        target.write_bytes(b"old")
        fs = FaultyFS()
        write_atomic(target, b"new", sync=False, fs=fs)
        fs.power_cut("drop", names=names)
        outcomes.append(target.read_bytes())
    assert outcomes == [b"old", b""]
