"""Contract violations a log can show, found by re-checking it: a state change out of a
terminal state, and a capability accepted that the matrix forbids (negotiation re-run
against today's matrix with the offers the log recorded)."""

from __future__ import annotations

from typing import Any

import msgspec

from engine.contracts import AdapterProfile, Offer, default_matrix
from engine.negotiation import negotiate
from engine.rules import default_rules
from events.observations import CapabilityNegotiated, Intent, IntentRecorded
from events.payloads import Transition
from events.record import Record

_RULES = default_rules()


class ViolationsState(msgspec.Struct):
    terminal_exits: list[dict[str, Any]] = msgspec.field(default_factory=list)
    forbidden_accepts: list[dict[str, Any]] = msgspec.field(default_factory=list)
    intents: dict[str, Intent] = msgspec.field(default_factory=dict)


class Violations:
    name = "violations"
    state_type = ViolationsState

    def initial(self) -> ViolationsState:
        return ViolationsState()

    def apply(self, state: ViolationsState, record: Record) -> ViolationsState:
        data = record.data
        if isinstance(data, Transition):
            if _RULES.leaves_terminal(data.from_state, data.trigger):
                state.terminal_exits.append(
                    {
                        "seq": record.seq,
                        "transfer_id": data.transfer_id,
                        "from_state": data.from_state.value,
                        "to_state": data.to_state.value,
                    }
                )
        elif isinstance(data, IntentRecorded):
            state.intents[record.stream] = data.intent
        elif isinstance(data, CapabilityNegotiated) and data.outcome == "accepted" and record.stream in state.intents:
            recheck = _renegotiate(state.intents[record.stream], data)
            if recheck.outcome != "accepted":
                state.forbidden_accepts.append({"seq": record.seq, "transfer_id": record.stream, "detail": "; ".join(recheck.detail)})
        return state

    def render(self, state: ViolationsState) -> dict[str, Any]:
        return {"terminal_exits": state.terminal_exits, "forbidden_accepts": state.forbidden_accepts}


def _renegotiate(intent: Intent, recorded: CapabilityNegotiated) -> CapabilityNegotiated:
    offers = {pid: Offer(o.version, dict(o.params)) for pid, o in recorded.offered.items() if o is not None}
    profile = AdapterProfile(name=intent.adapter, description="as recorded", primitives=offers)
    return negotiate(msgspec.structs.replace(intent, requested=recorded.requested), default_matrix(), profile)
