"""The writer lock: an exclusive `flock` on the log file itself, held per batch.

The lock is taken on the log's own open file, so it names the inode: a symlink or
hardlink alias of a log is the same log, and there is no lock file to delete. flock (not
fcntl record locks) because closing any other descriptor of the file in the same process
must not drop it; the kernel frees it when the holder dies. A filesystem whose locks
cannot be trusted across machines (NFS, SMB) is refused.
"""

from __future__ import annotations

import fcntl
import os
import time
from contextvars import ContextVar
from pathlib import Path

from events.errors import AsupError, ErrorCode, os_error
from events.fs import OS, FileSystem

DEFAULT_TIMEOUT = 30.0  # seconds: ordinary concurrent use never sees `log_locked`
UNTRUSTED_LOCKS = frozenset({"nfs", "nfs4", "cifs", "smb3", "smbfs", "afs", "9p", "fuse.sshfs", "ncpfs"})
_POLL_FIRST, _POLL_MAX = 0.0002, 0.005  # short polls: a writer waiting on busy peers is not starved for long
_timeout: ContextVar[float] = ContextVar("asup_lock_timeout", default=DEFAULT_TIMEOUT)


def default_timeout() -> float:
    """The lock timeout a writer opened without one uses (a command's `--lock-timeout`)."""
    return _timeout.get()


def set_default_timeout(seconds: float) -> None:
    _timeout.set(seconds)


def acquire(fd: int, path: Path, timeout: float, fs: FileSystem = OS) -> None:
    """Take the lock on the log open at `fd`, waiting up to `timeout` seconds."""
    deadline = time.monotonic() + timeout
    pause = _POLL_FIRST
    while True:
        try:
            fs.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                raise AsupError(
                    ErrorCode.LOG_LOCKED,
                    f"another writer held the log for more than {timeout:g} s; wait for it or pass a longer --lock-timeout",
                    file=str(path),
                ) from None
            time.sleep(pause)
            pause = min(pause * 2, _POLL_MAX)
        except OSError as exc:
            raise os_error(exc, "cannot take the writer lock", path) from exc


def release(fd: int, fs: FileSystem = OS) -> None:
    fs.flock(fd, fcntl.LOCK_UN)


def is_locked(log_path: Path) -> bool:
    """True when some writer holds the log right now (for verify's diagnosis)."""
    try:
        fd = os.open(log_path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def filesystem_type(st_dev: int, mountinfo: str | None = None) -> str | None:
    """The type of the filesystem holding device `st_dev` (from /proc/self/mountinfo)."""
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text(errors="replace")
        except OSError:
            return None
    wanted = f"{os.major(st_dev)}:{os.minor(st_dev)}"
    for line in mountinfo.splitlines():
        fields = line.split()
        if len(fields) > 3 and fields[2] == wanted and " - " in line:
            return line.split(" - ", 1)[1].split()[0]
    return None


def refuse_untrusted(fd: int, path: Path, fs: FileSystem = OS, mountinfo: str | None = None) -> None:
    """Raise when the file open at `fd` lives on a filesystem whose locks asup cannot trust."""
    kind = filesystem_type(fs.fstat(fd).st_dev, mountinfo)
    if kind in UNTRUSTED_LOCKS:
        raise AsupError(
            ErrorCode.USAGE,
            f"the log is on {kind}, whose file locks asup cannot trust across machines; keep logs on a local disk (or use a JetStream log)",
            file=str(path),
        )
