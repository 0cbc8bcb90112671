"""Following a log as it grows: read only complete records past the last one returned.

A partial last line is an append in flight (or a torn tail): it is never surfaced, only
waited for. `Tailer` is the reading half; `follow_path` polls it (the store interface's
`follow`); `asup tail` wakes it with inotify instead (replay/tail.py).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from events.chain import ChainState
from events.errors import AsupError, ErrorCode
from events.record import Record
from events.scan import Scanner

POLL_SECONDS = 0.001


class Tailer:
    """Reads what has been committed since the last call; keeps the chain across calls."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.chain = ChainState()
        self.offset = 0

    def drain(self) -> list[Record]:
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return []  # not created yet, or being replaced: wait
        if size < self.offset:
            raise AsupError(ErrorCode.CORRUPT_RECORD, f"log shrank below byte {self.offset} already read (replaced?)", file=str(self.path))
        if size == self.offset:
            return []
        scanner = Scanner(self.path, self.chain, self.offset)
        records = list(scanner)
        self.offset = scanner.valid_size
        if scanner.problem is not None and scanner.problem.kind != "torn_tail":
            raise scanner.problem.error(str(self.path))
        return records


async def follow_path(path: Path, from_seq: int = 1, poll_seconds: float = POLL_SECONDS) -> AsyncIterator[Record]:
    """Records from `from_seq` on, then each new one, checking the file every `poll_seconds`."""
    tailer = Tailer(path)
    while True:
        for record in tailer.drain():
            if record.seq >= from_seq:
                yield record
        await anyio.sleep(poll_seconds)
