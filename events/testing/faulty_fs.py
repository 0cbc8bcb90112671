"""A `FileSystem` that fails on cue: the fault harness of the log's file I/O (SQLite's
test VFS, for asup). Hand it to whatever takes an `fs=`:

    fs = FaultyFS()                          # wraps events.fs.OS
    log = JsonlLog.open(path, fs=fs)
    fs.fail_at(3)                            # the 3rd counted call from now raises EIO, once
    fs.fail_at(1, errno.ENOSPC, persistent=True, ops={"write"})
    fs.short_write_at(1)                     # the next write takes half, the one after: ENOSPC
    fs.cut_at(5, "zero")                     # the power goes just before the 5th counted call
    fs.power_cut("drop")                     # ... or right now

Counting. Every call is traced (`trace`: op, path, a summary of the arguments). A call is
*counted* when its op is one of `ops` and its path passes `paths` (both given at
construction; by default every call counts); `count` is how many were. A fault's `n`
counts the counted calls of its own `ops` from the moment it is armed, so a test arms it
after its setup and `n` = 1 is the first call of the step under test.

Faults. `fail_at` raises `OSError(error)` instead of doing the call (a failed `close`
still releases the descriptor, as Linux does); `persistent=True` fails that call and every
later one of its ops. `short_write_at` makes one write take only part of its bytes and,
unless `then=None`, the next write raise `then` (ENOSPC by default): the disk filling up.

Power cuts. What is durable is tracked as the kernel promises it, no more: a file's bytes
as of its last successful `fsync` (a file that existed before the harness first touched it
counts as durable as found; a file it created starts empty), and a directory's names as of
the last `fsync` of a descriptor of that directory (as found, before that). A cut rewrites
the real files of every directory the harness has touched to what a crash could leave:

- "drop": every file back to its durable bytes;
- "zero" / "garbage": the unsynced range (from the first byte that differs from the
  durable bytes to the end: what was appended or rewritten in place since) filled with NUL
  bytes / seeded random bytes (ALICE's weakest model: the size reached the disk, the data
  did not);
- "torn": a seeded random prefix of the unsynced range reached the disk, the rest did not;

and with `names=True` (the default) a name created, linked or renamed since its
directory's last fsync is undone: a new name vanishes, a replaced one shows its old file
again (with that file's durable bytes). `names=False` keeps every name as it is now. After
a cut the "process" is gone: every later call raises `PowerCut` (a `close` still releases
the real descriptor), and `close_all()` releases whatever is still open, so the test can
reopen the files through the real OS in the same process. Not modelled: reordering inside
one file's unsynced bytes, sector atomicity (a "torn" rewrite may end mid-sector), and
directories made or removed (traced and counted; a cut
leaves them as they are), and fsyncgate's pages dropped by a failed fsync (a failed fsync simply leaves
the durable bytes where they were; that the log never retries one is for the trace to
show). The files under test are small: the harness reads them whole.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import random
import stat
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, TypeVar

from events.fs import OS, FileSystem, PathArg

__all__ = ["ALL_OPS", "CUT_MODES", "MUTATING_OPS", "WRITE_OPS", "Call", "CutMode", "FaultyFS", "PowerCut"]

ALL_OPS: frozenset[str] = frozenset(
    {
        "open",
        "close",
        "write",
        "pread",
        "pwrite",
        "fsync",
        "ftruncate",
        "fstat",
        "stat",
        "link",
        "replace",
        "unlink",
        "listdir",
        "flock",
        "mkdir",
        "rmdir",
        "rename_noreplace",
    }
)
MUTATING_OPS: frozenset[str] = frozenset(
    {"open", "write", "pwrite", "fsync", "ftruncate", "link", "replace", "unlink", "mkdir", "rmdir", "rename_noreplace"}
)
WRITE_OPS: frozenset[str] = frozenset({"write", "pwrite"})
CutMode = Literal["drop", "zero", "garbage", "torn"]
CUT_MODES: tuple[CutMode, ...] = ("drop", "zero", "garbage", "torn")

PathFilter = Callable[[Path], bool] | str | None
T = TypeVar("T")


class PowerCut(BaseException):
    """Raised by every call once the power is gone. A BaseException, so no `except OSError`
    or `except Exception` of the code under test can swallow the end of its process."""


@dataclass(frozen=True)
class Call:
    """One traced call: `n` is its number among the counted calls (0: not counted)."""

    n: int
    op: str
    name: str  # the path's last part
    detail: str
    path: str
    ino: int = 0  # the inode of the descriptor's file, for a call on a descriptor (which a rename keeps)


@dataclass
class _File:
    """One file (an inode) as the harness knows it: `synced` is what a crash keeps (None:
    never touched, so a cut leaves it alone)."""

    synced: bytes | None = None


@dataclass
class _Dir:
    path: Path
    durable: dict[str, _File]


@dataclass
class _Handle:
    path: Path
    identity: tuple[int, int]
    is_dir: bool


@dataclass
class _Plan:
    kind: Literal["fail", "short", "cut"]
    at: int
    ops: frozenset[str]
    paths: Callable[[Path], bool]
    error: int = errno.EIO
    persistent: bool = False
    keep: int | None = None
    then: int | None = None
    mode: CutMode = "drop"
    names: bool = True
    seen: int = 0
    fired: bool = False

    def due(self, op: str, paths: tuple[Path, ...]) -> bool:
        """Whether this call triggers the plan (advancing its own count)."""
        if op not in self.ops or not any(self.paths(path) for path in paths):
            return False
        self.seen += 1
        if self.fired and not self.persistent:
            return False
        if self.seen == self.at or (self.persistent and self.seen > self.at):
            self.fired = True
            return True
        return False


@dataclass
class _Tracker:
    """The durable state of every file and directory the harness has touched."""

    live: dict[tuple[int, int], _File] = field(default_factory=dict)
    dirs: dict[Path, _Dir] = field(default_factory=dict)

    def file_at(self, path: Path) -> _File | None:
        """The file `path` names now (None: nothing, or not a regular file)."""
        try:
            st = path.lstat()
        except OSError:
            return None
        if not stat.S_ISREG(st.st_mode):
            return None
        return self.live.setdefault((st.st_dev, st.st_ino), _File())

    def touch(self, path: Path) -> None:
        """First sight of an existing file: what it holds now counts as durable."""
        self.see_dir(path.parent)
        found = self.file_at(path)
        if found is not None and found.synced is None:
            found.synced = _read(path)

    def see_dir(self, path: Path) -> _Dir:
        if path not in self.dirs:
            self.dirs[path] = _Dir(path, self.listing(path))
        return self.dirs[path]

    def listing(self, directory: Path) -> dict[str, _File]:
        found: dict[str, _File] = {}
        try:
            entries = sorted(directory.iterdir())
        except OSError:
            return found
        for entry in entries:
            file = self.file_at(entry)
            if file is not None:
                found[entry.name] = file
        return found

    def created(self, identity: tuple[int, int]) -> None:
        """A file the harness saw created: nothing of it is durable yet (this also forgets
        whatever an earlier file with the same, reused, inode number was)."""
        self.live[identity] = _File(b"")

    def dying(self, path: Path) -> None:
        """`path` is about to lose a name: if that is its last, forget its inode number,
        which the kernel may hand to the next file created."""
        try:
            st = path.lstat()
        except OSError:
            return
        if st.st_nlink <= 1:
            self.live.pop((st.st_dev, st.st_ino), None)


class FaultyFS(FileSystem):
    """Wraps `inner` (the real OS by default); see the module docstring."""

    def __init__(self, inner: FileSystem = OS, *, ops: Collection[str] = ALL_OPS, paths: PathFilter = None, seed: int = 0) -> None:
        unknown = set(ops) - ALL_OPS
        if unknown:
            raise ValueError(f"unknown ops: {sorted(unknown)}")
        self.inner = inner
        self.ops = frozenset(ops)
        self.paths = _path_filter(paths)
        self.trace: list[Call] = []
        self.count = 0
        self.faults = 0  # how many calls a plan failed, cut short or cut off
        self.cuts: list[str] = []  # what the last power cut did to which file, for messages
        self.dead = False
        self._rng = random.Random(seed)
        self._plans: list[_Plan] = []
        self._fds: dict[int, _Handle] = {}
        self._files = _Tracker()

    # --- arming faults ------------------------------------------------------------

    def fail_at(
        self, n: int, error: int = errno.EIO, *, persistent: bool = False, ops: Collection[str] | None = None, paths: PathFilter = None
    ) -> None:
        """The n-th counted call (of `ops`, on `paths`) from now raises OSError(error)."""
        self._arm(_Plan("fail", n, self._ops(ops), _path_filter(paths), error=error, persistent=persistent))

    def short_write_at(self, n: int, *, keep: int | None = None, then: int | None = errno.ENOSPC, paths: PathFilter = None) -> None:
        """The n-th counted write (`write` or `pwrite`) from now writes only `keep` bytes
        (default: half, at least one, fewer than asked); unless `then` is None the next
        write raises it."""
        self._arm(_Plan("short", n, WRITE_OPS, _path_filter(paths), keep=keep, then=then))

    def cut_at(self, n: int, mode: CutMode = "drop", *, names: bool = True, ops: Collection[str] | None = None) -> None:
        """The power goes just before the n-th counted call (of `ops`) from now: the cut
        is applied and that call raises `PowerCut`."""
        self._arm(_Plan("cut", n, self._ops(ops), _path_filter(None), mode=mode, names=names))

    def clear(self) -> None:
        """Disarm every fault (the trace and the count stay)."""
        self._plans.clear()

    def power_cut(self, mode: CutMode = "drop", *, names: bool = True, close: bool = True) -> list[str]:
        """Cut the power now (see the module docstring); returns what it changed."""
        self._cut(mode, names)
        if close:
            self.close_all()
        return self.cuts

    def close_all(self) -> None:
        """Close every descriptor opened through the harness and not closed through it
        (one a Python file object closed, and the kernel reused, is left alone)."""
        for fd, handle in list(self._fds.items()):
            try:
                if _identity(os.fstat(fd)) == handle.identity:
                    os.close(fd)
            except OSError:
                pass
        self._fds.clear()

    # --- reading the trace ----------------------------------------------------------

    def calls(self, op: str | None = None, name: str | None = None) -> list[Call]:
        """The traced calls, only of `op` and/or on a path whose last part is `name`."""
        return [c for c in self.trace if (op is None or c.op == op) and (name is None or c.name == name)]

    def counted(self, op: str | None = None) -> int:
        return sum(1 for c in self.trace if c.n and (op is None or c.op == op))

    # --- the FileSystem calls ------------------------------------------------------

    def open(self, path: PathArg, flags: int, mode: int = 0o644, *, dir_fd: int | None = None) -> int:
        full = self._resolve(path, dir_fd)
        self._files.see_dir(full.parent)
        existed = os.path.lexists(full)
        if existed:
            self._files.touch(full)
        self._enter("open", full, _flags(flags))
        fd = self.inner.open(path, flags, mode, dir_fd=dir_fd)
        st = os.fstat(fd)
        self._fds[fd] = _Handle(full, _identity(st), stat.S_ISDIR(st.st_mode))
        if stat.S_ISDIR(st.st_mode):
            self._files.see_dir(full)
        elif not existed:
            self._files.created(_identity(st))
        return fd

    def close(self, fd: int) -> None:
        handle = self._fds.get(fd)
        if self.dead and handle is None:  # close_all() released it already; the number may be reused
            self._enter("close", self._path(fd), f"fd {fd}")
        try:
            self._enter("close", self._path(fd), f"fd {fd}", fd=fd)
        except BaseException:
            self._fds.pop(fd, None)
            _quiet_close(fd)  # a failed close still frees the descriptor (Linux)
            raise
        self._fds.pop(fd, None)
        self.inner.close(fd)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        plan = self._enter("write", self._path(fd), f"{len(data)} bytes", fd=fd)
        if plan is None:
            return self.inner.write(fd, data)
        return self.inner.write(fd, self._shortened(plan, data))

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        plan = self._enter("pwrite", self._path(fd), f"{len(data)} bytes at {offset}", fd=fd)
        if plan is None:
            return self.inner.pwrite(fd, data, offset)
        return self.inner.pwrite(fd, bytes(self._shortened(plan, data)), offset)

    def _shortened(self, plan: _Plan, data: bytes | memoryview) -> memoryview:
        """The part of `data` a short write takes; arms the fault that follows it."""
        keep = plan.keep if plan.keep is not None else len(data) // 2
        keep = min(max(keep, 1), max(len(data) - 1, 1))
        if plan.then is not None:
            self._arm(_Plan("fail", 1, WRITE_OPS, plan.paths, error=plan.then))
        return memoryview(data)[:keep]

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        self._enter("pread", self._path(fd), f"{size} at {offset}", fd=fd)
        return self.inner.pread(fd, size, offset)

    def fsync(self, fd: int) -> None:
        handle = self._fds.get(fd)
        self._enter("fsync", self._path(fd), "directory" if handle and handle.is_dir else "", fd=fd)
        self.inner.fsync(fd)
        self._synced(fd, handle)

    def ftruncate(self, fd: int, size: int) -> None:
        self._enter("ftruncate", self._path(fd), f"to {size}", fd=fd)
        self.inner.ftruncate(fd, size)

    def fstat(self, fd: int) -> os.stat_result:
        self._enter("fstat", self._path(fd), "", fd=fd)
        return self.inner.fstat(fd)

    def stat(self, path: PathArg, *, dir_fd: int | None = None, follow_symlinks: bool = True) -> os.stat_result:
        self._enter("stat", self._resolve(path, dir_fd), "" if follow_symlinks else "nofollow")
        return self.inner.stat(path, dir_fd=dir_fd, follow_symlinks=follow_symlinks)

    def link(self, src: PathArg, dst: PathArg, *, src_dir_fd: int | None = None, dst_dir_fd: int | None = None) -> None:
        source, target = self._resolve(src, src_dir_fd), self._resolve(dst, dst_dir_fd)
        self._prepare(source, target)
        self._enter("link", target, f"{source.name} -> {target.name}", also=source)
        self.inner.link(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

    def replace(self, src: PathArg, dst: PathArg, *, src_dir_fd: int | None = None, dst_dir_fd: int | None = None) -> None:
        source, target = self._resolve(src, src_dir_fd), self._resolve(dst, dst_dir_fd)
        self._prepare(source, target)
        self._enter("replace", target, f"{source.name} -> {target.name}", also=source)
        if _identity_at(source) != _identity_at(target):
            self._files.dying(target)
        self.inner.replace(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
        for handle in self._fds.values():
            if handle.path == source:
                handle.path = target

    def unlink(self, path: PathArg, *, dir_fd: int | None = None) -> None:
        full = self._resolve(path, dir_fd)
        self._prepare(full)
        self._enter("unlink", full, "")
        self._files.dying(full)
        self.inner.unlink(path, dir_fd=dir_fd)

    def listdir(self, dir_fd: int) -> list[str]:
        self._enter("listdir", self._path(dir_fd), "", fd=dir_fd)
        return self.inner.listdir(dir_fd)

    def flock(self, fd: int, operation: int) -> None:
        self._enter("flock", self._path(fd), _flock_op(operation), fd=fd)
        self.inner.flock(fd, operation)

    def mkdir(self, path: PathArg, mode: int = 0o755, *, dir_fd: int | None = None) -> None:
        full = self._resolve(path, dir_fd)
        self._prepare(full)
        self._enter("mkdir", full, oct(mode))
        self.inner.mkdir(path, mode, dir_fd=dir_fd)

    def rmdir(self, path: PathArg, *, dir_fd: int | None = None) -> None:
        full = self._resolve(path, dir_fd)
        self._prepare(full)
        self._enter("rmdir", full, "")
        self.inner.rmdir(path, dir_fd=dir_fd)

    def rename_noreplace(self, src: PathArg, dst: PathArg, *, src_dir_fd: int | None = None, dst_dir_fd: int | None = None) -> None:
        source, target = self._resolve(src, src_dir_fd), self._resolve(dst, dst_dir_fd)
        self._prepare(source, target)
        self._enter("rename_noreplace", target, f"{source.name} -> {target.name}", also=source)
        self.inner.rename_noreplace(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)
        for handle in self._fds.values():
            if handle.path == source:
                handle.path = target

    # --- the machinery -------------------------------------------------------------

    def _ops(self, ops: Collection[str] | None) -> frozenset[str]:
        chosen = self.ops if ops is None else frozenset(ops)
        if chosen - ALL_OPS:
            raise ValueError(f"unknown ops: {sorted(chosen - ALL_OPS)}")
        return chosen

    def _arm(self, plan: _Plan) -> None:
        if plan.at < 1:
            raise ValueError("a fault's n counts from 1")
        self._plans.append(plan)

    def _enter(self, op: str, path: Path, detail: str, *, also: Path | None = None, fd: int | None = None) -> _Plan | None:
        """Trace the call; raise what a fault or the dead power says; return a short write's plan."""
        handle = self._fds.get(fd) if fd is not None else None
        ino = handle.identity[1] if handle else 0
        if self.dead:
            self.trace.append(Call(0, op, path.name, detail + " (after the power cut)", str(path), ino))
            raise PowerCut(f"{op} {path.name} after the power cut")
        paths = (path,) if also is None else (path, also)
        counted = op in self.ops and any(self.paths(p) for p in paths)
        if counted:
            self.count += 1
        self.trace.append(Call(self.count if counted else 0, op, path.name, detail, str(path), ino))
        if not counted:
            return None
        return self._fire([plan for plan in self._plans if plan.due(op, paths)], op, path)

    def _fire(self, due: list[_Plan], op: str, path: Path) -> _Plan | None:
        for plan in due:
            self.faults += 1
            if plan.kind == "cut":
                self._cut(plan.mode, plan.names)
                raise PowerCut(f"the power went at {op} {path.name}")
            if plan.kind == "fail":
                raise OSError(plan.error, f"{os.strerror(plan.error)} (injected at {op} {path.name})")
        return due[0] if due else None

    def _path(self, fd: int) -> Path:
        handle = self._fds.get(fd)
        return handle.path if handle else Path(f"fd:{fd}")

    def _resolve(self, path: PathArg, dir_fd: int | None) -> Path:
        if dir_fd is None:
            return Path(os.path.normpath(Path.cwd() / path))
        handle = self._fds.get(dir_fd)
        base = handle.path if handle else Path(f"/proc/self/fd/{dir_fd}").readlink()
        return Path(os.path.normpath(base / path))

    def _prepare(self, *paths: Path) -> None:
        for path in paths:
            self._files.touch(path)

    def _synced(self, fd: int, handle: _Handle | None) -> None:
        if handle is not None and handle.is_dir:
            self._files.see_dir(handle.path).durable = self._files.listing(handle.path)
            return
        file = self._files.live.setdefault(_identity(os.fstat(fd)), _File())
        file.synced = _read(Path(f"/proc/self/fd/{fd}"))

    def _cut(self, mode: CutMode, names: bool) -> None:
        if mode not in CUT_MODES:
            raise ValueError(f"unknown cut mode {mode!r}")
        self.dead = True
        self.cuts = []
        done: dict[int, Path] = {}  # id(_File) -> a path already holding its post-cut bytes
        for directory in list(self._files.dirs.values()):
            current = self._files.listing(directory.path)
            if names:
                self._restore_names(directory, current, mode, done)
            else:
                for name, file in current.items():
                    self._rewrite(directory.path / name, file, mode, done)

    def _restore_names(self, directory: _Dir, current: dict[str, _File], mode: CutMode, done: dict[int, Path]) -> None:
        for name, file in current.items():
            if directory.durable.get(name) is not file:
                (directory.path / name).unlink()
                self.cuts.append(f"{name}: name not durable, removed")
        for name, file in directory.durable.items():
            path = directory.path / name
            if current.get(name) is file:
                self._rewrite(path, file, mode, done)
            elif file.synced is not None:
                self._recreate(path, file, done)

    def _rewrite(self, path: Path, file: _File, mode: CutMode, done: dict[int, Path]) -> None:
        if file.synced is None or id(file) in done:
            return
        done[id(file)] = path
        now = _read(path)
        after = _after_cut(file.synced, now, mode, self._rng)
        if after != now:
            _write_in_place(path, after)
            self.cuts.append(f"{path.name}: {len(now)} bytes -> {len(after)} ({mode})")

    def _recreate(self, path: Path, file: _File, done: dict[int, Path]) -> None:
        assert file.synced is not None
        if id(file) in done:
            os.link(done[id(file)], path)
        else:
            _write_in_place(path, file.synced)
            done[id(file)] = path
        self.cuts.append(f"{path.name}: durable name restored ({len(file.synced)} bytes)")


