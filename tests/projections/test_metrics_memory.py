"""The status read model's latency state grows with transfers, not with events."""

from __future__ import annotations

import random
import tracemalloc

from events.clock import StepClock
from events.memory_log import MemoryLog
from events.observations import ChunkWritten, IntentRecorded
from events.record import Record
from projections.metrics import Metrics, MetricsState
from tests.projections.helpers import intent

TRANSFERS = 10


def timed_records(chunks: int) -> list[Record]:
    """TRANSFERS transfers of `chunks` chunks each, gaps of 1-50 ms (seeded): many samples per operation."""
    rng = random.Random(7)
    log = MemoryLog("timed", clock=StepClock())
    for number in range(TRANSFERS):
        stream = f"t-{number}"
        at = 0
        log.append(stream, [IntentRecorded(intent=intent(stream), at_ns=at)])
        for chunk in range(chunks):
            at += rng.randint(1, 50) * 1_000_000
            log.append(stream, [ChunkWritten(chunk=chunk, offset=0, length=1, digest="d", committed=1, epoch="e", at_ns=at)])
    return list(log.read())


def retained(folded: list[Record]) -> tuple[int, MetricsState]:
    """Bytes still allocated by a fold's state once the fold is done (tracemalloc), and the state."""
    metrics = Metrics()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        state = metrics.initial()
        for record in folded:
            state = metrics.apply(state, record)
        return tracemalloc.get_traced_memory()[0] - before, state
    finally:
        tracemalloc.stop()


def test_ten_times_the_events_per_transfer_keep_status_memory() -> None:
    """The same 10 transfers with 10x the chunks each (300 -> 3,000 latency samples) retain no more fold state."""
    small, small_state = retained(timed_records(30))
    large, large_state = retained(timed_records(300))
    counts = [Metrics().render(s)["operations"]["chunk_written"]["count"] for s in (small_state, large_state)]
    assert counts == [TRANSFERS * 30, TRANSFERS * 300]  # the samples are there: a flat figure means something
    assert large <= small * 1.05 + 1024, f"{small} bytes for 300 samples, {large} bytes for 3,000"
