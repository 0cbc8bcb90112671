"""What a test of code that writes or reads a log needs, shipped beside the code (as
`structlog.testing` is) so a second log store, or a project built on asup, tests against
the same helpers:

- `MemoryLog`: the in-memory twin of the JSONL log (the same bytes, no file);
- `StepClock`: a deterministic clock to inject, so records and their digests repeat;
- `transition`, `tags`, `close_iterator`: small builders and readers for log tests;
- `FaultyFS`: the file system seam that fails at call N, writes short, or cuts the
  power (`events.testing.faulty_fs`); `PowerCut` is what its calls raise after a cut;
- `events.testing.store_contract.StoreContract`: the contract every log store passes
  (that module needs pytest; this one does not).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator

from events.clock import Clock, StepClock
from events.memory_log import MemoryLog
from events.payloads import Transition
from events.record import Record
from events.testing.faulty_fs import FaultyFS, PowerCut
from events.vocabulary import State, Trigger

__all__ = ["Clock", "FaultyFS", "MemoryLog", "PowerCut", "StepClock", "close_iterator", "tags", "transition"]


def transition(tag: str, cursor: int = 0) -> Transition:
    """A distinct, valid transition payload; `tag` becomes its transfer id."""
    return Transition(
        transfer_id=tag,
        from_state=State.SYNCING,
        trigger=Trigger.CHUNK_COMMITTED,
        to_state=State.SYNCING,
        attempt=1,
        committed_cursor=cursor,
    )


def tags(records: list[Record]) -> list[str]:
    """The transfer ids of the transition records, in log order."""
    return [r.data.transfer_id for r in records if isinstance(r.data, Transition)]


async def close_iterator(iterator: AsyncIterator[Record]) -> None:
    """Close a follow() iterator (an async generator) so it leaves no pending task."""
    if isinstance(iterator, AsyncGenerator):
        await iterator.aclose()
