"""Latency per operation: the time from one observation of a transfer to the next,
keyed by the operation the later one completes (e.g. `chunk_written`), plus whole
transfers (intent to terminal transition). Exact p50/p95/p99 over all samples; see
`percentile` for the interpolation. Times come from the events' injected-clock
readings, never from the wall clock."""

from __future__ import annotations

from typing import Any

import msgspec

from engine.rules import default_rules
from events.observations import IntentRecorded, Observation
from events.payloads import Transition
from events.record import Record
from projections.base import percentile

_TERMINAL = default_rules().terminal


class MetricsState(msgspec.Struct):
    samples: dict[str, list[float]] = msgspec.field(default_factory=dict)  # operation -> ms
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
        for operation, samples in sorted(state.samples.items()):
            ordered = sorted(samples)
            operations[operation] = {
                "count": len(ordered),
                "p50_ms": round(percentile(ordered, 50), 6),
                "p95_ms": round(percentile(ordered, 95), 6),
                "p99_ms": round(percentile(ordered, 99), 6),
                "max_ms": round(ordered[-1], 6),
            }
        return {"operations": operations, "interpolation": "linear between closest ranks (numpy default, type 7)"}


def _add(state: MetricsState, operation: str, ms: float) -> None:
    state.samples.setdefault(operation, []).append(ms)
