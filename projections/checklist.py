"""The operator checklist of the runbook (section 4), derived from events and files —
never edited by hand. Each item is pass | fail | pending with the evidence that decides
it (event seq and digest, artifact path and digest).

The I/O (hashing files, verifying and re-driving logs) happens in `gather_facts`; the
verdicts are a pure function of (operations state, facts)."""

from __future__ import annotations

from typing import Any

import msgspec

from engine.durability import DecodeProof, match_proofs
from engine.scrub import HEALTHY
from events.payloads import Event
from events.vocabulary import CheckStatus
from projections.operations import Cited, Operations, OpsState

REQUIRED_GATES = ("capability", "state_machine", "fault", "performance")
ITEMS = {
    "gates": "capability/state/fault/performance gates pass",
    "durability": "sidecar generation + scrub + decode-drill pass",
    "logs_replayable": "structured log artifacts present and replayable",
    "pack_current": "final evidence bundle references current artifact paths",
    "signoff": "sign-off checklist remains fully `pass`",
}


class LogFact(msgspec.Struct, frozen=True):
    path: str
    last_seq: int
    last_h: str
    ok: bool  # verifies end to end
    streams: int  # transfer streams
    reproduced: int  # streams whose re-driven transitions equal the recorded ones
    problem: str = ""


class SidecarFact(msgspec.Struct, frozen=True):
    """The current pack's sidecar manifest as read: its decode proofs, or why it cannot be read."""

    proofs: list[DecodeProof]
    problem: str = ""
    pack_digest: str = ""  # what the manifest says it protects


class Facts(msgspec.Struct, frozen=True):
    pack_digest: str | None  # None: no pack
    pack_drift: list[str]  # inventory entries that are missing or changed
    logs: list[LogFact]
    pack_path: str = ""
    sidecar: SidecarFact | None = None  # None: not read (then every decode_proof event since the sidecar counts)


class Item(msgspec.Struct, frozen=True):
    id: str
    title: str
    status: CheckStatus
    reason: str
    evidence: list[dict[str, Any]]


def _cite(cited: Cited[Event], **extra: Any) -> dict[str, Any]:
    return {"seq": cited.seq, "record_digest": cited.h, **extra}


def gates_item(ops: OpsState) -> Item:
    cited = [ops.gates[g] for g in REQUIRED_GATES if g in ops.gates]
    evidence = [_cite(c, gate=c.data.gate, report=c.data.report, report_digest=c.data.report_digest) for c in cited]
    missing = [g for g in REQUIRED_GATES if g not in ops.gates]
    failed = [c.data.gate for c in cited if c.data.verdict != CheckStatus.PASS or c.data.checks == 0]
    if failed:
        return Item("gates", ITEMS["gates"], CheckStatus.FAIL, f"gates failed or ran no check: {', '.join(failed)}", evidence)
    if missing:
        return Item("gates", ITEMS["gates"], CheckStatus.PENDING, f"no result yet for: {', '.join(missing)}", evidence)
    return Item("gates", ITEMS["gates"], CheckStatus.PASS, "every gate passed with checks > 0", evidence)


def durability_item(ops: OpsState, pack_digest: str | None, manifest: SidecarFact | None = None) -> Item:
    """A decode proof counts when the manifest holds it and the ops log holds its event;
    a proof in the manifest without its event is forged: named, never counted."""
    title = ITEMS["durability"]
    if pack_digest is None or ops.sidecar is None:
        return Item("durability", title, CheckStatus.PENDING, "no pack or no sidecar yet", [])
    sidecar = ops.sidecar.data
    evidence = [_cite(ops.sidecar, sidecar=sidecar.sidecar, pack_digest=sidecar.pack_digest)]
    if sidecar.pack_digest != pack_digest:
        return Item("durability", title, CheckStatus.FAIL, "the sidecar protects another version of the pack (re-encode)", evidence)
    if manifest is not None and (manifest.problem or manifest.pack_digest != sidecar.pack_digest):
        problem = manifest.problem or "it names another pack digest than its sidecar_written event"
        reason = f"the sidecar's manifest is damaged ({problem}): `asup durability scrub --repair` rebuilds it"
        return Item("durability", title, CheckStatus.FAIL, reason, evidence)
    scrub = ops.scrub if ops.scrub and ops.scrub.seq > ops.sidecar.seq else None
    drills = [p for p in ops.proofs if p.seq > ops.sidecar.seq]
    forged: list[int] = []
    proofs = drills
    if manifest is not None:
        counted, forged = match_proofs(manifest.proofs, Operations.proof_events(ops, sidecar.sidecar))
        proofs = [p for p in drills if p.seq in counted]
    note = f"; {len(forged)} decode proof(s) in the manifest have no event (forged): not counted" if forged else ""
    if scrub is None or not proofs:
        return Item(
            "durability", title, CheckStatus.PENDING, "scrub or decode drill not run since the sidecar was written" + note, evidence
        )
    evidence += [_cite(scrub, status=scrub.data.status)] + [_cite(p, ok=p.data.ok) for p in proofs]
    if scrub.data.status not in HEALTHY or scrub.data.sealed_digest != pack_digest:
        return Item("durability", title, CheckStatus.FAIL, f"scrub status {scrub.data.status}" + note, evidence)
    last = drills[-1].data
    if not (last.ok and last.one_more_loss_failed_closed and last.digest == pack_digest):
        return Item(
            "durability", title, CheckStatus.FAIL, "the last decode drill did not prove recovery and fail-closed loss" + note, evidence
        )
    return Item(
        "durability", title, CheckStatus.PASS, f"sidecar, scrub and {len(proofs)} decode proof(s) for the current pack" + note, evidence
    )


