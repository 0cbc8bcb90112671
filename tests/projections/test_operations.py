"""The operations projection cites typed events: each entry holds the event Struct that
decided it (so views read checked attributes), renders and checkpoints exactly as the
plain-dict form did, and the checklist and escalation rules derive from it directly."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import msgspec

from events.jsonl_log import JsonlLog
from events.memory_log import MemoryLog
from events.operations import DecodeProofRecorded, EvidenceSealed, GateFinished, ScrubFinished, SidecarWritten, SignoffRecorded
from events.payloads import Event
from events.vocabulary import CheckStatus
from projections import checklist
from projections.checklist import REQUIRED_GATES, Facts, Item
from projections.escalation import Inputs, escalate, level_of
from projections.fold import fold_log, fold_records
from projections.operations import Cited, Operations, OpsState
from projections.runbook_map import Level

PACK = "blake3:" + "11" * 32
OTHER = "blake3:" + "22" * 32


def gate(name: str, verdict: str = "pass", checks: int = 3) -> GateFinished:
    return GateFinished(gate=name, verdict=verdict, checks=checks, failed=0, report=f"gates/{name}.json", report_digest=OTHER)


def sidecar(pack_digest: str = PACK) -> SidecarWritten:
    return SidecarWritten(pack="pack.json", sidecar="pack.sidecar", codec="rs", k=4, m=2, pack_digest=pack_digest, sidecar_digest=OTHER)


def scrub(status: str = "ok") -> ScrubFinished:
    return ScrubFinished(pack="pack.json", sidecar="pack.sidecar", status=status, sealed_digest=PACK, pack_digest=PACK)


def proof(ok: bool = True, detail: str = "") -> DecodeProofRecorded:
    return DecodeProofRecorded(
        sidecar="pack.sidecar", output="out", ok=ok, dropped=[1], digest=PACK, one_more_loss_failed_closed=ok, proof_count=1, detail=detail
    )


def protected_pack() -> list[Event]:
    """Four passing gates, a seal, a sidecar, a scrub and a drill of the same pack, in runbook order."""
    seal = EvidenceSealed(pack="pack.json", digest=PACK, size=10, artifacts=2)
    return [*(gate(g) for g in REQUIRED_GATES), seal, sidecar(), scrub(), proof()]


def fold(events: Sequence[Event], log: MemoryLog | None = None) -> OpsState:
    """The operations state of a log holding `events` (in `log`, when given)."""
    log = log or MemoryLog()
    log.append("ops", events)
    states = {"operations": OpsState()}
    fold_records([Operations()], states, log.read())
    state: OpsState = states["operations"]
    return state


def facts(pack_digest: str | None = PACK) -> Facts:
    return Facts(pack_digest=pack_digest, pack_drift=[], logs=[])


def test_entries_hold_the_typed_event_with_its_seq_and_digest() -> None:
    """Every entry is the recorded event Struct itself, cited by the seq and digest of its record."""
    log = MemoryLog()
    state = fold(protected_pack(), log)
    records = {r.seq: r for r in log.read()}
    assert state.gates["fault"].data == gate("fault")
    assert isinstance(state.sidecar, Cited) and state.sidecar.data == sidecar()
    assert state.scrub is not None and state.scrub.data.status == "ok"
    assert [p.data for p in state.proofs] == [proof()]
    for cited in [*state.gates.values(), *state.seals, state.sidecar, state.scrub, *state.proofs]:
        assert records[cited.seq].h == cited.h and records[cited.seq].data == cited.data


def test_render_is_the_plain_form_of_each_event() -> None:
    """The rendering keeps each event's fields under `data`, defaults included, as before typing."""
    state = fold([gate("fault"), scrub()])
    rendered = Operations().render(state)
    assert rendered["gates"]["fault"]["data"] == msgspec.to_builtins(gate("fault"))
    assert list(rendered["scrub"]["data"]) == [
        *("pack", "sidecar", "status", "sealed_digest", "pack_digest", "bad_fragments", "kept"),
        *("damaged", "kept_files", "forged_proofs"),  # optional fields of sidecar v2
    ]
    assert state.scrub is not None and rendered["scrub"]["seq"] == state.scrub.seq


def test_checkpoint_restores_typed_events(tmp_path: Path) -> None:
    """A fold resumed from its checkpoint holds the same typed events as the first fold."""
    path, checkpoint = tmp_path / "ops.jsonl", tmp_path / "ops.fold.json"
    with JsonlLog.open(path, log_id="ops") as log:
        log.append("ops", protected_pack())
    first = fold_log(path, [Operations()], checkpoint=checkpoint)
    again = fold_log(path, [Operations()], checkpoint=checkpoint)
    assert again.resumed and again.folded == 0
    assert again.states == first.states
    assert isinstance(again.states["operations"].gates["capability"].data, GateFinished)


