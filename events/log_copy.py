"""A log's lines copied to a new file (`asup log export`), and a file's lines read for
`asup log import`.

The export is a file asup creates: `O_CREAT|O_EXCL|O_NOFOLLOW` in its directory's fd, so
whatever is already at the name (a file, a link, anything) is refused and never replaced;
it is fsynced, then its directory. On any failure before it is complete and checked — a
write error, a record that does not verify, Ctrl-C — the partial file is removed, and only
when the name still holds the very file created here (one link, same inode).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from events.atomic import open_dir, write_all
from events.digest import open_regular
from events.errors import AsupError, ErrorCode, os_error
from events.fs import OS, FileSystem

T = TypeVar("T")

_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
_BUFFER = 1 << 20  # lines gathered per write: one syscall per MiB, not per record


def write_new(out: Path, lines: Iterable[bytes], check: Callable[[Path, int], T], fs: FileSystem = OS) -> T:
    """Write `lines` (each without its newline) to the new file `out`, durably; what
    `check(out, lines written)` says of it. Anything already at `out` is a usage error."""
    dir_fd = open_dir(out.parent, fs, for_path=out)
    try:
        fd = _create(dir_fd, out, fs)
        try:
            count = _fill(fd, lines, fs, out)
            _sync(fs, fd, out)
            _sync(fs, dir_fd, out)
            checked = check(out, count)
        except BaseException:
            _remove_ours(dir_fd, out, fd, fs)
            raise
        finally:
            fs.close(fd)
        return checked
    finally:
        fs.close(dir_fd)


def _create(dir_fd: int, out: Path, fs: FileSystem) -> int:
    try:
        return fs.open(out.name, _NEW, 0o644, dir_fd=dir_fd)
    except FileExistsError as exc:
        raise AsupError(ErrorCode.USAGE, "already exists: the copy is written to a new file, never over one", file=str(out)) from exc
    except OSError as exc:
        raise os_error(exc, "cannot create", out) from exc


def _fill(fd: int, lines: Iterable[bytes], fs: FileSystem, out: Path) -> int:
    buffer = bytearray()
    count = 0
    try:
        for line in lines:
            buffer += line
            buffer += b"\n"
            count += 1
            if len(buffer) >= _BUFFER:
                write_all(fd, memoryview(buffer), fs)
                buffer.clear()
        write_all(fd, memoryview(buffer), fs)
    except OSError as exc:
        raise os_error(exc, "cannot write", out) from exc
    return count


def _sync(fs: FileSystem, fd: int, out: Path) -> None:
    try:
        fs.fsync(fd)
    except OSError as exc:
        raise os_error(exc, "cannot fsync", out) from exc


def _remove_ours(dir_fd: int, out: Path, fd: int, fs: FileSystem) -> None:
    """Unlink `out` if it is still the file `fd` created (not something put there since)."""
    try:
        mine = fs.fstat(fd)
        there = fs.stat(out.name, dir_fd=dir_fd, follow_symlinks=False)
        if stat.S_ISREG(there.st_mode) and there.st_nlink == 1 and (there.st_dev, there.st_ino) == (mine.st_dev, mine.st_ino):
            fs.unlink(out.name, dir_fd=dir_fd)
    except OSError:
        pass  # the first failure is the one reported


def file_lines(path: Path) -> Iterator[bytes]:
    """The complete lines of the log file `path`, without their newlines (an unterminated
    last line is not a record: it is left out)."""
    try:
        with open_regular(path, follow=True) as fh:
            for line in fh:
                if not line.endswith(b"\n"):
                    return
                yield line[:-1]
    except OSError as exc:
        raise os_error(exc, "cannot read", path) from exc