def _after_cut(synced: bytes, now: bytes, mode: CutMode, rng: random.Random) -> bytes:
    """What a crash leaves of a file that holds `now` and whose last fsync saw `synced`.

    The unsynced range runs from the first byte where they differ to the end of `now`
    (appended bytes, and bytes rewritten in place); a file cut shorter since its fsync
    comes back whole (the cut was not durable either)."""
    if mode == "drop" or len(now) < len(synced) or now == synced:
        return synced
    first = _common_prefix(synced, now)
    changed = len(now) - first
    if mode == "zero":
        return now[:first] + bytes(changed)
    if mode == "garbage":
        return now[:first] + rng.randbytes(changed)
    kept = first + rng.randrange(changed + 1)  # "torn": a prefix of the new bytes reached the disk
    return now[:kept] + synced[kept:]


def _common_prefix(a: bytes, b: bytes) -> int:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


def _path_filter(paths: PathFilter) -> Callable[[Path], bool]:
    if paths is None:
        return lambda _path: True
    if isinstance(paths, str):
        suffix = paths
        return lambda path: path.name.endswith(suffix)
    return paths


def _identity(st: os.stat_result) -> tuple[int, int]:
    return st.st_dev, st.st_ino


def _identity_at(path: Path) -> tuple[int, int] | None:
    try:
        return _identity(path.lstat())
    except OSError:
        return None


