"""Why a transfer failed closed, in one line: the observation its `failed_closed`
transition was decided on, said the way an operator reads it ("adapter 'small_chunks'
allows chunk_size in [4096, 65536], requested 4194304"; "no space left on device:
out/.x.bin.asup-tmp (ENOSPC, target write)"). The adapter says it as it fails; the causes
projection says it again from the log.
"""

from __future__ import annotations

from events.observations import (
    CapabilityNegotiated,
    CheckpointRead,
    ChunkWritten,
    EpochRead,
    FaultMet,
    Intent,
    LeaseChecked,
    SourceHashed,
    StoreFailed,
    TargetHashed,
)
from events.payloads import Event, Transition
from events.vocabulary import FaultKind


def explain(failed: Transition, obs: Event | None, intent: Intent | None) -> str:  # noqa: C901 - one arm per observation type
    """The cause of `failed`, from the observation it was decided on."""
    match obs:
        case CapabilityNegotiated(detail=detail) if detail:
            return "; ".join(detail)
        case SourceHashed(digest=digest, size=size) if intent is not None:
            return f"the source hashes to {digest} ({size} bytes); the intent expects {intent.expected_checksum} ({intent.size} bytes)"
        case TargetHashed(digest=digest, size=size) if intent is not None:
            return f"the target hashes to {digest} ({size} bytes); expected {intent.expected_checksum} ({intent.size} bytes)"
        case LeaseChecked(holder=holder):
            return f"the target's lease is held by {holder or 'another transfer'}"
        case EpochRead(final_digest=final) if final and (intent is None or final != intent.expected_checksum):
            return f"the final name already holds another artifact ({final})"
        case EpochRead(epoch=epoch, chunk=chunk):
            return f"another writer changed the target before chunk {chunk} (epoch now {epoch})"
        case ChunkWritten(chunk=chunk, offset=offset, length=length, committed=committed):
            return f"chunk {chunk} left {committed} bytes committed, expected {offset + length}: the target fell behind"
        case FaultMet(kind=FaultKind.INTERRUPTION, detail=detail):
            budget = intent.max_attempts if intent is not None else "?"
            return f"interrupted with the retry budget ({budget}) spent: {detail}"
        case FaultMet(detail=detail):
            return detail
        case CheckpointRead() if intent is not None:
            return _resume_cause(obs, intent)
        case StoreFailed(detail=detail, error=error, where=where, op=op):
            return f"{detail} ({', '.join(filter(None, [error, f'{where} {op}']))})"
    return f"{failed.trigger} is not allowed from {failed.from_state}"


def _resume_cause(obs: CheckpointRead, intent: Intent) -> str:
    if obs.transfer_id != intent.transfer_id:
        return f"the checkpoint is of transfer {obs.transfer_id}, not {intent.transfer_id}"
    if obs.seed != intent.seed:
        return f"the checkpoint's seed is {obs.seed}, the intent's {intent.seed}"
    return f"the checkpoint counts {obs.committed_cursor} bytes committed, the target holds {obs.target_bytes}"
