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

import fcntl
import os
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


OS: FileSystem = OsFileSystem()
