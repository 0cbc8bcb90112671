"""The adapter vocabulary: states, triggers, reason codes and modes.

Names are the reference contract's (asupersync_adapter_state_machine_v1) plus the routes
DESIGN.md adds. They are forever: add members, never rename or remove one
(tests/events/test_vocabulary_pins.py holds the pin).
"""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    IDLE = "idle"
    CAPABILITY_CHECK = "capability_check"
    SYNCING = "syncing"
    VERIFYING_CHECKSUM = "verifying_checksum"
    COMPLETED = "completed"
    FAILED_CLOSED = "failed_closed"


# The contract's terminal states are checked against this pin; code asks engine.rules.
TERMINAL_STATES: frozenset[State] = frozenset({State.COMPLETED, State.FAILED_CLOSED})


class Trigger(StrEnum):
    START = "start"
    CAPABILITY_ACCEPTED = "capability_accepted"
    CAPABILITY_REJECTED = "capability_rejected"
    CHUNK_COMMITTED = "chunk_committed"
    RESUME_APPLIED = "resume_applied"
    TRANSPORT_INTERRUPTED = "transport_interrupted"
    CHECKSUM_VERIFICATION_STARTED = "checksum_verification_started"
    CHECKSUM_VALIDATED = "checksum_validated"
    CHECKSUM_MISMATCH = "checksum_mismatch"
    CONFLICT_DETECTED = "conflict_detected"
    RETRY_BUDGET_EXCEEDED = "retry_budget_exceeded"
    # Routes beyond the reference table (DESIGN.md "Adapter").
    PRECHECK_FAILED = "precheck_failed"
    RESUME_REQUESTED = "resume_requested"
    RESUME_REJECTED = "resume_rejected"
    TRIGGER_REJECTED = "trigger_rejected"
    IO_FAILED = "io_failed"  # a store's I/O failed after the intent was recorded


class ReasonCode(StrEnum):
    UNSUPPORTED_CAPABILITY = "unsupported_capability"
    CAPABILITY_MISMATCH = "capability_mismatch"
    INTEGRITY_PRECHECK_FAILED = "integrity_precheck_failed"
    CONFLICT_DETECTED = "conflict_detected"
    RETRY_EXHAUSTED = "retry_exhausted"
    INVALID_TRANSITION = "invalid_transition"
    RESUME_CURSOR_AHEAD = "resume_cursor_ahead"
    RESUME_TRANSFER_MISMATCH = "resume_transfer_mismatch"
    RESUME_SEED_MISMATCH = "resume_seed_mismatch"
    IO_FAILED = "io_failed"  # the source, target or checkpoint could not be read or written (errno and path recorded)


class Mode(StrEnum):
    STRICT = "strict"
    HARDENED = "hardened"


class Durability(StrEnum):
    """How hard an append pushes its bytes to disk before it returns."""

    NONE = "none"  # no fsync: fastest, loses the page cache on a crash
    BATCH = "batch"  # one fsync per appended batch: the default, loses no acknowledged event
    ALWAYS = "always"  # one fsync per record


class NegotiationOutcome(StrEnum):
    """What capability negotiation decided (recorded in `capability_negotiated`). A refusal
    is spelled as the reason code the transfer fails closed with: one name, one concept."""

    ACCEPTED = "accepted"
    UNSUPPORTED_CAPABILITY = ReasonCode.UNSUPPORTED_CAPABILITY.value
    CAPABILITY_MISMATCH = ReasonCode.CAPABILITY_MISMATCH.value

    @property
    def reason_code(self) -> ReasonCode | None:
        """The reason code of a refusal; None when accepted."""
        return None if self is NegotiationOutcome.ACCEPTED else ReasonCode(self.value)


class FaultKind(StrEnum):
    """The faults a plan can inject (engine/faults.py); those the adapter meets are recorded in `fault_met`."""

    INTERRUPTION = "interruption"
    PARTIAL_WRITE = "partial_write"
    CHECKSUM_MISMATCH = "checksum_mismatch"
    STALE_METADATA = "stale_metadata"
    EPOCH_DRIFT = "epoch_drift"
    SLOW = "slow"
    LATE_ACK = "late_ack"
    CRASH = "crash"
    DISK_FULL = "disk_full"


class CheckStatus(StrEnum):
    """A checklist item's status and the checklist's verdict (recorded in `signoff_recorded`)."""

    PASS = "pass"
    FAIL = "fail"
    PENDING = "pending"
