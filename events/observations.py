"""Observation events: every input the adapter saw, recorded before a decision uses it,
so that replay needs nothing but the log. `at_ns` is the injected clock's reading."""

from __future__ import annotations

import msgspec

from events.payloads import Event, event_type
from events.strict_json import JsonInt
from events.vocabulary import FaultKind, Mode, NegotiationOutcome

ParamValue = str | JsonInt


class PrimitiveRequest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A primitive the transfer asks for, at a version, with parameters."""

    id: str
    version: JsonInt
    params: dict[str, ParamValue] = msgspec.field(default_factory=dict)


class BundleFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    path: str  # relative, '/'-separated
    size: JsonInt
    digest: str


class Intent(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """What a transfer is asked to do. Recorded whole, first, in every transfer's stream."""

    transfer_id: str
    artifact_id: str
    artifact_class: str
    mode: Mode
    seed: JsonInt
    expected_checksum: str
    size: JsonInt
    max_attempts: JsonInt
    chunk_size: JsonInt
    source: str
    target: str
    adapter: str
    requested: list[PrimitiveRequest]
    kind: str = "file"  # file | bundle
    files: list[BundleFile] = msgspec.field(default_factory=list)  # a bundle's manifest entries
    replay_command: str = ""
    env_fingerprint: str = ""
    # absolute paths as the CLI resolved them ("" from a library caller or an older asup):
    # `asup resume` and the stale check find the artifact's files from the log alone
    source_path: str = ""
    target_path: str = ""


class Observation(Event, frozen=True, kw_only=True):
    at_ns: JsonInt = 0


@event_type("intent_recorded")
class IntentRecorded(Observation, frozen=True):
    intent: Intent
    resume: bool = False  # this session resumes from a checkpoint


@event_type("capability_negotiated")
class CapabilityNegotiated(Observation, frozen=True):
    outcome: NegotiationOutcome
    requested: list[PrimitiveRequest]
    offered: dict[str, PrimitiveRequest | None]  # what the adapter profile offers, per requested id
    allowed: dict[str, PrimitiveRequest | None]  # what the matrix allows for the class and mode
    detail: list[str] = msgspec.field(default_factory=list)


@event_type("source_hashed")
class SourceHashed(Observation, frozen=True):
    digest: str
    size: JsonInt


@event_type("lease_checked")
class LeaseChecked(Observation, frozen=True):
    acquired: bool
    holder: str = ""


@event_type("store_failed")
class StoreFailed(Observation, frozen=True):
    """A store call failed after the intent was recorded. `kind`: `io` (the OS refused:
    `errno` and its name in `error`), `refused` (something planted at a name asup owns
    appeared meanwhile) or `conflict` (the store found another writer's artifact)."""

    kind: str
    where: str  # source | target | checkpoint
    op: str  # the store call: read, write, lease, publish, ...
    path: str
    errno: JsonInt = 0
    error: str = ""  # e.g. ENOSPC
    detail: str = ""  # the one line an operator reads: "no space left on device: out/x.bin"


@event_type("epoch_read")
class EpochRead(Observation, frozen=True):
    epoch: str
    chunk: JsonInt  # the chunk about to be committed (-1: before the first)
    final_digest: str = ""  # what the target holds under the final name ("" nothing), read at chunk -1


@event_type("chunk_written")
class ChunkWritten(Observation, frozen=True):
    chunk: JsonInt
    offset: JsonInt
    length: JsonInt
    digest: str  # BLAKE3 of the bytes read from the source
    committed: JsonInt  # bytes the target reports durable after the write
    epoch: str  # the target's epoch after our write


@event_type("fault_met")
class FaultMet(Observation, frozen=True):
    kind: FaultKind  # interruption | late_ack
    chunk: JsonInt
    detail: str = ""


@event_type("backoff_drawn")
class BackoffDrawn(Observation, frozen=True):
    attempt: JsonInt
    delay_ms: JsonInt


@event_type("checkpoint_written")
class CheckpointWritten(Observation, frozen=True):
    name: str
    committed_cursor: JsonInt
    attempt: JsonInt
    stream_digest: str


@event_type("checkpoint_read")
class CheckpointRead(Observation, frozen=True):
    transfer_id: str
    seed: JsonInt
    attempt: JsonInt
    committed_cursor: JsonInt
    stream_digest: str
    target_bytes: JsonInt  # bytes the target's temporary artifact holds
    finalized: bool = False  # the final artifact already exists with the expected digest


@event_type("target_hashed")
class TargetHashed(Observation, frozen=True):
    digest: str
    size: JsonInt


@event_type("target_finalized")
class TargetFinalized(Observation, frozen=True):
    name: str
    digest: str


@event_type("suspended")
class Suspended(Observation, frozen=True):
    """The transfer stopped at a chunk boundary on a signal: a marker, not a transition
    (the state stays `syncing`); `asup resume` continues from `checkpoint`."""

    signal: str  # SIGINT | SIGTERM
    checkpoint: str  # the checkpoint file's name it resumes from ("" none yet: a resume starts at 0)
    committed_cursor: JsonInt
