"""Replay traces: per transfer, its ordered transitions and observations with their seq.
One JSON object per line, canonical; the replay of a log writes the same rows."""

from __future__ import annotations

from typing import Any

import msgspec

from events.payloads import LOG_EVENTS
from events.record import Record
from projections.base import canonical_json


def trace_row(record: Record) -> dict[str, Any]:
    return {"seq": record.seq, "stream": record.stream, "sv": record.sv, "type": record.type, "data": msgspec.to_builtins(record.data)}


class TracesState(msgspec.Struct):
    rows: dict[str, list[bytes]] = msgspec.field(default_factory=dict)  # stream -> canonical lines


class Traces:
    name = "traces"
    state_type = TracesState

    def initial(self) -> TracesState:
        return TracesState()

    def apply(self, state: TracesState, record: Record) -> TracesState:
        if not isinstance(record.data, LOG_EVENTS):
            state.rows.setdefault(record.stream, []).append(canonical_json(trace_row(record)))
        return state

    def render(self, state: TracesState) -> dict[str, Any]:
        return {"transfers": {s: len(r) for s, r in sorted(state.rows.items())}}

    def lines(self, state: TracesState, transfer: str | None = None) -> list[bytes]:
        """The trace file: transfers in id order, each transfer's rows in log order."""
        return [line for stream, rows in sorted(state.rows.items()) if transfer in (None, stream) for line in rows]