def test_checklist_derives_from_typed_events() -> None:
    """Gates and durability pass on typed evidence and cite its fields; a signed-off pack passes too."""
    events = protected_pack()
    items = {i.id: i for i in checklist.derive(fold(events), facts())}
    assert items["gates"].status == "pass"
    assert items["gates"].evidence[0]["report"] == "gates/capability.json"
    assert items["durability"].status == "pass"
    assert items["durability"].evidence[0]["pack_digest"] == PACK
    others = dict.fromkeys(("gates", "durability", "logs_replayable", "pack_current"), CheckStatus.PASS)
    signoff = SignoffRecorded(verdict=CheckStatus.PASS, checklist=others, signoff="signoff.json", digest=OTHER, pack_digest=PACK)
    item = checklist.signoff_item(fold([*events, signoff]), [items["gates"], items["durability"]], PACK)
    assert (item.status, item.evidence[0]["verdict"], item.evidence[0]["signoff"]) == ("pass", "pass", "signoff.json")


def test_checklist_fails_on_typed_fields() -> None:
    """A gate with no checks, a sidecar of another pack and a damaged scrub each fail their item."""
    state = fold([gate("fault", checks=0)])
    assert checklist.gates_item(state).status == "fail"
    assert "fault" in checklist.gates_item(state).reason
    assert checklist.durability_item(fold([sidecar(OTHER)]), PACK).status == "fail"
    damaged = checklist.durability_item(fold([sidecar(), scrub("corrupt"), proof()]), PACK)
    assert (damaged.status, damaged.reason) == ("fail", "scrub status corrupt")


def test_escalation_reads_typed_proofs_and_scrubs() -> None:
    """A failed drill escalates P1 with its detail; a drifted scrub is P2 stale_sidecar."""
    rules = escalate(Inputs(ops=fold([sidecar(), proof(ok=False, detail="too many fragments lost"), scrub("drift")])))
    assert [(r.level, r.rule, r.detail) for r in rules] == [
        ("P1", "decode_proof_failed", "too many fragments lost"),
        ("P2", "stale_sidecar", "the pack changed after its sidecar was written"),
    ]


def test_seal_digests_after_a_seq() -> None:
    """`seal_digests` reads the typed seals: only those after the given seq count."""
    seals = [EvidenceSealed(pack="pack.json", digest=d, size=1, artifacts=1) for d in (PACK, OTHER)]
    state = fold(seals)
    assert Operations.seal_digests(state) == {PACK, OTHER}
    assert Operations.seal_digests(state, after_seq=state.seals[0].seq) == {OTHER}


def test_checklist_verdict_is_pass_fail_or_pending() -> None:
    """The verdict passes only when every item passes; any failure fails it, otherwise it is pending."""

    def items(*statuses: CheckStatus) -> list[Item]:
        return [Item(f"i{n}", "t", s, "", []) for n, s in enumerate(statuses)]

    assert checklist.verdict(items(CheckStatus.PASS, CheckStatus.PASS)) is CheckStatus.PASS
    assert checklist.verdict(items(CheckStatus.PENDING, CheckStatus.FAIL)) is CheckStatus.FAIL
    assert checklist.verdict(items(CheckStatus.PASS, CheckStatus.PENDING)) is CheckStatus.PENDING
    assert checklist.render(items(CheckStatus.PENDING))["verdict"] == "pending"


def test_escalation_level_is_the_most_severe_rule() -> None:
    """Rules sort P0 first and the level is the most severe one fired, as a Level member."""
    rules = escalate(Inputs(ops=fold([sidecar(), proof(ok=False), scrub("drift")]), pack_drift=["a.json"]))
    assert [r.level for r in rules] == [Level.P1, Level.P2, Level.P2]
    assert level_of(rules) is Level.P1
    assert list(Level) == [Level.P0, Level.P1, Level.P2]


def test_vouched_where_packs_are_sealed_only_seals_count() -> None:
    """A sealed pack's path: only seal digests are vouched for (a sidecar_written of another digest is not); another file: both count."""
    seal = EvidenceSealed(pack="pack.json", digest=PACK, size=10, artifacts=2)
    state = fold([seal, sidecar(OTHER)])
    vouched = Operations.vouched(state, "pack.json")
    assert (vouched.digests, vouched.by) == ({PACK: state.seals[0].seq}, "seal")
    encoded = SidecarWritten(pack="notes.bin", sidecar="notes.bin.ec.json", codec="rs", k=4, m=2, pack_digest=OTHER, sidecar_digest=OTHER)
    state = fold([seal, encoded])
    assert Operations.vouched(state, "notes.bin").digests == {OTHER: state.sidecars[0].seq, PACK: state.seals[0].seq}


def test_proof_events_are_those_of_the_sidecar_since_it_was_written() -> None:
    """A drill before the sidecar was (re)written, or of another sidecar, is not one of its proof events."""
    other = msgspec.structs.replace(proof(), sidecar="other.ec.json")
    state = fold([proof(), sidecar(), proof(), other])
    assert sorted(Operations.proof_events(state, "pack.sidecar")) == [state.proofs[1].seq]
