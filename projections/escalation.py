"""Escalation (runbook section 3), with the rule that fired and the evidence behind it.

P0 — the fail-closed contract is broken or compatibility drifted: a log that does not
     verify; a transfer `completed` without a matching target digest; a state change
     out of a terminal state; a capability accepted that the matrix forbids; a transfer
     failing closed on a capability code (section A).
P1 — reliability regressed: an operation's p99 over its threshold; a failed decode
     proof or an unrecovered scrub; a transfer failing closed on an integrity,
     conflict, cursor or invalid-transition code.
P2 — evidence drifted: a stale sidecar; a stale or missing artifact path; the checklist
     not fully pass; a transfer failing closed on retry exhaustion or a stale resume.
     Operational: a stale transfer (`stale_transfer`), unfinished with nobody holding its
     lease. Nothing is lost or wrong (no final name was published, its checkpoint stands),
     so it is not P0 or P1; but nobody will finish it, so it is not silent either: its
     detail names the transfer, the target and the `asup resume` command that continues it.

A fail-closed incident keeps its level after a later session of the same transfer
completes (it happened, and the log proves it); its detail says the rerun recovered it.
"""

from __future__ import annotations

from typing import Any

import msgspec

from events.vocabulary import CheckStatus, ReasonCode, State
from projections.audit import AuditState
from projections.checklist import Item
from projections.operations import OpsState
from projections.runbook_map import LEVEL, SECTION, Level
from projections.transfers import TransfersState

LEVELS = tuple(Level)
DEFAULT_P99_MS = {"chunk_written": 2000.0, "target_hashed": 30000.0, "transfer_completed": 600000.0}


class Rule(msgspec.Struct, frozen=True):
    level: Level
    rule: str
    detail: str
    evidence: list[dict[str, Any]]


class Inputs(msgspec.Struct):
    """What escalation looks at; any part may be empty."""

    transfers: TransfersState | None = None
    audit: AuditState | None = None
    metrics: dict[str, Any] | None = None  # the metrics projection's rendering
    log_problems: list[dict[str, Any]] = msgspec.field(default_factory=list)  # {log, line, message}
    terminal_exits: list[dict[str, Any]] = msgspec.field(default_factory=list)  # {seq, transfer_id, from_state, to_state}
    forbidden_accepts: list[dict[str, Any]] = msgspec.field(default_factory=list)  # {seq, transfer_id, detail}
    ops: OpsState | None = None
    checklist: list[Item] | None = None
    pack_drift: list[str] = msgspec.field(default_factory=list)  # artifacts the sealed pack lists that changed or vanished
    stale: list[dict[str, Any]] = msgspec.field(
        default_factory=list
    )  # engine.liveness.stale_facts: {transfer_id, target, resume_command, ...}
    p99_thresholds_ms: dict[str, float] = msgspec.field(default_factory=lambda: dict(DEFAULT_P99_MS))


def escalate(inputs: Inputs) -> list[Rule]:
    rules: list[Rule] = []
    for problem in inputs.log_problems:
        rules.append(Rule(Level.P0, "log_fails_verification", problem.get("message", ""), [problem]))
    rules += _transfer_rules(inputs)
    rules += _metric_rules(inputs)
    rules += _ops_rules(inputs)
    for fact in inputs.stale:
        detail = f"{fact['transfer_id']} (target {fact['target']}) has no live lease holder; continue it: {fact['resume_command']}"
        rules.append(Rule(Level.P2, "stale_transfer", detail, [fact]))
    if inputs.pack_drift:
        evidence = [{"path": path} for path in inputs.pack_drift]
        rules.append(Rule(Level.P2, "stale_or_missing_artifact_paths", ", ".join(inputs.pack_drift), evidence))
    if inputs.checklist is not None:
        open_items = [i for i in inputs.checklist if i.status != CheckStatus.PASS]
        if open_items:
            detail = ", ".join(f"{i.id}={i.status}" for i in open_items)
            evidence = [{"item": i.id, "status": i.status, "reason": i.reason} for i in open_items]
            rules.append(Rule(Level.P2, "checklist_not_fully_pass", detail, evidence))
    return sort_rules(rules)


def sort_rules(rules: list[Rule]) -> list[Rule]:
    """Most severe first; stable within a level by rule and detail."""
    return sorted(rules, key=lambda r: (LEVELS.index(r.level), r.rule, r.detail))


def level_of(rules: list[Rule]) -> Level | None:
    return min((r.level for r in rules), key=LEVELS.index, default=None)


def _transfer_rules(inputs: Inputs) -> list[Rule]:
    rules = []
    if inputs.transfers is not None:
        for view in inputs.transfers.transfers.values():
            if view.state is State.COMPLETED and view.verified_digest != view.expected_checksum:
                evidence = [{"transfer_id": view.transfer_id, "last_seq": view.last_seq, "verified": view.verified_digest}]
                rules.append(Rule(Level.P0, "completed_without_checksum_match", view.transfer_id, evidence))
    for exit_ in inputs.terminal_exits:
        rules.append(Rule(Level.P0, "transition_after_terminal", str(exit_.get("transfer_id")), [exit_]))
    for accept in inputs.forbidden_accepts:
        rules.append(Rule(Level.P0, "capability_accepted_but_forbidden", str(accept.get("transfer_id")), [accept]))
    if inputs.audit is not None:
        views = inputs.transfers.transfers if inputs.transfers is not None else {}
        for entry in inputs.audit.entries:
            code = ReasonCode(entry.reason_code)
            facts: dict[str, Any] = {"seq": entry.seq, "transfer_id": entry.transfer_id, "evidence_seq": entry.evidence_seq}
            facts["section"] = SECTION[code]
            detail = entry.transfer_id
            later = views.get(entry.transfer_id)
            if later is not None and later.state is State.COMPLETED and later.last_seq > entry.seq:
                # the incident stands (it is in the log), but the operator sees that a rerun recovered it
                facts["completed_later_at_seq"] = later.last_seq
                detail += f" (a later session completed it, seq {later.last_seq})"
            rules.append(Rule(LEVEL[code], f"failed_closed_{code.value}", detail, [facts]))
    return rules


def _metric_rules(inputs: Inputs) -> list[Rule]:
    rules = []
    operations = (inputs.metrics or {}).get("operations", {})
    for operation, limit in sorted(inputs.p99_thresholds_ms.items()):
        row = operations.get(operation)
        if row and row["p99_ms"] > limit:
            rules.append(Rule(Level.P1, "tail_latency_over_threshold", f"{operation} p99 {row['p99_ms']} ms > {limit} ms", [row]))
    return rules


def _ops_rules(inputs: Inputs) -> list[Rule]:
    ops = inputs.ops
    if ops is None:
        return []
    rules = []
    for proof in ops.proofs:
        if not (proof.data.ok and proof.data.one_more_loss_failed_closed):
            rules.append(Rule(Level.P1, "decode_proof_failed", proof.data.detail, [{"seq": proof.seq, "record_digest": proof.h}]))
    if ops.scrub is not None:
        status = ops.scrub.data.status
        evidence = [{"seq": ops.scrub.seq, "record_digest": ops.scrub.h, "status": status}]
        if status in ("corrupt", "missing_pack", "fragments_damaged", "manifest_damaged", "unsealed", "unreadable"):
            rules.append(Rule(Level.P1, "scrub_failed", status, evidence))
        elif status == "drift":
            rules.append(Rule(Level.P2, "stale_sidecar", "the pack changed after its sidecar was written", evidence))
    return rules