def logs_item(logs: list[LogFact]) -> Item:
    title = ITEMS["logs_replayable"]
    evidence = [msgspec.to_builtins(log) for log in logs]
    if not logs:
        return Item("logs_replayable", title, CheckStatus.PENDING, "no structured logs yet", evidence)
    bad = [log.path for log in logs if not log.ok or log.reproduced != log.streams]
    if bad:
        return Item("logs_replayable", title, CheckStatus.FAIL, f"not verifiable or not reproduced: {', '.join(bad)}", evidence)
    streams = sum(log.streams for log in logs)
    return Item("logs_replayable", title, CheckStatus.PASS, f"{len(logs)} logs verify; {streams} transfers re-driven identically", evidence)


def pack_item(ops: OpsState, facts: Facts) -> Item:
    title = ITEMS["pack_current"]
    if facts.pack_digest is None:
        return Item("pack_current", title, CheckStatus.PENDING, "no evidence pack yet", [])
    evidence: list[dict[str, Any]] = [{"path": facts.pack_path, "digest": facts.pack_digest}]
    evidence += [_cite(seal, pack=seal.data.pack, digest=seal.data.digest) for seal in ops.seals if seal.data.digest == facts.pack_digest]
    if len(evidence) == 1:  # a pack no seal event names: a build cut short, or one written by hand
        why = "the pack matches no seal event in the ops log: rebuild it (asup evidence build)"
        return Item("pack_current", title, CheckStatus.FAIL, why, evidence)
    if facts.pack_drift:
        return Item("pack_current", title, CheckStatus.FAIL, f"stale or missing: {', '.join(facts.pack_drift)}", evidence)
    return Item("pack_current", title, CheckStatus.PASS, "every listed artifact is present with its sealed digest", evidence)


def signoff_item(ops: OpsState, others: list[Item], pack_digest: str | None) -> Item:
    title = ITEMS["signoff"]
    if ops.signoff is None:
        return Item("signoff", title, CheckStatus.PENDING, "not signed off yet", [])
    data = ops.signoff.data
    evidence = [_cite(ops.signoff, signoff=data.signoff, digest=data.digest, verdict=data.verdict)]
    if data.verdict != CheckStatus.PASS:
        return Item("signoff", title, CheckStatus.FAIL, "the last sign-off was not fully pass", evidence)
    if data.pack_digest != pack_digest:
        return Item("signoff", title, CheckStatus.FAIL, "the sign-off is for another version of the pack", evidence)
    regressed = [i.id for i in others if i.status != CheckStatus.PASS]
    if regressed:
        return Item("signoff", title, CheckStatus.FAIL, f"items no longer pass since sign-off: {', '.join(regressed)}", evidence)
    return Item("signoff", title, CheckStatus.PASS, "signed off, and every item still passes", evidence)


def derive(ops: OpsState, facts: Facts) -> list[Item]:
    items = [gates_item(ops), durability_item(ops, facts.pack_digest, facts.sidecar), logs_item(facts.logs), pack_item(ops, facts)]
    return [*items, signoff_item(ops, items, facts.pack_digest)]


def verdict(items: list[Item]) -> CheckStatus:
    """Pass when every item passes; otherwise fail if any fails, else pending."""
    statuses = {i.status for i in items}
    if statuses <= {CheckStatus.PASS}:
        return CheckStatus.PASS
    return CheckStatus.FAIL if CheckStatus.FAIL in statuses else CheckStatus.PENDING


def render(items: list[Item]) -> dict[str, Any]:
    return {"verdict": verdict(items), "items": [msgspec.to_builtins(i) for i in items], "checks": len(items)}
