"""Operations events: what the runbook's tooling did (gates, evidence, sidecars, scrubs,
decode proofs, sign-off). They live in the operations log
(`artifacts/asupersync/v1/asupersync_ops_events_v1.jsonl`), stream per subject."""

from __future__ import annotations

import msgspec

from events.payloads import Event, event_type
from events.strict_json import JsonInt
from events.vocabulary import CheckStatus


@event_type("gate_finished")
class GateFinished(Event, frozen=True):
    gate: str  # capability | state_machine | fault | performance | e2e
    verdict: str  # pass | fail
    checks: JsonInt  # how many checks ran; zero is a failure
    failed: JsonInt
    report: str  # path relative to the output root
    report_digest: str


@event_type("evidence_sealed")
class EvidenceSealed(Event, frozen=True):
    pack: str
    digest: str
    size: JsonInt
    artifacts: JsonInt


@event_type("sidecar_written")
class SidecarWritten(Event, frozen=True):
    pack: str
    sidecar: str
    codec: str
    k: JsonInt
    m: JsonInt
    pack_digest: str
    sidecar_digest: str


@event_type("scrub_finished")
class ScrubFinished(Event, frozen=True):
    pack: str
    sidecar: str
    status: str  # see engine.scrub: ok | fragments_damaged | manifest_damaged | drift | corrupt | missing_pack | unsealed | unreadable
    #              (after --repair) restored | fragments_repaired | manifest_repaired
    sealed_digest: str
    pack_digest: str
    bad_fragments: list[int] = msgspec.field(default_factory=list)
    kept: str | None = None
    damaged: list[str] = msgspec.field(default_factory=list)  # each damaged part, named (sidecar v2)
    kept_files: list[str] = msgspec.field(default_factory=list)  # every file a repair kept aside
    forged_proofs: JsonInt = 0  # decode proofs in the manifest with no event of their own


@event_type("decode_proof")
class DecodeProofRecorded(Event, frozen=True):
    sidecar: str
    output: str
    ok: bool
    dropped: list[int]
    digest: str
    one_more_loss_failed_closed: bool
    proof_count: JsonInt  # proofs in the manifest that have their events, this one included
    detail: str = ""
    seed: JsonInt | None = None  # what the manifest's proof repeats (sidecar v2): rebuilt from here
    at: str = ""
    forged_proofs: JsonInt = 0


@event_type("signoff_recorded")
class SignoffRecorded(Event, frozen=True):
    verdict: CheckStatus  # pass | fail
    checklist: dict[str, CheckStatus]  # item id -> its status
    signoff: str  # path of asupersync_signoff_v1.json
    digest: str
    pack_digest: str
