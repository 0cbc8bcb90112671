"""One writer per log: an exclusive `flock` on a `.lock` file beside it.

flock (not fcntl record locks) because closing any other descriptor of the file in the
same process must not drop the lock; the kernel frees it when the holder dies.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from events.errors import AsupError, ErrorCode, os_error


class WriterLock:
    def __init__(self, log_path: Path) -> None:
        self.path = log_path.with_name(log_path.name + ".lock")
        self._fd: int | None = None

    def acquire(self, timeout: float = 0.0) -> None:
        """Take the lock, waiting up to `timeout` seconds; raises `log_locked` after."""
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise os_error(exc, "cannot open the lock file", self.path) from exc
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
                    os.close(fd)
                    raise AsupError(
                        ErrorCode.LOG_LOCKED,
                        f"another writer (pid {holder}) holds the log; wait for it or pass a lock timeout",
                        file=str(self.path.with_suffix("")),
                    ) from None
                time.sleep(0.01)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def is_locked(log_path: Path) -> bool:
    """True when some writer holds the log right now (for verify's diagnosis)."""
    path = log_path.with_name(log_path.name + ".lock")
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
