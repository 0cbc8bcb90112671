"""The one seam the log's file I/O goes through.

`FileSystem` is the handful of calls the JSONL log, its side files (head record, writer
index, quarantine) and `events.atomic` make; `OS` does them with `os`. A test hands the log
another implementation (`events.testing.faulty_fs.FaultyFS`) that fails at operation N,
writes short, raises ENOSPC or EIO, or drops unsynced writes as a power cut would, so the
recovery code is exercised without mocking any of the log's own parts.

Every path argument is relative to `dir_fd` when one is given (and then never followed
through a symlink where the call says so), which is how asup creates its own files.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import stat
from pathlib import Path
from typing import Protocol

PathArg = str | Path


class FileSystem(Protocol):
    def open(self, path: PathArg, flags: int, mode: int = 0o644, *, dir_fd: int | None = None) -> int: ...

    def close(self, fd: int) -> None: ...

    def write(self, fd: int, data: bytes | memoryview) -> int: ...

    def pread(self, fd: int, size: int, offset: int) -> bytes: ...

    def pwrite(self, fd: int, data: bytes, offset: int) -> int: ...

    def fsync(self, fd: int) -> None: ...

    def ftruncate(self, fd: int, size: int) -> None: ...

    def fstat(self, fd: int) -> os.stat_result: ...

    def stat(self, path: PathArg, *, dir_fd: int | None = None, follow_symlinks: bool = True) -> os.stat_result: ...

    def link(self, src: PathArg, dst: PathArg, *, src_dir_fd: int | None = None, dst_dir_fd: int | None = None) -> None:
        """A new name for `src` at `dst`; never replaces what is there (EEXIST)."""
        ...

    def replace(self, src: PathArg, dst: PathArg, *, src_dir_fd: int | None = None, dst_dir_fd: int | None = None) -> None: ...

    def unlink(self, path: PathArg, *, dir_fd: int | None = None) -> None: ...

    def listdir(self, dir_fd: int) -> list[str]: ...

    def flock(self, fd: int, operation: int) -> None: ...

    def mkdir(self, path: PathArg, mode: int = 0o755, *, dir_fd: int | None = None) -> None: ...

    def rmdir(self, path: PathArg, *, dir_fd: int | None = None) -> None: ...

    def rename_noreplace(self, src: PathArg, dst: PathArg, *, src_dir_fd: int | None = None, dst_dir_fd: int | None = None) -> None:
        """Move `src` to `dst` only if nothing is at `dst` (EEXIST otherwise): a file or a directory."""
        ...


class OsFileSystem:
    """The real thing: each call is the `os` (or `fcntl`) call of the same name."""

    def open(self, path: PathArg, flags: int, mode: int = 0o644, *, dir_fd: int | None = None) -> int:
        return os.open(path, flags | os.O_CLOEXEC, mode, dir_fd=dir_fd)

    def close(self, fd: int) -> None:
        os.close(fd)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        return os.write(fd, data)

    def pread(self, fd: int, size: int, offset: int) -> bytes:
        return os.pread(fd, size, offset)

    def pwrite(self, fd: int, data: bytes, offset: int) -> int:
        return os.pwrite(fd, data, offset)

    def fsync(self, fd: int) -> None:
        os.fsync(fd)

    def ftruncate(self, fd: int, size: int) -> None:
        os.ftruncate(fd, size)

    def fstat(self, fd: int) -> os.stat_result:
        return os.fstat(fd)

    def stat(self, path: PathArg, *, dir_fd: int | None = None, follow_symlinks: bool = True) -> os.stat_result:
        return os.stat(path, dir_fd=dir_fd, follow_symlinks=follow_symlinks)

    def link(self, src: PathArg, dst: PathArg, *, src_dir_fd: int | None = None, dst_dir_fd: int | None = None) -> None:
        os.link(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd, follow_symlinks=False)

    def replace(self, src: PathArg, dst: PathArg, *, src_dir_fd: int | None = None, dst_dir_fd: int | None = None) -> None:
        os.replace(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

    def unlink(self, path: PathArg, *, dir_fd: int | None = None) -> None:
        os.unlink(path, dir_fd=dir_fd)

    def listdir(self, dir_fd: int) -> list[str]:
        return os.listdir(dir_fd)

    def flock(self, fd: int, operation: int) -> None:
        fcntl.flock(fd, operation)

    def mkdir(self, path: PathArg, mode: int = 0o755, *, dir_fd: int | None = None) -> None:
        os.mkdir(path, mode, dir_fd=dir_fd)

    def rmdir(self, path: PathArg, *, dir_fd: int | None = None) -> None:
        os.rmdir(path, dir_fd=dir_fd)

    def rename_noreplace(self, src: PathArg, dst: PathArg, *, src_dir_fd: int | None = None, dst_dir_fd: int | None = None) -> None:
        rename_noreplace(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)


_AT_FDCWD = -100
_RENAME_NOREPLACE = 1
_libc = ctypes.CDLL(None, use_errno=True)
_renameat2 = getattr(_libc, "renameat2", None)


def rename_noreplace(src: PathArg, dst: PathArg, *, src_dir_fd: int | None = None, dst_dir_fd: int | None = None) -> None:
    """`renameat2(RENAME_NOREPLACE)`: the kernel checks and renames in one step, so nothing
    that appears at `dst` meanwhile is ever replaced. Where the kernel or filesystem lacks
    it, a regular file is moved by link + unlink (the link fails on an existing name); a
    directory then cannot be moved safely and the call fails (ENOSYS)."""
    if _renameat2 is not None:
        src_fd = _AT_FDCWD if src_dir_fd is None else src_dir_fd
        dst_fd = _AT_FDCWD if dst_dir_fd is None else dst_dir_fd
        if _renameat2(src_fd, os.fsencode(src), dst_fd, os.fsencode(dst), _RENAME_NOREPLACE) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL):
            raise OSError(err, os.strerror(err), str(src), None, str(dst))
    st = os.stat(src, dir_fd=src_dir_fd, follow_symlinks=False)
    if not stat.S_ISREG(st.st_mode):
        raise OSError(errno.ENOSYS, "no renameat2 here: only a regular file can be moved without replacing", str(src))
    os.link(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd, follow_symlinks=False)
    os.unlink(src, dir_fd=src_dir_fd)


OS: FileSystem = OsFileSystem()
