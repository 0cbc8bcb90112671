"""How the adapter appends: awaitable, so many transfers can share one log writer.

`DirectAppender` commits each call at once (one transfer, or tests). `GroupCommitter`
queues calls from many tasks and commits what has gathered as one batch (one write, one
fsync) in a worker thread, so transfers keep working while the disk syncs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import anyio
import anyio.to_thread

from events.chain import Position
from events.errors import AsupError
from events.store import LogStore, Pending


class Appender(Protocol):
    async def append(self, items: Sequence[Pending]) -> list[Position]: ...

    def stream_head(self, stream: str) -> tuple[int, str]: ...


class DirectAppender:
    def __init__(self, log: LogStore) -> None:
        self.log = log

    async def append(self, items: Sequence[Pending]) -> list[Position]:
        return self.log.append_batch(items)

    def stream_head(self, stream: str) -> tuple[int, str]:
        return self.log.stream_head(stream)


class _Slot:
    def __init__(self, items: Sequence[Pending]) -> None:
        self.items = items
        self.done = anyio.Event()
        self.positions: list[Position] = []
        self.error: AsupError | None = None


class GroupCommitter:
    """Run `serve()` in a task group; `append` from any task of the same event loop."""

    def __init__(self, log: LogStore) -> None:
        self.log = log
        self._queue: list[_Slot] = []
        self._wake = anyio.Event()
        self.batches = 0

    async def append(self, items: Sequence[Pending]) -> list[Position]:
        slot = _Slot(items)
        self._queue.append(slot)
        self._wake.set()
        await slot.done.wait()
        if slot.error is not None:
            raise slot.error
        return slot.positions

    def stream_head(self, stream: str) -> tuple[int, str]:
        return self.log.stream_head(stream)

    async def serve(self) -> None:
        """Commit gathered slots until cancelled; a cancel lets the batch in flight finish."""
        while True:
            await self._wake.wait()
            self._wake = anyio.Event()
            slots, self._queue = self._queue, []
            if slots:
                await anyio.to_thread.run_sync(self._commit, slots)
                for slot in slots:
                    slot.done.set()

    def _commit(self, slots: list[_Slot]) -> None:
        self.batches += 1
        try:
            positions = self.log.append_batch([item for slot in slots for item in slot.items])
        except AsupError:
            for slot in slots:  # one slot's stale expectation must not fail the others
                try:
                    slot.positions = self.log.append_batch(slot.items)
                except AsupError as error:
                    slot.error = error
            return
        start = 0
        for slot in slots:
            slot.positions = positions[start : start + len(slot.items)]
            start += len(slot.items)
