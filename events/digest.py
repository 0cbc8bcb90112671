"""BLAKE3 digests, written `blake3:<64 hex>` everywhere."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import BinaryIO

from blake3 import blake3

from events.errors import AsupError, ErrorCode, os_error

PREFIX = "blake3:"
ZERO = PREFIX + "0" * 64


def digest_bytes(data: bytes | bytearray | memoryview) -> str:
    return PREFIX + blake3(data).hexdigest()


def digest_file(path: Path, chunk: int = 1 << 20) -> str:
    """The digest of the regular file at `path`, never read through a symlink or from a FIFO,
    directory or device: those are a usage error naming the file, any other failure io_failed."""
    hasher = blake3()
    try:
        with open_regular(path) as fh:
            while block := fh.read(chunk):
                hasher.update(block)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EINVAL):
            why = "refusing to read a symlink, directory or special file as a digest's source; remove it"
            raise AsupError(ErrorCode.USAGE, why, file=str(path)) from exc
        raise os_error(exc, "cannot read", path) from exc
    return PREFIX + hasher.hexdigest()


def open_regular(path: Path, *, follow: bool = False) -> BinaryIO:
    """`path` opened for reading if it is a regular file, without blocking on a FIFO and, unless
    `follow` (a log the operator named may be an alias), not through a final symlink; else
    `OSError` (ELOOP for a link, EINVAL for a directory or special file)."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", str(path))
    return os.fdopen(fd, "rb")
