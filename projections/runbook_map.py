"""Where each reason code sends an operator: the runbook section (A, B, C, and asup's own
D for storage) and the escalation level. Every reason code of the vocabulary has an entry
(a test pins it)."""

from __future__ import annotations

from enum import StrEnum

from events.vocabulary import ReasonCode


class Level(StrEnum):
    """Escalation levels, most severe first (no rule fired: no level)."""

    P0 = "P0"
    P1 = "P1"
    P2 = "P2"


SECTION: dict[ReasonCode, str] = {
    ReasonCode.UNSUPPORTED_CAPABILITY: "A",
    ReasonCode.CAPABILITY_MISMATCH: "A",
    ReasonCode.INTEGRITY_PRECHECK_FAILED: "B",
    ReasonCode.RETRY_EXHAUSTED: "C",
    ReasonCode.CONFLICT_DETECTED: "C",
    ReasonCode.RESUME_SEED_MISMATCH: "C",
    ReasonCode.RESUME_TRANSFER_MISMATCH: "C",
    ReasonCode.RESUME_CURSOR_AHEAD: "C",
    ReasonCode.INVALID_TRANSITION: "C",
    ReasonCode.IO_FAILED: "D",  # beyond the reference runbook: the storage under a transfer failed
}

# The runbook's escalation policy: capability codes are compatibility drift (P0);
# integrity, conflicts and impossible transitions are reliability regressions (P1);
# exhausted retries and refused resumes are operational drift to look at (P2). A failed
# read or write of the source, target or checkpoint is P1 with conflicts: the bytes did not
# move and the cause is outside asup, so someone must fix the disk and resume before release.
LEVEL: dict[ReasonCode, Level] = {
    ReasonCode.UNSUPPORTED_CAPABILITY: Level.P0,
    ReasonCode.CAPABILITY_MISMATCH: Level.P0,
    ReasonCode.INTEGRITY_PRECHECK_FAILED: Level.P1,
    ReasonCode.RETRY_EXHAUSTED: Level.P2,
    ReasonCode.CONFLICT_DETECTED: Level.P1,
    ReasonCode.RESUME_SEED_MISMATCH: Level.P2,
    ReasonCode.RESUME_TRANSFER_MISMATCH: Level.P2,
    ReasonCode.RESUME_CURSOR_AHEAD: Level.P1,
    ReasonCode.INVALID_TRANSITION: Level.P1,
    ReasonCode.IO_FAILED: Level.P1,
}
