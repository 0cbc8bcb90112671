"""BLAKE3 digests, written `blake3:<64 hex>` everywhere."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

from blake3 import blake3

PREFIX = "blake3:"
ZERO = PREFIX + "0" * 64


def digest_bytes(data: bytes | bytearray | memoryview) -> str:
    return PREFIX + blake3(data).hexdigest()


def digest_file(path: Path, chunk: int = 1 << 20) -> str:
    """The digest of the regular file at `path`, never read through a symlink or from a FIFO
    or device (`OSError` ELOOP, or `IsADirectoryError`-like `OSError` for anything else)."""
    hasher = blake3()
    with open_regular(path) as fh:
        while block := fh.read(chunk):
            hasher.update(block)
    return PREFIX + hasher.hexdigest()


def open_regular(path: Path) -> BinaryIO:
    """`path` opened for reading if it is a regular file, not through a final symlink and
    without blocking on a FIFO; else `OSError` (ELOOP for a link, EINVAL for a special file)."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    return os.fdopen(fd, "rb")
