"""The adapter's decisions: a deterministic function of (progress, observation).

`decide` is the only place that turns what the adapter saw into triggers; the live adapter
and replay call the same code with the same observations, so a recorded log can be
re-driven with no store at all. `Progress` is the little the decisions remember
(attempt, committed cursor, last epoch, the intent).
"""

from __future__ import annotations

import random

import msgspec

from engine.contracts import default_state_machine
from engine.rules import default_rules
from events.observations import (
    BackoffDrawn,
    CapabilityNegotiated,
    CheckpointRead,
    ChunkWritten,
    EpochRead,
    FaultMet,
    Intent,
    IntentRecorded,
    LeaseChecked,
    SourceHashed,
    StoreFailed,
    TargetFinalized,
    TargetHashed,
)
from events.payloads import Event
from events.vocabulary import FaultKind, ReasonCode, Trigger

_HARDENED = default_state_machine().retry_policy.hardened  # the contract is the one source of the bounds
BACKOFF_BASE_MS = _HARDENED.backoff_base_ms
BACKOFF_CAP_MS = _HARDENED.backoff_cap_ms


class Decision(msgspec.Struct, frozen=True):
    trigger: Trigger
    reason: ReasonCode | None = None


class Progress:
    def __init__(self) -> None:
        self.intent: Intent | None = None
        self.attempt = 0
        self.cursor = 0
        self.epoch: str | None = None
        self.started_ns = 0

    @property
    def max_attempts(self) -> int:
        assert self.intent is not None
        return self.intent.max_attempts


def backoff_ms(seed: int, attempt: int) -> int:
    """Exponential backoff with full jitter, drawn from the transfer's seed and attempt."""
    ceiling = min(BACKOFF_CAP_MS, BACKOFF_BASE_MS * 2 ** max(attempt - 1, 0))
    return random.Random(f"{seed}:{attempt}").randint(ceiling // 2, ceiling)


def decide(p: Progress, obs: Event) -> list[Decision]:  # noqa: C901 - one arm per observation type: a flat table, run per observation
    """The triggers `obs` calls for, in order (usually zero or one)."""
    match obs:
        case IntentRecorded(intent=intent, resume=resume, at_ns=at_ns):
            p.intent, p.started_ns = intent, at_ns
            return [Decision(default_rules().session_trigger(resume))]
        case CapabilityNegotiated(outcome=outcome):
            code = outcome.reason_code
            return [] if code is None else [Decision(Trigger.CAPABILITY_REJECTED, code)]
        case SourceHashed():
            return [_precheck(p, obs)]
        case CheckpointRead():
            return [_resume(p, obs)]
        case LeaseChecked(acquired=acquired):
            return [] if acquired else [Decision(Trigger.CONFLICT_DETECTED, ReasonCode.CONFLICT_DETECTED)]
        case EpochRead():
            return _epoch(p, obs)
        case ChunkWritten():
            return [_commit(p, obs)]
        case FaultMet(kind=FaultKind.INTERRUPTION):
            if p.attempt + 1 > p.max_attempts:
                return [Decision(Trigger.RETRY_BUDGET_EXCEEDED, ReasonCode.RETRY_EXHAUSTED)]
            p.attempt += 1
            return [Decision(Trigger.TRANSPORT_INTERRUPTED)]
        case FaultMet(kind=FaultKind.LATE_ACK):
            return [Decision(Trigger.CHUNK_COMMITTED)]  # a commit the transfer is past: fails closed
        case BackoffDrawn():
            return [Decision(Trigger.RESUME_APPLIED)]
        case TargetHashed():
            return _verify(p, obs)
        case TargetFinalized():
            return [Decision(Trigger.CHECKSUM_VALIDATED)]
        case StoreFailed(kind="io"):
            return [Decision(Trigger.IO_FAILED, ReasonCode.IO_FAILED)]
        case StoreFailed():
            return [Decision(Trigger.CONFLICT_DETECTED, ReasonCode.CONFLICT_DETECTED)]  # planted, or another writer's artifact
    return []


def _precheck(p: Progress, obs: SourceHashed) -> Decision:
    assert p.intent is not None
    if obs.digest != p.intent.expected_checksum or obs.size != p.intent.size:
        return Decision(Trigger.PRECHECK_FAILED, ReasonCode.INTEGRITY_PRECHECK_FAILED)
    return Decision(Trigger.CAPABILITY_ACCEPTED)


def _resume(p: Progress, obs: CheckpointRead) -> Decision:
    assert p.intent is not None
    if obs.transfer_id != p.intent.transfer_id:
        return Decision(Trigger.RESUME_REJECTED, ReasonCode.RESUME_TRANSFER_MISMATCH)
    if obs.seed != p.intent.seed:
        return Decision(Trigger.RESUME_REJECTED, ReasonCode.RESUME_SEED_MISMATCH)
    if not obs.finalized and obs.committed_cursor > obs.target_bytes:
        return Decision(Trigger.RESUME_REJECTED, ReasonCode.RESUME_CURSOR_AHEAD)
    p.attempt = obs.attempt
    p.cursor = p.intent.size if obs.finalized else obs.committed_cursor
    return Decision(Trigger.RESUME_APPLIED)


def _epoch(p: Progress, obs: EpochRead) -> list[Decision]:
    assert p.intent is not None
    if obs.final_digest and obs.final_digest != p.intent.expected_checksum:
        return [Decision(Trigger.CONFLICT_DETECTED, ReasonCode.CONFLICT_DETECTED)]  # someone else's artifact holds the name
    if p.epoch is not None and obs.epoch != p.epoch:
        return [Decision(Trigger.CONFLICT_DETECTED, ReasonCode.CONFLICT_DETECTED)]  # another writer moved the target
    if obs.final_digest:
        p.cursor = p.intent.size  # the artifact is already there, byte for byte: nothing left to move
    p.epoch = obs.epoch
    return []


def _commit(p: Progress, obs: ChunkWritten) -> Decision:
    expected_end = obs.offset + obs.length
    if obs.offset != p.cursor or obs.committed < expected_end:
        return Decision(Trigger.CONFLICT_DETECTED, ReasonCode.CONFLICT_DETECTED)  # cursor regression
    p.cursor = expected_end
    p.epoch = obs.epoch
    return Decision(Trigger.CHUNK_COMMITTED)


def _verify(p: Progress, obs: TargetHashed) -> list[Decision]:
    assert p.intent is not None
    started = Decision(Trigger.CHECKSUM_VERIFICATION_STARTED)
    if obs.digest != p.intent.expected_checksum or obs.size != p.intent.size:
        return [started, Decision(Trigger.CHECKSUM_MISMATCH, ReasonCode.INTEGRITY_PRECHECK_FAILED)]
    return [started]
