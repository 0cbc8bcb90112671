"""The audit trail: every fail-closed transition, with the observation that caused it
(the stream's record just before it) as evidence, and the reason-code summary."""

from __future__ import annotations

from typing import Any

import msgspec

from events.payloads import Transition
from events.record import Record
from events.vocabulary import ReasonCode, State, Trigger
from projections.runbook_map import LEVEL, SECTION


class AuditEntry(msgspec.Struct):
    seq: int
    transfer_id: str
    from_state: State
    trigger: Trigger
    reason_code: ReasonCode
    evidence_seq: int
    evidence_type: str
    evidence_digest: str  # h of the evidence record


class AuditState(msgspec.Struct):
    entries: list[AuditEntry] = msgspec.field(default_factory=list)
    last: dict[str, tuple[int, str, str]] = msgspec.field(default_factory=dict)  # stream -> (seq, type, h) of its last observation


class Audit:
    name = "audit"
    state_type = AuditState

    def initial(self) -> AuditState:
        return AuditState()

    def apply(self, state: AuditState, record: Record) -> AuditState:
        data = record.data
        if not isinstance(data, Transition):
            state.last[record.stream] = (record.seq, record.type, record.h)
            return state
        if data.to_state is State.FAILED_CLOSED and data.reason_code is not None:
            seq, kind, digest = state.last.get(record.stream, (0, "", ""))
            state.entries.append(
                AuditEntry(record.seq, data.transfer_id, data.from_state, data.trigger, data.reason_code, seq, kind, digest)
            )
        return state

    def render(self, state: AuditState) -> dict[str, Any]:
        summary: dict[str, dict[str, Any]] = {}
        for entry in state.entries:
            code = entry.reason_code
            # keyed by the value: orjson takes only exact str keys
            row = summary.setdefault(code.value, {"count": 0, "section": SECTION[code], "level": LEVEL[code], "transfers": []})
            row["count"] += 1
            row["transfers"].append(entry.transfer_id)
        return {"fail_closed": [msgspec.to_builtins(e) for e in state.entries], "reason_codes": dict(sorted(summary.items()))}
