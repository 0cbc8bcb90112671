"""Small files asup owns, written whole: the one writer every asup side file goes through.

    write_atomic(path, data, sync=True)   replace asup's own file at `path`
    create_new(path, data)                 publish a new file; never replace what is there
    read_small(path, limit)                read asup's own small file, or None
    make_dirs(dir, under=root)             mkdir -p below a root, never through a link
    move_aside(path, suffix)               keep `path` as `NAME.<suffix>-<n>`; never replace
    make_dir_in(dir_fd, name)              a directory of asup's own, never through a link

The bytes go to a temp file beside `path`, created new (`O_CREAT|O_EXCL|O_NOFOLLOW`,
relative to the open directory) under a name unique to this process and call, so two
processes replacing the same file never write into each other's temp file; then the temp
file is fsynced, renamed over `path` (or, for `create_new`, linked to it, which fails if
anything is there) and the directory fsynced. A reader sees the old bytes or the new ones,
never a mix. Before a replace, `path` is checked with `lstat`: only a regular file with
one link (or nothing) is replaced, so a symlink, FIFO or hardlink planted at an asup name
is refused, never followed. `sync=False` skips both fsyncs, for caches that a crash may
lose (the head record, the writer index, fold checkpoints). Every OS failure is an
`AsupError` naming `path`; the temp file is removed on the way out.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import secrets
import stat
import time
from pathlib import Path

from events.errors import AsupError, ErrorCode, os_error
from events.fs import OS, FileSystem

_calls = itertools.count(1)
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
_DIR = os.O_RDONLY | os.O_DIRECTORY


def temp_name(path: Path) -> str:
    """`NAME.<pid>-<n>-<random>.tmp`: unique per process and call, `.tmp` so inventories skip it."""
    return f"{path.name}.{os.getpid()}-{next(_calls)}-{secrets.token_hex(4)}.tmp"


def make_dirs(directory: Path, *, under: Path | None = None, fs: FileSystem = OS) -> None:
    """`mkdir -p`, its failure an `AsupError` naming the directory. With `under` (a root the
    operator named, which may itself be reached through a link), every directory below it is
    made or entered one component at a time relative to its parent's fd, never through a
    symlink: a link planted at `root/asupersync` cannot send asup's files out of the root."""
    if under is None or directory == under:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise os_error(exc, "cannot create the directory", directory) from exc
        return
    try:
        parts = directory.relative_to(under).parts
    except ValueError:
        raise AsupError(ErrorCode.USAGE, f"not inside the root {under}", file=str(directory)) from None
    make_dirs(under)
    fd = open_dir(under, fs)
    try:
        for depth, part in enumerate(parts, 1):
            inner = make_dir_in(fd, part, under.joinpath(*parts[:depth]), fs)
            _close_quietly(fs, fd)
            fd = inner
    finally:
        _close_quietly(fs, fd)


def open_dir(directory: Path, fs: FileSystem = OS, *, for_path: Path | None = None) -> int:
    """An fd of `directory`; its failure names `for_path` (the file wanted there) when given."""
    try:
        return fs.open(str(directory), _DIR)
    except OSError as exc:
        if for_path is not None:
            raise os_error(exc, "cannot write", for_path) from exc
        raise os_error(exc, "cannot open the directory", directory) from exc


def write_atomic(path: Path, data: bytes, *, sync: bool = True, fs: FileSystem = OS) -> None:
    """Replace asup's own file `path` with `data` (see the module docstring)."""
    dir_fd = open_dir(path.parent, fs, for_path=path)
    try:
        refuse_foreign(dir_fd, path, fs)
        _publish(dir_fd, path, data, sync, fs, replace=True)
    finally:
        _close_quietly(fs, dir_fd)


def create_new(path: Path, data: bytes, fs: FileSystem = OS) -> bool:
    """Publish `data` at `path`, fsynced with its directory; False (nothing written) when
    something is already there: a name is never replaced."""
    dir_fd = open_dir(path.parent, fs, for_path=path)
    try:
        return _publish(dir_fd, path, data, True, fs, replace=False)
    finally:
        _close_quietly(fs, dir_fd)


def settle_leftover(path: Path, fs: FileSystem = OS) -> None:
    """Finish a `create_new` a crash cut between its link and its unlink: the temp file that
    is the second link of `path` (same inode, asup's temp name for it) is removed."""
    try:
        st = fs.stat(str(path), follow_symlinks=False)
    except OSError:
        return
    if not stat.S_ISREG(st.st_mode) or st.st_nlink < 2:
        return
    dir_fd = open_dir(path.parent, fs, for_path=path)
    try:
        for name in fs.listdir(dir_fd):
            if not (name.startswith(f"{path.name}.") and name.endswith(".tmp")):
                continue
            with contextlib.suppress(OSError):
                other = fs.stat(name, dir_fd=dir_fd, follow_symlinks=False)
                if (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino):
                    fs.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass
    finally:
        _close_quietly(fs, dir_fd)


