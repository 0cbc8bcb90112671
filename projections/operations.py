"""The operations log folded: the latest verdict of each gate, every seal in order, every
sidecar written (and the latest), the latest scrub and sign-off, and every decode proof.
Each entry keeps the seq and digest of the record that decided it, so checklist items can
cite their evidence. `vouched` and `proof_events` are what scrub and the checklist judge a
sidecar by: the digests the log vouches for, and the decode proofs that count."""

from __future__ import annotations

from typing import Any, Generic, TypeVar

import msgspec

from engine.scrub import Vouched
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
    sidecars: list[Cited[SidecarWritten]] = msgspec.field(default_factory=list)
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
                state.sidecars.append(state.sidecar)
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

    @staticmethod
    def vouched(state: OpsState, pack: str) -> Vouched:
        """The digests vouched for the pack at `pack` (relative to the root). Where a pack
        was ever sealed, only seals count; for any other file, a seal or a sidecar_written
        event of its digest (the operator encoded it) does."""
        seals = {c.data.digest: c.seq for c in state.seals}
        if any(c.data.pack == pack for c in state.seals):
            return Vouched(seals, "seal")
        vouched = {c.data.pack_digest: c.seq for c in state.sidecars if c.data.pack == pack}
        for digest, seq in seals.items():
            vouched[digest] = max(seq, vouched.get(digest, 0))
        return Vouched(vouched, "seal or sidecar_written")

    @staticmethod
    def proof_events(state: OpsState, sidecar: str) -> dict[int, DecodeProofRecorded]:
        """The decode_proof events of the sidecar at `sidecar` since it was last written, by seq."""
        since = max((c.seq for c in state.sidecars if c.data.sidecar == sidecar), default=0)
        return {c.seq: c.data for c in state.proofs if c.data.sidecar == sidecar and c.seq > since}
