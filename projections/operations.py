"""The operations log folded: the latest verdict of each gate, every seal in order, the
latest sidecar, scrub and sign-off, and every decode proof. Each entry keeps the seq and
digest of the record that decided it, so checklist items can cite their evidence."""

from __future__ import annotations

from typing import Any

import msgspec

from events.operations import DecodeProofRecorded, EvidenceSealed, GateFinished, ScrubFinished, SidecarWritten, SignoffRecorded
from events.record import Record


class Cited(msgspec.Struct):
    seq: int
    h: str
    data: dict[str, Any]


class OpsState(msgspec.Struct):
    gates: dict[str, Cited] = msgspec.field(default_factory=dict)
    seals: list[Cited] = msgspec.field(default_factory=list)
    sidecar: Cited | None = None
    scrub: Cited | None = None
    proofs: list[Cited] = msgspec.field(default_factory=list)
    signoff: Cited | None = None


class Operations:
    name = "operations"
    state_type = OpsState

    def initial(self) -> OpsState:
        return OpsState()

    def apply(self, state: OpsState, record: Record) -> OpsState:
        data = record.data
        if not isinstance(data, GateFinished | EvidenceSealed | SidecarWritten | ScrubFinished | DecodeProofRecorded | SignoffRecorded):
            return state
        cited = Cited(record.seq, record.h, msgspec.to_builtins(data))
        match data:
            case GateFinished(gate=gate):
                state.gates[gate] = cited
            case EvidenceSealed():
                state.seals.append(cited)
            case SidecarWritten():
                state.sidecar = cited
            case ScrubFinished():
                state.scrub = cited
            case DecodeProofRecorded():
                state.proofs.append(cited)
            case SignoffRecorded():
                state.signoff = cited
        return state

    def render(self, state: OpsState) -> dict[str, Any]:
        return msgspec.to_builtins(state)  # type: ignore[no-any-return]

    @staticmethod
    def seal_digests(state: OpsState, after_seq: int = 0) -> set[str]:
        return {c.data["digest"] for c in state.seals if c.seq > after_seq}
