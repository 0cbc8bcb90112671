"""The in-memory twin of the JSONL log: the same bytes, no file. For tests and for
callers that want a log they can throw away."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Iterator, Sequence

import anyio

from events.batch import plan
from events.chain import DEFAULT_ID_WINDOW, ChainHeads, ChainState, Position
from events.clock import Clock, SystemClock, format_ts
from events.payloads import Event, LogCreated
from events.record import HEADER_STREAM, LOG_SCHEMA, Record
from events.scan import Scanner, line_at
from events.store import Pending, pending_for


class MemoryLog(ChainHeads):
    def __init__(self, log_id: str = "memory", *, clock: Clock | None = None, id_window: int = DEFAULT_ID_WINDOW) -> None:
        self._chain = ChainState(id_window)
        self._chain.log_id = log_id
        self._clock = clock or SystemClock()
        self.data = bytearray()
        self._waiters: list[anyio.Event] = []
        self._appends = 0
        self._append([Pending(HEADER_STREAM, LogCreated(log_id=log_id, schema=LOG_SCHEMA))])

    def append_batch(self, items: Sequence[Pending]) -> list[Position]:
        return self._append(items)

    def append(self, stream: str, events: Sequence[Event], expected_version: int | None = None) -> list[Position]:
        return self._append(pending_for(stream, events, expected_version))

    def read(self, from_seq: int = 1) -> Iterator[Record]:
        return (record for record in self._scan(0, ChainState()) if record.seq >= from_seq)

    def read_stream(self, stream: str) -> Iterator[Record]:
        return (record for record in self.read() if record.stream == stream)

    async def follow(self, from_seq: int = 1) -> AsyncIterator[Record]:
        chain = ChainState()
        offset = 0
        while True:
            seen = self._appends
            scanner = self._scan(offset, chain)
            for record in scanner:
                if record.seq >= from_seq:
                    yield record  # the consumer may append while holding this record
            offset = scanner.valid_size
            if self._appends != seen:
                continue
            waiter = anyio.Event()  # registered with no await since the count check: no append is missed
            self._waiters.append(waiter)
            await waiter.wait()

    def close(self) -> None:
        """Nothing to release: the bytes stay readable in `data`."""

    def _scan(self, offset: int, chain: ChainState) -> Scanner:
        snapshot = bytes(self.data)
        return Scanner(lambda: io.BytesIO(snapshot), chain, offset)

    def _append(self, items: Sequence[Pending]) -> list[Position]:
        batch = plan(self._chain, items, format_ts(self._clock.now_ns()), lambda offset: line_at(io.BytesIO(self.data), offset))
        if batch.data:
            start = len(self.data)
            self.data += batch.data
            self._appends += 1
            batch.commit(self._chain, start)
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.set()
        return batch.positions
