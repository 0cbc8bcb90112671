"""Files and directories asup owns beside a target, reached only through directory fds.

    open_own(fs, dir_fd, name, path, flags, create=)  a regular file of ours, or created new
    own_dir(fs, dir_fd, name, path, create=)           a directory of ours, never through a link
    walk(fs, dir_fd)                                   (relative path, lstat) of a tree, never following
    Opened(fs)                                         descriptors of one operation, closed together

A name is created new (`O_CREAT|O_EXCL|O_NOFOLLOW`, or `mkdir`) relative to an open
directory; what is already there is reused only when `lstat` and then `fstat` of the
opened descriptor show a regular file with one link (a directory, opened with
`O_NOFOLLOW|O_DIRECTORY`, for a directory name). Anything else (a symlink, a FIFO, a
socket, a device, a hardlinked file, a directory at a file's name) is refused with
`AsupError(USAGE, "refusing ... at a name asup owns; remove it")`, never followed or opened
for writing.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

from events.atomic import describe, make_dir_in, refusal
from events.errors import AsupError
from events.fs import FileSystem

_NEW = os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
_EXISTING = os.O_NOFOLLOW | os.O_NONBLOCK  # a FIFO swapped in after the lstat must not block the open
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
_SWAPPED = (errno.ELOOP, errno.EISDIR, errno.ENXIO, errno.ENOTDIR, errno.EWOULDBLOCK)
_TRIES = 5  # a name that keeps appearing and vanishing under us is refused, not chased for ever


def check_own(st: os.stat_result, path: Path | str) -> None:
    """Raise unless `st` is a regular file with one link: what asup may reuse as its own."""
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        raise refusal(describe(st), path)


def open_own(fs: FileSystem, dir_fd: int, name: str, path: Path, flags: int, *, create: bool) -> tuple[int, os.stat_result] | None:
    """(fd, fstat) of asup's own regular file `name` in `dir_fd`: created new when absent
    and `create` (else None), reused only when it is a regular file with one link."""
    for _ in range(_TRIES):
        try:
            st = fs.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            if not create:
                return None
            try:
                fd = fs.open(name, flags | _NEW, 0o644, dir_fd=dir_fd)
            except FileExistsError:
                continue  # appeared meanwhile: look at what it is
            return fd, _fstat_or_close(fs, fd)
        check_own(st, path)
        opened = _open_existing(fs, dir_fd, name, path, flags)
        if opened is None:
            continue  # removed meanwhile
        if (opened[1].st_dev, opened[1].st_ino) == (st.st_dev, st.st_ino):
            return opened
        fs.close(opened[0])
    raise refusal("a file that keeps changing", path)


def _open_existing(fs: FileSystem, dir_fd: int, name: str, path: Path, flags: int) -> tuple[int, os.stat_result] | None:
    try:
        fd = fs.open(name, flags | _EXISTING, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in _SWAPPED:
            raise refusal("a link or special file", path) from exc
        raise
    st = _fstat_or_close(fs, fd)
    try:
        check_own(st, path)
    except AsupError:
        fs.close(fd)
        raise
    return fd, st


def _fstat_or_close(fs: FileSystem, fd: int) -> os.stat_result:
    try:
        return fs.fstat(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            fs.close(fd)
        raise


def own_dir(fs: FileSystem, dir_fd: int, name: str, path: Path, *, create: bool) -> int | None:
    """An fd of asup's own directory `name` in `dir_fd`, never opened through a link: made
    when absent and `create` (else None); a link or a non-directory there is refused."""
    if create:
        return make_dir_in(dir_fd, name, path, fs)
    try:
        return fs.open(name, _DIR, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise refusal("a symlink or a non-directory", path) from exc
        raise


def walk(fs: FileSystem, dir_fd: int, prefix: str = "") -> Iterator[tuple[str, os.stat_result]]:
    """(relative path, lstat) of everything under `dir_fd`, depth first, never following a
    link; a directory is yielded before what it holds. Names that vanish meanwhile are skipped."""
    for entry in sorted(fs.listdir(dir_fd)):
        try:
            st = fs.stat(entry, dir_fd=dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            continue
        rel = f"{prefix}{entry}"
        yield rel, st
        if stat.S_ISDIR(st.st_mode):
            try:
                sub = fs.open(entry, _DIR, dir_fd=dir_fd)
            except (FileNotFoundError, NotADirectoryError):
                continue
            except OSError as exc:
                if exc.errno == errno.ELOOP:  # swapped for a link since the lstat
                    continue
                raise
            try:
                yield from walk(fs, sub, rel + "/")
            finally:
                with contextlib.suppress(OSError):
                    fs.close(sub)


class Opened:
    """The directory (and read-only) descriptors one operation opens, closed together on
    the way out: closing them loses nothing, so a failed close is not an error."""

    def __init__(self, fs: FileSystem) -> None:
        self.fs = fs
        self._fds: list[int] = []

    def keep(self, fd: int) -> int:
        self._fds.append(fd)
        return fd

    def __enter__(self) -> Opened:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for fd in reversed(self._fds):
            with contextlib.suppress(OSError):
                self.fs.close(fd)
        self._fds = []
