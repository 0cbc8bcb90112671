"""Small files replaced whole: the one writer every asup side file goes through.

    write_atomic(path, data, sync=True)

The bytes go to a temp file beside `path`, created new (`O_CREAT|O_EXCL|O_NOFOLLOW`,
relative to the open directory) under a name unique to this process and call, so two
processes replacing the same file never write into each other's temp file; then the temp
file is fsynced, renamed over `path` and the directory fsynced. A reader sees the old
bytes or the new ones, never a mix. `sync=False` skips both fsyncs, for caches that a
crash may lose (the head index, fold checkpoints). Every OS failure is an `AsupError`
naming `path`; the temp file is removed on the way out.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import secrets
from pathlib import Path

from events.errors import os_error

_calls = itertools.count(1)
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def temp_name(path: Path) -> str:
    """`NAME.<pid>-<n>-<random>.tmp`: unique per process and call, `.tmp` so inventories skip it."""
    return f"{path.name}.{os.getpid()}-{next(_calls)}-{secrets.token_hex(4)}.tmp"


def make_dirs(directory: Path) -> None:
    """`mkdir -p`, its failure an `AsupError` naming the directory."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise os_error(exc, "cannot create the directory", directory) from exc


def write_atomic(path: Path, data: bytes, *, sync: bool = True) -> None:
    """Replace `path` with `data` (see the module docstring)."""
    try:
        dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise os_error(exc, "cannot write", path) from exc
    try:
        _replace(dir_fd, temp_name(path), path, data, sync)
    finally:
        os.close(dir_fd)


def _replace(dir_fd: int, tmp: str, path: Path, data: bytes, sync: bool) -> None:
    try:
        fd = os.open(tmp, _CREATE, 0o644, dir_fd=dir_fd)
        try:
            write_all(fd, memoryview(data))
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        if sync:
            os.fsync(dir_fd)
    except BaseException as exc:  # Ctrl-C mid-write leaves no temp file behind either
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        if isinstance(exc, OSError):
            raise os_error(exc, "cannot write", path) from exc
        raise


def write_all(fd: int, view: memoryview) -> None:
    """Every byte of `view` to `fd` (os.write may take fewer than asked)."""
    while view:
        view = view[os.write(fd, view) :]
