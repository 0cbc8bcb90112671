"""The log store interface. The JSONL file (embedded default), the in-memory twin and,
later, NATS JetStream implement it and pass the same contract suite
(`events.testing.store_contract`, shipped with asup)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Protocol

import msgspec

from events.chain import Position
from events.payloads import Event
from events.record import Record


class Pending(msgspec.Struct, frozen=True, gc=False):
    """An event to append. `expected_version`: the stream's version the caller saw (None:
    any). `id`: an idempotency key; by default derived from (log, stream, version)."""

    stream: str
    event: Event
    expected_version: int | None = None
    id: str | None = None


class LogStore(Protocol):
    def append_batch(self, items: Sequence[Pending]) -> list[Position]:
        """Append all or nothing, in order; retried ids return their original position."""
        ...

    def append(self, stream: str, events: Sequence[Event], expected_version: int | None = None) -> list[Position]: ...

    def read(self, from_seq: int = 1) -> Iterator[Record]: ...

    def read_stream(self, stream: str) -> Iterator[Record]: ...

    def last_position(self) -> tuple[int, str]:
        """(last seq, its digest)."""
        ...

    def stream_version(self, stream: str) -> int: ...

    def stream_head(self, stream: str) -> tuple[int, str]:
        """(the stream's version, the digest of its last record); (0, genesis) when empty."""
        ...

    def follow(self, from_seq: int = 1) -> AsyncIterator[Record]:
        """Records from `from_seq` on, then each new one as it is committed."""
        ...

    def close(self) -> None: ...


def pending_for(stream: str, events: Sequence[Event], expected_version: int | None) -> list[Pending]:
    """One stream's events, each expecting the version its predecessor leaves."""
    if expected_version is None:
        return [Pending(stream, event) for event in events]
    return [Pending(stream, event, expected_version + i) for i, event in enumerate(events)]