def refuse_foreign(dir_fd: int, path: Path, fs: FileSystem = OS) -> None:
    """Raise unless `path` (in `dir_fd`) is absent or a regular file with one link: what
    asup may replace as its own."""
    for attempt in range(_SETTLE):
        try:
            st = fs.stat(path.name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise os_error(exc, "cannot check", path) from exc
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
            return
        if not stat.S_ISREG(st.st_mode) or attempt == _SETTLE - 1:
            break
        time.sleep(0.001)  # a rename by another asup process can show two links for an instant
    raise refusal(f"to replace {describe(st)}", path)


_SETTLE = 20
_KINDS = {
    stat.S_IFLNK: "a symlink",
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a device",
    stat.S_IFBLK: "a device",
}


def refusal(what: str, path: Path | str) -> AsupError:
    """The one error for something planted at a name asup owns: never followed, never replaced."""
    return AsupError(ErrorCode.USAGE, f"refusing {what} at a name asup owns; remove it", file=str(path))


def describe(st: os.stat_result) -> str:
    """What `st` is, in a refusal's words (a regular file here has more than one link)."""
    if stat.S_ISREG(st.st_mode):
        return "a hardlinked file"
    return _KINDS.get(stat.S_IFMT(st.st_mode), "a special file")


def _publish(dir_fd: int, path: Path, data: bytes, sync: bool, fs: FileSystem, *, replace: bool) -> bool:
    tmp = temp_name(path)
    try:
        fd = fs.open(tmp, _CREATE, 0o644, dir_fd=dir_fd)
        try:
            write_all(fd, memoryview(data), fs)
            if sync:
                fs.fsync(fd)
        finally:
            fs.close(fd)
        if replace:
            fs.replace(tmp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        else:
            try:
                fs.link(tmp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except FileExistsError:
                return False
            finally:
                with contextlib.suppress(OSError):
                    fs.unlink(tmp, dir_fd=dir_fd)
        if sync:
            fs.fsync(dir_fd)
        return True
    except BaseException as exc:  # Ctrl-C mid-write leaves no temp file behind either
        with contextlib.suppress(OSError):
            fs.unlink(tmp, dir_fd=dir_fd)
        if isinstance(exc, OSError):
            raise os_error(exc, "cannot write", path) from exc
        raise


def move_aside(path: Path, suffix: str, fs: FileSystem = OS, *, limit: int = 10_000) -> Path:
    """Rename `path` to `NAME.<suffix>-<n>` (`NAME.<n>` for an empty suffix) beside it, with
    the first free n. The kernel
    checks that the new name is free as it renames (`renameat2(RENAME_NOREPLACE)`), so a
    name planted meanwhile is skipped, never replaced; a planted symlink at `path` itself is
    moved as the link, never followed."""
    dir_fd = open_dir(path.parent, fs, for_path=path)
    try:
        for n in range(1, limit + 1):
            target = path.with_name(f"{path.name}.{suffix}-{n}" if suffix else f"{path.name}.{n}")
            try:
                fs.rename_noreplace(path.name, target.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except FileExistsError:
                continue
            except OSError as exc:
                raise os_error(exc, "cannot keep aside", path) from exc
            with contextlib.suppress(OSError):
                fs.fsync(dir_fd)
            return target
    finally:
        _close_quietly(fs, dir_fd)
    raise AsupError(ErrorCode.USAGE, f"{limit} kept copies named {path.name}.{suffix}-<n> already: remove some", file=str(path))


def make_dir_in(dir_fd: int, name: str, path: Path, fs: FileSystem = OS) -> int:
    """An fd of the directory `name` in `dir_fd`, created when absent, never opened through
    a symlink (`path` names it in errors): a link or a file planted there is refused."""
    try:
        fs.mkdir(name, 0o755, dir_fd=dir_fd)
    except FileExistsError:
        pass
    except OSError as exc:
        raise os_error(exc, "cannot create the directory", path) from exc
    try:
        return fs.open(name, _DIR | os.O_NOFOLLOW, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise refusal("a symlink or a non-directory", path) from exc
        raise os_error(exc, "cannot open the directory", path) from exc


def read_small(path: Path, limit: int, fs: FileSystem = OS) -> bytes | None:
    """The bytes of asup's own small file at `path`: None when it is absent, unreadable, not
    a regular file with one link (never followed through a symlink) or over `limit` bytes."""
    try:
        fd = fs.open(str(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        st = fs.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1 or st.st_size > limit:
            return None
        return fs.pread(fd, limit + 1, 0)
    except OSError:
        return None
    finally:
        _close_quietly(fs, fd)


def _close_quietly(fs: FileSystem, fd: int) -> None:
    """Close a descriptor that wrote nothing unsynced (a directory, a read): its failure loses nothing."""
    with contextlib.suppress(OSError):
        fs.close(fd)


def write_all(fd: int, view: memoryview, fs: FileSystem = OS) -> None:
    """Every byte of `view` to `fd` (a write may take fewer than asked)."""
    while view:
        view = view[fs.write(fd, view) :]
