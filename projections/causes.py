"""Why each failed transfer failed, in one line (`engine.causes.explain`), from the log. A
pure fold: it keeps each transfer's last observation and latest intent, so its state grows
with transfers, not events.
"""

from __future__ import annotations

from typing import Any

import msgspec

from engine.causes import explain
from events.catalog import REGISTRY
from events.observations import Intent, IntentRecorded, Observation
from events.payloads import Event, Transition
from events.record import Record
from events.vocabulary import State


class CausesState(msgspec.Struct):
    causes: dict[str, str] = msgspec.field(default_factory=dict)
    intents: dict[str, Intent] = msgspec.field(default_factory=dict)
    # each stream's last observation and its tag: typed while folding, a plain object once
    # read back from a fold checkpoint (`_observation` types it again)
    last: dict[str, tuple[str, Any]] = msgspec.field(default_factory=dict)


class Causes:
    name = "causes"
    state_type = CausesState

    def initial(self) -> CausesState:
        return CausesState()

    def apply(self, state: CausesState, record: Record) -> CausesState:
        data, stream = record.data, record.stream
        if isinstance(data, IntentRecorded):
            state.intents[stream] = data.intent
            state.causes.pop(stream, None)  # a new session's outcome is its own
        if isinstance(data, Observation):
            state.last[stream] = (record.type, data)
        elif isinstance(data, Transition) and data.to_state is State.FAILED_CLOSED and data.reason_code is not None:
            state.causes[stream] = explain(data, observation(state.last.get(stream)), state.intents.get(stream))
        return state

    def render(self, state: CausesState) -> dict[str, Any]:
        return {"causes": dict(sorted(state.causes.items()))}


def observation(last: tuple[str, Any] | None) -> Event | None:
    if last is None:
        return None
    tag, obs = last
    return obs if isinstance(obs, Observation) else msgspec.convert(obs, REGISTRY[tag])
