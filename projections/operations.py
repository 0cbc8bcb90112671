"""The operations log folded: the latest verdict of each gate, every seal in order, the
latest sidecar, scrub and sign-off, and every decode proof. Each entry keeps the seq and
digest of the record that decided it, so checklist items can cite their evidence."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec

from events.operations import DecodeProofRecorded, EvidenceSealed, GateFinished, ScrubFinished, SidecarWritten, SignoffRecorded
from events.payloads import Event
from events.record import Record

E_co = TypeVar("E_co", bound=Event, covariant=True)


class Cited(msgspec.Struct, Generic[E_co], frozen=True):
    """An event with the seq and digest of its record. The event stays typed, so every
    field a view reads is checked; it encodes as the event's fields, as it always has."""

    seq: int
    h: str
    data: E_co


class OpsState(msgspec.Struct):
    gates: dict[str, Cited[GateFinished]] = msgspec.field(default_factory=dict)
    seals: list[Cited[EvidenceSealed]] = msgspec.field(default_factory=list)
    sidecar: Cited[SidecarWritten] | None = None
    scrub: Cited[ScrubFinished] | None = None
    proofs: list[Cited[DecodeProofRecorded]] = msgspec.field(default_factory=list)
    signoff: Cited[SignoffRecorded] | None = None


class Operations:
    name = "operations"
    state_type = OpsState

    def initial(self) -> OpsState:
        return OpsState()

    def apply(self, state: OpsState, record: Record) -> OpsState:
        seq, h = record.seq, record.h
        match record.data:
            case GateFinished() as data:
                state.gates[data.gate] = Cited(seq, h, data)
            case EvidenceSealed() as data:
                state.seals.append(Cited(seq, h, data))
            case SidecarWritten() as data:
                state.sidecar = Cited(seq, h, data)
            case ScrubFinished() as data:
                state.scrub = Cited(seq, h, data)
            case DecodeProofRecorded() as data:
                state.proofs.append(Cited(seq, h, data))
            case SignoffRecorded() as data:
                state.signoff = Cited(seq, h, data)
        return state

    def render(self, state: OpsState) -> dict[str, Any]:
        return msgspec.to_builtins(state)  # type: ignore[no-any-return]

    @staticmethod
    def seal_digests(state: OpsState, after_seq: int = 0) -> set[str]:
        return {c.data.digest for c in state.seals if c.seq > after_seq}
