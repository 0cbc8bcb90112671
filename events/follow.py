"""Following a log as it grows: read only complete records past the last one returned.

A partial last line is an append in flight (or a torn tail): it is never surfaced, only
waited for. `Tailer` is the reading half; `follow_path` polls it (the store interface's
`follow`); `asup tail` wakes it with inotify instead (replay/tail.py).

`Tailer.last(path, n, wanted)` starts near the end instead of at byte 0, as Unix `tail`
does: it reads a window before the end (growing it fourfold until `n` wanted records are
in it, or the window is the whole file), so `tail -n 1` of a 10 GB log reads kilobytes.
A window that starts mid-log cannot know the stream heads before it, so it is checked
with the segment rules of the parallel verify (`events.segments.SegmentChain`): every
record's own digest, framing and typed decode, contiguous seqs, and each stream's chain
from its first record in the window on. The window then keeps following with that chain.

Following by name (`reopen=True`, `asup tail -F`): a log that does not exist yet is
waited for, and one that is replaced (another inode at the path) or cut below what was read
(`asup log repair --force-tail`) is read again from its start, with a notice, instead of
ending the follow.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import anyio

from events.chain import ChainState
from events.errors import AsupError, ErrorCode
from events.record import Record
from events.scan import Scanner
from events.segments import SegmentChain, header_log_id, line_start

POLL_SECONDS = 0.001
FIRST_WINDOW = 64 << 10


class Tailer:
    """Reads what has been committed since the last call; keeps the chain across calls."""

    def __init__(self, path: Path, *, reopen: bool = False, notice: Callable[[str], None] | None = None) -> None:
        self.path = path
        self.chain = ChainState()
        self.offset = 0
        self.reopen = reopen
        self.notice = notice or (lambda _message: None)
        self._identity: tuple[int, int] | None = None

    @classmethod
    def last(
        cls, path: Path, n: int, wanted: Callable[[Record], bool], *, reopen: bool = False, notice: Callable[[str], None] | None = None
    ) -> tuple[Tailer, list[Record]]:
        """A tailer positioned at the end of `path`, and the last `n` records `wanted` accepts."""
        tailer = cls(path, reopen=reopen, notice=notice)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            if not tailer.reopen:
                raise
            return tailer, []
        window = FIRST_WINDOW
        while True:
            start = max(0, size - window)
            tailer._restart(start)
            found = [r for r in tailer.drain() if wanted(r)]
            if len(found) >= n or start == 0:
                return tailer, found[max(0, len(found) - n) :] if n else []
            window *= 4

    def _restart(self, start: int) -> None:
        self.offset = line_start(self.path, start) if start else 0
        log_id = header_log_id(self.path) if self.offset else None
        self.chain = SegmentChain(log_id) if log_id is not None else ChainState()
        self._identity = None

    def drain(self) -> list[Record]:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return []  # not created yet, or being replaced: wait
        identity = (st.st_dev, st.st_ino)
        if self._identity is not None and identity != self._identity and self.reopen:
            self.notice(f"{self.path} was replaced: following the new file from its start")
            self._start_over()
        if st.st_size < self.offset:
            if not self.reopen:
                raise AsupError(
                    ErrorCode.CORRUPT_RECORD,
                    f"log shrank below byte {self.offset} already read (replaced, or cut by repair --force-tail?); "
                    "follow it by name with -F",
                    file=str(self.path),
                )
            self.notice(f"{self.path} shrank below byte {self.offset}: reading it again from its start")
            self._start_over()
        self._identity = identity
        if st.st_size == self.offset:
            return []
        scanner = Scanner(self.path, self.chain, self.offset)
        records = list(scanner)
        self.offset = scanner.valid_size
        if scanner.problem is not None and scanner.problem.kind != "torn_tail":
            raise scanner.problem.error(str(self.path))
        return records

    def _start_over(self) -> None:
        self.chain = ChainState()
        self.offset = 0


async def follow_path(path: Path, from_seq: int = 1, poll_seconds: float = POLL_SECONDS) -> AsyncIterator[Record]:
    """Records from `from_seq` on, then each new one, checking the file every `poll_seconds`."""
    tailer = Tailer(path)
    while True:
        for record in tailer.drain():
            if record.seq >= from_seq:
                yield record
        await anyio.sleep(poll_seconds)
