"""Latency per operation: the time from one observation of a transfer to the next,
keyed by the operation the later one completes (e.g. `chunk_written`), plus whole
transfers (intent to terminal transition). Times come from the events' injected-clock
readings, never from the wall clock.

p50/p95/p99 come from a DDSketch per operation (relative accuracy 1 %): linear between
closest ranks (type 7, as `base.percentile`), where each of the two order statistics is the
sketch's estimate, within 1 % of the sample and clamped to the exact min and max; so each
percentile is within 1 % of the exact one. The fold keeps the sketch's bins (bin key -> count), not the samples, so its
memory grows with the value range (about 115 bins a decade) and the number of transfers
(`last_at`), never with the number of events. The performance gate keeps exact
percentiles over its own samples (`projections.base.percentile`)."""

from __future__ import annotations

from typing import Any

import msgspec
from ddsketch.mapping import LogarithmicMapping
from ddsketch.store import DenseStore

from engine.rules import default_rules
from events.observations import IntentRecorded, Observation
from events.payloads import Transition
from events.record import Record

_TERMINAL = default_rules().terminal
RELATIVE_ACCURACY = 0.01
_MAPPING = LogarithmicMapping(RELATIVE_ACCURACY)
QUANTILES = "DDSketch, within 1 % relative of linear between closest ranks (numpy default, type 7)"


class Sketch(msgspec.Struct):
    """One operation's DDSketch content in a form a fold checkpoint can encode: the
    library's bin keys (`LogarithmicMapping.key`) with their counts."""

    count: int = 0
    zeros: int = 0  # samples too small for a bin (0 ms, or negative)
    min: float = 0.0
    max: float = 0.0
    bins: dict[int, int] = msgspec.field(default_factory=dict)

    def add(self, ms: float) -> None:
        if not self.count or ms < self.min:
            self.min = ms
        if not self.count or ms > self.max:
            self.max = ms
        self.count += 1
        if ms > _MAPPING.min_possible:
            key = _MAPPING.key(ms)
            self.bins[key] = self.bins.get(key, 0) + 1
        else:
            self.zeros += 1

    def quantiles(self, *qs: float) -> list[float]:
        """Type 7 as `base.percentile`, interpolated between two order statistics that the
        library's store finds by rank, each within the relative accuracy of the sample."""
        store = DenseStore()
        for key, count in sorted(self.bins.items()):  # sorted: the same bins, the same store
            store.add(key, count)
        out = []
        for q in qs:
            rank = q / 100 * (self.count - 1)
            low = int(rank)
            high = min(low + 1, self.count - 1)
            below, above = self._order_statistic(store, low), self._order_statistic(store, high)
            out.append(below + (above - below) * (rank - low))
        return out

    def _order_statistic(self, store: DenseStore, rank: int) -> float:
        value = 0.0 if rank < self.zeros else _MAPPING.value(store.key_at_rank(rank - self.zeros))
        return min(max(value, self.min), self.max)  # the exact extremes bound every estimate


class MetricsState(msgspec.Struct):
    sketches: dict[str, Sketch] = msgspec.field(default_factory=dict)  # operation -> ms
    last_at: dict[str, int] = msgspec.field(default_factory=dict)  # stream -> at_ns of its last observation
    started_at: dict[str, int] = msgspec.field(default_factory=dict)


class Metrics:
    name = "metrics"
    state_type = MetricsState

    def initial(self) -> MetricsState:
        return MetricsState()

    def apply(self, state: MetricsState, record: Record) -> MetricsState:
        data = record.data
        stream = record.stream
        kind = type(data)
        if kind is Transition:
            assert isinstance(data, Transition)
            if data.to_state in _TERMINAL and stream in state.started_at:
                _add(state, f"transfer_{data.to_state.value}", data.duration_ms)
                del state.started_at[stream]
        elif isinstance(data, Observation):
            if kind is IntentRecorded:
                state.started_at[stream] = data.at_ns
            elif stream in state.last_at:
                _add(state, record.type, (data.at_ns - state.last_at[stream]) / 1e6)
            state.last_at[stream] = data.at_ns
        return state

    def render(self, state: MetricsState) -> dict[str, Any]:
        operations = {}
        for operation, sketch in sorted(state.sketches.items()):
            p50, p95, p99 = sketch.quantiles(50, 95, 99)
            operations[operation] = {
                "count": sketch.count,
                "p50_ms": round(p50, 6),
                "p95_ms": round(p95, 6),
                "p99_ms": round(p99, 6),
                "max_ms": round(sketch.max, 6),
            }
        return {"operations": operations, "quantiles": QUANTILES}


def _add(state: MetricsState, operation: str, ms: float) -> None:
    sketch = state.sketches.get(operation)
    if sketch is None:
        sketch = state.sketches[operation] = Sketch()
    sketch.add(ms)