def _read(path: Path) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks: list[bytes] = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def _write_in_place(path: Path, data: bytes) -> None:
    """Overwrite through the same inode (so other names of it see the same bytes)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _quiet_close(fd: int) -> None:
    with contextlib.suppress(OSError):
        os.close(fd)


_FLAGS = (
    ("O_WRONLY", os.O_WRONLY),
    ("O_RDWR", os.O_RDWR),
    ("O_APPEND", os.O_APPEND),
    ("O_CREAT", os.O_CREAT),
    ("O_EXCL", os.O_EXCL),
    ("O_TRUNC", os.O_TRUNC),
    ("O_DIRECTORY", os.O_DIRECTORY),
    ("O_NOFOLLOW", os.O_NOFOLLOW),
)


def _names(value: int, table: Iterable[tuple[str, int]], zero: str) -> str:
    return "|".join(name for name, bit in table if value & bit) or zero


def _flags(flags: int) -> str:
    return _names(flags, _FLAGS, "O_RDONLY")


def _flock_op(operation: int) -> str:
    table = (("LOCK_SH", fcntl.LOCK_SH), ("LOCK_EX", fcntl.LOCK_EX), ("LOCK_UN", fcntl.LOCK_UN), ("LOCK_NB", fcntl.LOCK_NB))
    return _names(operation, table, "0")
