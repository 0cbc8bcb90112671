"""Every reason code reached through the real SyncAdapter with real files, and the success
paths: terminal state, the last event of the stream, nothing under the final name, resume
refusals recorded before any side effect, byte-identical artifacts, the retry budget."""

from __future__ import annotations

import random
from pathlib import Path

import anyio
import msgspec
import pytest
from blake3 import blake3

from engine.adapter import SyncAdapter, TransferResult
from engine.appender import DirectAppender
from engine.contracts import load_profile
from engine.decide import backoff_ms
from engine.faults import SimulatedCrash
from engine.layout import MANIFEST_NAME, Layout, manifest_bytes
from engine.machine import make_dispatcher
from engine.stores import DirectoryStore
from engine.target_store import Forwarding, TargetHandle
from events.clock import StepClock
from events.memory_log import MemoryLog
from events.observations import (
    BackoffDrawn,
    CapabilityNegotiated,
    CheckpointRead,
    ChunkWritten,
    EpochRead,
    IntentRecorded,
    LeaseChecked,
    Observation,
    PrimitiveRequest,
    SourceHashed,
    TargetHashed,
)
from events.payloads import Transition
from events.record import Record
from events.vocabulary import TERMINAL_STATES, Mode, ReasonCode, State, Trigger
from tests.engine.conftest import (
    BUNDLE_NAME,
    BUNDLE_TARGET,
    CHUNK,
    FILE_NAME,
    FILE_SIZE,
    FILE_TARGET,
    SEED,
    Stores,
    faulty,
    make_intent,
    no_sleep,
    published_bundle,
    run_transfer,
    sessions_of,
    transitions_of,
    tree,
    types_of,
)

SIDE_EFFECT_TYPES = {"lease_checked", "epoch_read", "chunk_written", "fault_met", "checkpoint_written", "target_hashed", "target_finalized"}


# --- assertions ------------------------------------------------------------------------


class _KeepsAll(Forwarding):
    def tidy(self, completed: bool) -> None:
        """A process killed right after its terminal record leaves every file where it was."""


class Untidy:
    """A directory store whose handles never tidy up (as a process killed before it could)."""

    def __init__(self, inner: DirectoryStore) -> None:
        self.inner = inner

    def open(self, name: str, layout: Layout, kind: str) -> TargetHandle:
        return _KeepsAll(self.inner.open(name, layout, kind))

    def load_checkpoint(self, ref: str) -> bytes:
        return self.inner.load_checkpoint(ref)


def assert_failed_closed(
    result: TransferResult,
    records: list[Record],
    reason: ReasonCode,
    stores: Stores,
    target_name: str | None,
    *,
    foreign: dict[str, bytes] | bytes | None = None,
) -> Transition:
    """Terminal failed_closed with `reason`, recorded as the stream's last event, and no
    artifact of ours under the final name (a foreign one left byte-for-byte alone)."""
    assert result.state is State.FAILED_CLOSED
    assert result.reason_code is reason
    last = records[-1].data
    assert isinstance(last, Transition), f"last event is {records[-1].type}, not a transition"
    assert last.to_state is State.FAILED_CLOSED
    assert last.from_state is not State.FAILED_CLOSED
    assert last.reason_code is reason
    assert [t for t in transitions_of(records) if t.to_state in TERMINAL_STATES] == [last]
    if target_name is None:
        return last
    final = stores.final(target_name)
    if foreign is None:
        assert not final.exists() and not final.is_symlink(), f"{target_name} exists after failing closed"
    elif isinstance(foreign, bytes):
        assert final.read_bytes() == foreign
    else:
        assert tree(final) == foreign
    return last


def assert_completed(result: TransferResult, records: list[Record]) -> Transition:
    """Terminal completed, recorded last, after a target_hashed with the expected digest."""
    assert result.state is State.COMPLETED
    assert result.reason_code is None
    last = records[-1].data
    assert isinstance(last, Transition)
    assert (last.from_state, last.trigger, last.to_state) == (State.VERIFYING_CHECKSUM, Trigger.CHECKSUM_VALIDATED, State.COMPLETED)
    recorded = records[0].data
    assert isinstance(recorded, IntentRecorded)
    hashed = [r.data for r in sessions_of(records)[-1] if isinstance(r.data, TargetHashed)]
    assert len(hashed) == 1
    assert (hashed[0].digest, hashed[0].size) == (recorded.intent.expected_checksum, recorded.intent.size)
    return last


def assert_refused_before_side_effects(session: list[Record], reason: ReasonCode) -> None:
    """A resume refusal: intent, resume_requested, checkpoint_read, resume_rejected — nothing else."""
    assert types_of(session) == ["intent_recorded", "transition", "checkpoint_read", "transition"]
    requested, rejected = session[1].data, session[3].data
    assert isinstance(requested, Transition) and requested.trigger is Trigger.RESUME_REQUESTED
    assert isinstance(rejected, Transition)
    assert (rejected.from_state, rejected.trigger, rejected.to_state, rejected.reason_code) == (
        State.CAPABILITY_CHECK,
        Trigger.RESUME_REJECTED,
        State.FAILED_CLOSED,
        reason,
    )
    after = {r.type for r in session[session.index(session[2]) + 1 :]}
    assert not after & SIDE_EFFECT_TYPES


def crash_at(memory_log: MemoryLog, stores: Stores, faults: str, *, mode: Mode = Mode.HARDENED) -> None:
    """A first session that dies mid-transfer (as a SIGKILL would), leaving a checkpoint."""
    with pytest.raises(SimulatedCrash):
        run_transfer(memory_log, stores, make_intent(stores, mode=mode), faults=faults)
    assert Path(stores.checkpoint(FILE_TARGET)).is_file()
    assert not stores.final(FILE_TARGET).exists()


# --- capability negotiation -------------------------------------------------------------


def test_unsupported_capability_fails_closed_before_any_byte_moves(stores: Stores, memory_log: MemoryLog) -> None:
    """An adapter that lacks a primitive the class requires fails closed with unsupported_capability, touching no target file."""
    intent = make_intent(stores, artifact_class="benchmark_baseline_bundle", adapter="minimal")
    result, records = run_transfer(memory_log, stores, intent)
    assert_failed_closed(result, records, ReasonCode.UNSUPPORTED_CAPABILITY, stores, FILE_TARGET)
    assert types_of(records) == ["intent_recorded", "transition", "capability_negotiated", "transition"]
    negotiated = records[2].data
    assert isinstance(negotiated, CapabilityNegotiated)
    assert negotiated.outcome == "unsupported_capability"
    assert negotiated.offered["asupersync::replication::reconcile_epoch"] is None
    assert any("reconcile_epoch" in line for line in negotiated.detail)
    assert list(stores.target_dir.iterdir()) == []


def test_unknown_artifact_class_is_unsupported_capability(stores: Stores, memory_log: MemoryLog) -> None:
    """An intent whose class the matrix does not list (from another contract version: the CLI
    refuses such a typo before recording anything) still fails closed with unsupported_capability."""
    intent = msgspec.structs.replace(make_intent(stores), artifact_class="no_such_class")
    result, records = run_transfer(memory_log, stores, intent)
    assert_failed_closed(result, records, ReasonCode.UNSUPPORTED_CAPABILITY, stores, FILE_TARGET)
    assert list(stores.target_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("profile", "chunk_size", "primitive", "offered_version", "offered_params"),
    [
        ("legacy_protocol", CHUNK, "asupersync::remote::sync_manifest", 0, {"chunk_size_min": 4096, "chunk_size_max": 8388608}),
        ("sha256_only", CHUNK, "asupersync::checksum::verify_blake3", 1, {"algorithm": "sha256"}),
        ("small_chunks", 128 * 1024, "asupersync::remote::sync_manifest", 1, {"chunk_size_min": 4096, "chunk_size_max": 65536}),
    ],
)
def test_capability_mismatch_records_requested_and_offered_values(
    stores: Stores,
    memory_log: MemoryLog,
    profile: str,
    chunk_size: int,
    primitive: str,
    offered_version: int,
    offered_params: dict[str, str | int],
) -> None:
    """An adapter offering another version or parameter fails closed with capability_mismatch; the event carries both sides."""
    intent = make_intent(stores, adapter=profile, chunk_size=chunk_size)
    result, records = run_transfer(memory_log, stores, intent)
    assert_failed_closed(result, records, ReasonCode.CAPABILITY_MISMATCH, stores, FILE_TARGET)
    negotiated = records[2].data
    assert isinstance(negotiated, CapabilityNegotiated)
    assert negotiated.outcome == "capability_mismatch"
    assert negotiated.requested == intent.requested
    requested = {r.id: r for r in negotiated.requested}
    if profile == "small_chunks":
        assert requested[primitive].params["chunk_size"] == chunk_size
    offered = negotiated.offered[primitive]
    assert offered == PrimitiveRequest(primitive, offered_version, offered_params)
    assert offered != requested[primitive]
    assert negotiated.detail, "a mismatch names what differs"
    assert list(stores.target_dir.iterdir()) == []


def test_accepted_negotiation_records_requested_and_offered_values(stores: Stores, memory_log: MemoryLog) -> None:
    """The capability_negotiated event of an accepted transfer carries every requested primitive and the adapter's offer for it."""
    intent = make_intent(stores)
    result, records = run_transfer(memory_log, stores, intent)
    assert_completed(result, records)
    negotiated = next(r.data for r in records if isinstance(r.data, CapabilityNegotiated))
    assert negotiated.outcome == "accepted" and negotiated.detail == []
    assert negotiated.requested == intent.requested and len(intent.requested) == 3
    profile = load_profile("full")
    for request in intent.requested:
        offer = profile.primitives[request.id]
        assert negotiated.offered[request.id] == PrimitiveRequest(request.id, offer.version, dict(offer.params))
        assert negotiated.allowed[request.id] is not None


# --- integrity ---------------------------------------------------------------------------


def test_source_precheck_failure_when_source_changed_after_the_intent(stores: Stores, memory_log: MemoryLog) -> None:
    """A source that no longer matches the intent's checksum fails closed with integrity_precheck_failed before the first chunk."""
    intent = make_intent(stores)
    path = stores.source.path(FILE_NAME)
    data = bytearray(path.read_bytes())
    data[100] ^= 0x01
    path.write_bytes(bytes(data))
    result, records = run_transfer(memory_log, stores, intent)
    last = assert_failed_closed(result, records, ReasonCode.INTEGRITY_PRECHECK_FAILED, stores, FILE_TARGET)
    assert (last.from_state, last.trigger) == (State.CAPABILITY_CHECK, Trigger.PRECHECK_FAILED)
    hashed = records[-2].data
    assert isinstance(hashed, SourceHashed)
    assert hashed.digest == "blake3:" + blake3(bytes(data)).hexdigest() != intent.expected_checksum
    assert "chunk_written" not in types_of(records)
    assert list(stores.target_dir.iterdir()) == []


def test_source_precheck_failure_with_a_wrong_expected_checksum(stores: Stores, memory_log: MemoryLog) -> None:
    """An intent whose expected checksum the source does not hash to fails closed before any byte moves."""
    intent = make_intent(stores, expected_checksum="blake3:" + "0" * 64)
    result, records = run_transfer(memory_log, stores, intent)
    assert_failed_closed(result, records, ReasonCode.INTEGRITY_PRECHECK_FAILED, stores, FILE_TARGET)
    assert "chunk_written" not in types_of(records)
    assert list(stores.target_dir.iterdir()) == []


@pytest.mark.parametrize(("source", "target"), [(FILE_NAME, FILE_TARGET), (BUNDLE_NAME, BUNDLE_TARGET)])
def test_final_target_check_catches_a_corrupted_chunk(stores: Stores, memory_log: MemoryLog, source: str, target: str) -> None:
    """A chunk that lands corrupted is caught by the target's BLAKE3 before completed: integrity_precheck_failed."""
    intent = make_intent(stores, source, target)
    result, records = run_transfer(memory_log, stores, intent, faults="checksum_mismatch@1")
    last = assert_failed_closed(result, records, ReasonCode.INTEGRITY_PRECHECK_FAILED, stores, target)
    assert (last.from_state, last.trigger) == (State.VERIFYING_CHECKSUM, Trigger.CHECKSUM_MISMATCH)
    hashed = records[-3].data
    assert isinstance(hashed, TargetHashed)
    assert hashed.digest != intent.expected_checksum
    assert result.committed_cursor == intent.size  # every chunk committed: only the hash tells


# --- conflicts --------------------------------------------------------------------------


@pytest.mark.parametrize(("source", "target"), [(FILE_NAME, FILE_TARGET), (BUNDLE_NAME, BUNDLE_TARGET)])
def test_epoch_drift_is_a_conflict(stores: Stores, memory_log: MemoryLog, source: str, target: str) -> None:
    """Another writer changing the target mid-transfer fails closed with conflict_detected at the next epoch check."""
    intent = make_intent(stores, source, target)
    result, records = run_transfer(memory_log, stores, intent, faults="epoch_drift@1")
    last = assert_failed_closed(result, records, ReasonCode.CONFLICT_DETECTED, stores, target)
    assert last.trigger is Trigger.CONFLICT_DETECTED
    seen = records[-2].data
    assert isinstance(seen, EpochRead) and seen.chunk == 2
    assert result.committed_cursor == 2 * CHUNK


def test_partial_write_is_a_cursor_regression_conflict(stores: Stores, memory_log: MemoryLog) -> None:
    """A short write leaves the committed bytes behind the cursor: conflict_detected."""
    intent = make_intent(stores)
    result, records = run_transfer(memory_log, stores, intent, faults="partial_write@2")
    assert_failed_closed(result, records, ReasonCode.CONFLICT_DETECTED, stores, FILE_TARGET)
    written = records[-2].data
    assert isinstance(written, ChunkWritten)
    assert (written.chunk, written.offset, written.length) == (2, 2 * CHUNK, CHUNK)
    assert written.committed == 2 * CHUNK + CHUNK // 2 < written.offset + written.length
    assert result.committed_cursor == 2 * CHUNK  # the cursor never moved past what was committed


def test_a_concurrent_sync_holding_the_lease_is_a_conflict(stores: Stores, memory_log: MemoryLog) -> None:
    """A second sync to a target another sync holds fails closed with conflict_detected at once, leaving the first's bytes alone."""
    first, second = make_intent(stores), make_intent(stores, seed=SEED + 1)
    assert first.transfer_id != second.transfer_id and first.target == second.target
    holding, released = anyio.Event(), anyio.Event()
    results: dict[str, TransferResult] = {}
    temp_seen: list[bytes] = []
    dispatcher = make_dispatcher(True)

    async def first_backoff(_seconds: float) -> None:
        holding.set()  # the first sync is mid-transfer with its lease held
        await released.wait()

    async def run_first() -> None:
        adapter = SyncAdapter(
            appender=DirectAppender(memory_log),
            source=stores.source,
            target=faulty(stores.target, "interruption@2", CHUNK),
            dispatcher=dispatcher,
            clock=StepClock(),
            sleep=first_backoff,
        )
        results["first"] = await adapter.run(first)

    async def run_second() -> None:
        await holding.wait()
        temp_seen.append(stores.temp(FILE_TARGET).read_bytes())
        adapter = SyncAdapter(
            appender=DirectAppender(memory_log),
            source=stores.source,
            target=faulty(stores.target, "", CHUNK),
            dispatcher=dispatcher,
            clock=StepClock(),
            sleep=no_sleep,
        )
        results["second"] = await adapter.run(second)
        temp_seen.append(stores.temp(FILE_TARGET).read_bytes())
        assert not stores.final(FILE_TARGET).exists()
        released.set()

    async def both() -> None:
        async with anyio.create_task_group() as group:
            group.start_soon(run_first)
            group.start_soon(run_second)

    anyio.run(both)
    records = list(memory_log.read_stream(second.transfer_id))
    last = assert_failed_closed(results["second"], records, ReasonCode.CONFLICT_DETECTED, stores, None)
    assert last.from_state is State.SYNCING
    checked = records[-2].data
    assert isinstance(checked, LeaseChecked) and not checked.acquired
    assert not {"epoch_read", "chunk_written"} & set(types_of(records))
    assert temp_seen[0] == temp_seen[1] and len(temp_seen[0]) == 2 * CHUNK  # the holder's bytes untouched
    assert results["first"].state is State.COMPLETED
    assert stores.final(FILE_TARGET).read_bytes() == stores.source.path(FILE_NAME).read_bytes()


@pytest.mark.parametrize("kind", ["file", "bundle"])
def test_a_foreign_artifact_at_the_final_name_is_a_conflict(stores: Stores, memory_log: MemoryLog, kind: str) -> None:
    """A foreign artifact already under the final name fails closed with conflict_detected; its bytes stay untouched."""
    foreign: dict[str, bytes] | bytes
    if kind == "file":
        source, target = FILE_NAME, FILE_TARGET
        foreign = random.Random(1).randbytes(3 * CHUNK)
        stores.final(target).write_bytes(foreign)
    else:
        source, target = BUNDLE_NAME, BUNDLE_TARGET
        foreign = {"foreign.txt": b"not ours\n", "nested/data.bin": random.Random(2).randbytes(999)}
        for rel, data in foreign.items():
            path = stores.final(target) / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
    intent = make_intent(stores, source, target)
    result, records = run_transfer(memory_log, stores, intent)
    assert_failed_closed(result, records, ReasonCode.CONFLICT_DETECTED, stores, target, foreign=foreign)
    seen = records[-2].data
    assert isinstance(seen, EpochRead) and seen.chunk == -1 and seen.final_digest not in ("", intent.expected_checksum)
    assert "chunk_written" not in types_of(records)


def test_a_fresh_sync_onto_an_identical_final_artifact_ends_in_a_terminal_state(stores: Stores, memory_log: MemoryLog) -> None:
    """A second, fresh sync to a target that already holds the identical artifact ends in a terminal state (no exception escapes)."""
    result, _ = run_transfer(memory_log, stores, make_intent(stores))
    assert result.state is State.COMPLETED
    before = stores.final(FILE_TARGET).read_bytes()
    again, records = run_transfer(memory_log, stores, make_intent(stores, seed=SEED + 1))
    assert again.state in TERMINAL_STATES
    last = records[-1].data
    assert isinstance(last, Transition) and last.to_state is again.state
    assert stores.final(FILE_TARGET).read_bytes() == before


# --- retry budget and invalid transitions -----------------------------------------------


def test_hardened_interruptions_past_the_budget_are_retry_exhausted(stores: Stores, memory_log: MemoryLog) -> None:
    """Hardened mode retries up to max_attempts; the interruption past it fails closed with retry_exhausted."""
    intent = make_intent(stores)
    assert intent.max_attempts == 3
    result, records = run_transfer(memory_log, stores, intent, faults=",".join(["interruption@1"] * 4))
    last = assert_failed_closed(result, records, ReasonCode.RETRY_EXHAUSTED, stores, FILE_TARGET)
    assert (last.trigger, last.attempt) == (Trigger.RETRY_BUDGET_EXCEEDED, 3)
    interrupted = [t.attempt for t in transitions_of(records) if t.trigger is Trigger.TRANSPORT_INTERRUPTED]
    assert interrupted == [1, 2, 3]
    assert types_of(records).count("backoff_drawn") == 3


def test_strict_mode_fails_closed_on_the_first_interruption(stores: Stores, memory_log: MemoryLog) -> None:
    """Strict mode has no retry budget: the first transport interruption fails closed with retry_exhausted."""
    intent = make_intent(stores, mode=Mode.STRICT)
    assert intent.max_attempts == 0
    result, records = run_transfer(memory_log, stores, intent, faults="interruption@2")
    last = assert_failed_closed(result, records, ReasonCode.RETRY_EXHAUSTED, stores, FILE_TARGET)
    assert (last.trigger, last.attempt, last.committed_cursor) == (Trigger.RETRY_BUDGET_EXCEEDED, 0, 2 * CHUNK)
    assert "backoff_drawn" not in types_of(records)
    assert Trigger.TRANSPORT_INTERRUPTED not in {t.trigger for t in transitions_of(records)}


def test_late_ack_during_verification_is_an_invalid_transition(stores: Stores, memory_log: MemoryLog) -> None:
    """An acknowledgement arriving during verification is a trigger the table forbids there: invalid_transition, nothing published."""
    intent = make_intent(stores)
    result, records = run_transfer(memory_log, stores, intent, faults="late_ack@2")
    last = assert_failed_closed(result, records, ReasonCode.INVALID_TRANSITION, stores, FILE_TARGET)
    assert (last.from_state, last.trigger) == (State.VERIFYING_CHECKSUM, Trigger.CHUNK_COMMITTED)
    assert types_of(records)[-2] == "fault_met"
    assert "target_finalized" not in types_of(records)


# --- resume refusals --------------------------------------------------------------------


def test_resume_cursor_ahead_of_the_target_is_refused_before_any_side_effect(stores: Stores, memory_log: MemoryLog) -> None:
    """A checkpoint claiming bytes the target lost is refused with resume_cursor_ahead before touching the target."""
    crash_at(memory_log, stores, "crash@3")
    temp = stores.temp(FILE_TARGET)
    temp.write_bytes(temp.read_bytes()[:CHUNK])
    before, checkpoint_before = temp.read_bytes(), Path(stores.checkpoint(FILE_TARGET)).read_bytes()
    intent = make_intent(stores)
    result, records = run_transfer(memory_log, stores, intent, resume_from=stores.checkpoint(FILE_TARGET))
    assert_failed_closed(result, records, ReasonCode.RESUME_CURSOR_AHEAD, stores, FILE_TARGET)
    session = sessions_of(records)[-1]
    assert_refused_before_side_effects(session, ReasonCode.RESUME_CURSOR_AHEAD)
    read = session[2].data
    assert isinstance(read, CheckpointRead)
    assert (read.committed_cursor, read.target_bytes) == (3 * CHUNK, CHUNK)
    assert temp.read_bytes() == before
    assert Path(stores.checkpoint(FILE_TARGET)).read_bytes() == checkpoint_before


def test_resume_with_another_transfers_checkpoint_is_refused(stores: Stores, memory_log: MemoryLog) -> None:
    """Resuming from a checkpoint of another transfer is refused with resume_transfer_mismatch before any side effect."""
    crash_at(memory_log, stores, "crash@2")
    before = stores.temp(FILE_TARGET).read_bytes()
    intent = make_intent(stores, transfer_id="t-another-transfer")
    result, records = run_transfer(memory_log, stores, intent, resume_from=stores.checkpoint(FILE_TARGET))
    assert_failed_closed(result, records, ReasonCode.RESUME_TRANSFER_MISMATCH, stores, FILE_TARGET)
    assert_refused_before_side_effects(records, ReasonCode.RESUME_TRANSFER_MISMATCH)
    assert stores.temp(FILE_TARGET).read_bytes() == before


def test_resume_with_a_stale_checkpoint_seed_is_refused(stores: Stores, memory_log: MemoryLog) -> None:
    """A checkpoint read back with stale metadata (another seed) is refused with resume_seed_mismatch before any side effect."""
    crash_at(memory_log, stores, "crash@2")
    before = stores.temp(FILE_TARGET).read_bytes()
    intent = make_intent(stores)
    result, records = run_transfer(memory_log, stores, intent, faults="stale_metadata", resume_from=stores.checkpoint(FILE_TARGET))
    assert_failed_closed(result, records, ReasonCode.RESUME_SEED_MISMATCH, stores, FILE_TARGET)
    session = sessions_of(records)[-1]
    assert_refused_before_side_effects(session, ReasonCode.RESUME_SEED_MISMATCH)
    read = session[2].data
    assert isinstance(read, CheckpointRead) and read.seed == SEED + 1
    assert stores.temp(FILE_TARGET).read_bytes() == before


def test_resume_with_another_seed_is_refused(stores: Stores, memory_log: MemoryLog) -> None:
    """A resume whose intent carries another seed than the checkpoint is refused with resume_seed_mismatch."""
    crash_at(memory_log, stores, "crash@2")
    before = stores.temp(FILE_TARGET).read_bytes()
    original = make_intent(stores)
    intent = make_intent(stores, seed=SEED + 7, transfer_id=original.transfer_id)
    result, records = run_transfer(memory_log, stores, intent, resume_from=stores.checkpoint(FILE_TARGET))
    assert_failed_closed(result, records, ReasonCode.RESUME_SEED_MISMATCH, stores, FILE_TARGET)
    assert_refused_before_side_effects(sessions_of(records)[-1], ReasonCode.RESUME_SEED_MISMATCH)
    assert stores.temp(FILE_TARGET).read_bytes() == before


# --- success ----------------------------------------------------------------------------


@pytest.mark.parametrize("lever", [True, False], ids=["lever", "machine"])
def test_a_file_arrives_byte_identical(stores: Stores, memory_log: MemoryLog, lever: bool) -> None:
    """A clean file transfer completes and the target is byte-identical to the source; no temp is left."""
    intent = make_intent(stores)
    result, records = run_transfer(memory_log, stores, intent, lever=lever)
    assert_completed(result, records)
    assert stores.final(FILE_TARGET).read_bytes() == stores.source.path(FILE_NAME).read_bytes()
    assert not stores.temp(FILE_TARGET).exists()
    triggers = [t.trigger for t in transitions_of(records)]
    chunks = -(-FILE_SIZE // CHUNK)
    assert triggers == [
        Trigger.START,
        Trigger.CAPABILITY_ACCEPTED,
        *[Trigger.CHUNK_COMMITTED] * chunks,
        Trigger.CHECKSUM_VERIFICATION_STARTED,
        Trigger.CHECKSUM_VALIDATED,
    ]
    assert result.committed_cursor == FILE_SIZE and result.attempt == 0


@pytest.mark.parametrize("lever", [True, False], ids=["lever", "machine"])
def test_a_bundle_arrives_with_every_file_and_its_manifest(stores: Stores, memory_log: MemoryLog, lever: bool) -> None:
    """A bundle transfer publishes every source file byte-identical plus the manifest whose BLAKE3 is the bundle's checksum."""
    intent = make_intent(stores, BUNDLE_NAME, BUNDLE_TARGET)
    assert intent.kind == "bundle" and len(intent.files) == 4
    result, records = run_transfer(memory_log, stores, intent, lever=lever)
    assert_completed(result, records)
    assert published_bundle(stores, BUNDLE_TARGET) == stores.source_tree(BUNDLE_NAME)
    manifest = (stores.final(BUNDLE_TARGET) / MANIFEST_NAME).read_bytes()
    assert manifest == manifest_bytes(intent.files)
    assert "blake3:" + blake3(manifest).hexdigest() == intent.expected_checksum
    assert not stores.temp(BUNDLE_TARGET).exists()


def test_hardened_retry_then_completed_with_seeded_backoff(stores: Stores, memory_log: MemoryLog) -> None:
    """Hardened retries: attempts count 1, 2; each backoff_drawn delay is backoff_ms(seed, attempt) and is what the adapter sleeps."""
    slept: list[float] = []

    async def record_sleep(seconds: float) -> None:
        slept.append(seconds)

    intent = make_intent(stores)
    result, records = run_transfer(memory_log, stores, intent, faults="interruption@1,interruption@3", sleep=record_sleep)
    assert_completed(result, records)
    assert result.attempt == 2
    assert stores.final(FILE_TARGET).read_bytes() == stores.source.path(FILE_NAME).read_bytes()
    drawn = [r.data for r in records if isinstance(r.data, BackoffDrawn)]
    assert [(b.attempt, b.delay_ms) for b in drawn] == [(1, backoff_ms(SEED, 1)), (2, backoff_ms(SEED, 2))]
    assert slept == [backoff_ms(SEED, 1) / 1000, backoff_ms(SEED, 2) / 1000]
    interrupted = [t.attempt for t in transitions_of(records) if t.trigger is Trigger.TRANSPORT_INTERRUPTED]
    assert interrupted == [1, 2]
    attempts = [t.attempt for t in transitions_of(records)]
    assert attempts == sorted(attempts) and attempts[-1] == 2


def test_backoff_is_deterministic_bounded_and_exponential() -> None:
    """backoff_ms is a pure function of (seed, attempt): full jitter within [ceiling/2, ceiling], ceiling doubling up to the cap."""
    for attempt in range(1, 12):
        ceiling = min(1000, 10 * 2 ** (attempt - 1))
        delays = {backoff_ms(seed, attempt) for seed in range(40)}
        assert all(ceiling // 2 <= d <= ceiling for d in delays)
        assert backoff_ms(3, attempt) == backoff_ms(3, attempt)
    assert len({backoff_ms(seed, 8) for seed in range(40)}) > 1, "jitter depends on the seed"


def test_resume_after_a_crash_completes_byte_identical(stores: Stores, memory_log: MemoryLog) -> None:
    """A session that crashed after a retried interruption is resumed from its checkpoint: attempt carried over, bytes identical."""
    crash_at(memory_log, stores, "interruption@1,crash@3")
    checkpoint = msgspec.json.decode(Path(stores.checkpoint(FILE_TARGET)).read_bytes())
    assert checkpoint["committed_cursor"] == 3 * CHUNK and checkpoint["attempt"] == 1
    intent = make_intent(stores)
    result, records = run_transfer(memory_log, stores, intent, resume_from=stores.checkpoint(FILE_TARGET))
    assert_completed(result, records)
    assert stores.final(FILE_TARGET).read_bytes() == stores.source.path(FILE_NAME).read_bytes()
    session = sessions_of(records)[-1]
    moves = [(t.trigger, t.to_state) for t in transitions_of(session)][:2]
    assert moves == [(Trigger.RESUME_REQUESTED, State.CAPABILITY_CHECK), (Trigger.RESUME_APPLIED, State.SYNCING)]
    written = [r.data for r in session if isinstance(r.data, ChunkWritten)]
    assert written[0].offset == 3 * CHUNK
    assert {t.attempt for t in transitions_of(session)[1:]} == {1}  # carried over from the checkpoint once it is read


@pytest.mark.parametrize(("source", "target"), [(FILE_NAME, FILE_TARGET), (BUNDLE_NAME, BUNDLE_TARGET)])
def test_resume_after_the_rename_finishes_idempotently(stores: Stores, memory_log: MemoryLog, source: str, target: str) -> None:
    """A crash between the rename and `completed` is finished on resume: the final artifact with the right digest -> completed."""
    intent = make_intent(stores, source, target)
    first, _ = run_transfer(memory_log, stores, intent, target=Untidy(stores.target))  # killed before it tidied up
    assert first.state is State.COMPLETED
    published = tree(stores.final(target)) if intent.kind == "bundle" else stores.final(target).read_bytes()
    # On disk this is exactly what a process killed after the rename, before `completed`, leaves.
    result, records = run_transfer(memory_log, stores, intent, resume_from=stores.checkpoint(target))
    assert result.state is State.COMPLETED, f"resume ended {result.state} {result.reason_code}"
    assert_completed(result, records)
    assert "chunk_written" not in types_of(sessions_of(records)[-1])
    now = tree(stores.final(target)) if intent.kind == "bundle" else stores.final(target).read_bytes()
    assert now == published


def test_an_empty_file_transfers(stores: Stores, memory_log: MemoryLog) -> None:
    """A zero-byte file completes and arrives as a zero-byte file."""
    (stores.source_dir / "empty.bin").write_bytes(b"")
    intent = make_intent(stores, "empty.bin", "empty.out")
    result, records = run_transfer(memory_log, stores, intent)
    assert result.state is State.COMPLETED, f"ended {result.state} {result.reason_code}"
    assert_completed(result, records)
    assert stores.final("empty.out").read_bytes() == b""


def test_a_bundle_with_an_empty_member_transfers(stores: Stores, memory_log: MemoryLog) -> None:
    """A bundle holding a zero-byte file (e.g. a .keep marker) completes with that file published."""
    (stores.source.path(BUNDLE_NAME) / "fixtures" / ".keep").write_bytes(b"")
    intent = make_intent(stores, BUNDLE_NAME, BUNDLE_TARGET)
    result, records = run_transfer(memory_log, stores, intent)
    assert result.state is State.COMPLETED, f"ended {result.state} {result.reason_code}"
    assert_completed(result, records)
    assert published_bundle(stores, BUNDLE_TARGET) == stores.source_tree(BUNDLE_NAME)


def test_a_bundle_never_publishes_leftovers_of_an_earlier_failed_transfer(stores: Stores, memory_log: MemoryLog) -> None:
    """After a failed transfer of an older bundle version, a clean transfer of the new version publishes exactly the new files."""
    bundle = stores.source.path(BUNDLE_NAME)
    (bundle / "old.bin").write_bytes(random.Random(3).randbytes(2 * CHUNK))
    failed, _ = run_transfer(memory_log, stores, make_intent(stores, BUNDLE_NAME, BUNDLE_TARGET), faults="partial_write@4")
    assert failed.reason_code is ReasonCode.CONFLICT_DETECTED
    (bundle / "old.bin").unlink()
    result, _ = run_transfer(memory_log, stores, make_intent(stores, BUNDLE_NAME, BUNDLE_TARGET, seed=SEED + 1))
    assert result.state is State.COMPLETED
    assert published_bundle(stores, BUNDLE_TARGET) == stores.source_tree(BUNDLE_NAME)


# --- ordering ---------------------------------------------------------------------------

CAUSES: dict[Trigger, set[str]] = {
    Trigger.START: {"intent_recorded"},
    Trigger.RESUME_REQUESTED: {"intent_recorded"},
    Trigger.CAPABILITY_REJECTED: {"capability_negotiated"},
    Trigger.CAPABILITY_ACCEPTED: {"source_hashed"},
    Trigger.PRECHECK_FAILED: {"source_hashed"},
    Trigger.RESUME_APPLIED: {"checkpoint_read", "backoff_drawn"},
    Trigger.RESUME_REJECTED: {"checkpoint_read"},
    Trigger.CONFLICT_DETECTED: {"lease_checked", "epoch_read", "chunk_written"},
    Trigger.CHUNK_COMMITTED: {"chunk_written", "fault_met"},
    Trigger.TRANSPORT_INTERRUPTED: {"fault_met"},
    Trigger.RETRY_BUDGET_EXCEEDED: {"fault_met"},
    Trigger.CHECKSUM_VERIFICATION_STARTED: {"target_hashed"},
    Trigger.CHECKSUM_MISMATCH: {"target_hashed"},
    Trigger.CHECKSUM_VALIDATED: {"target_finalized"},
}


@pytest.mark.parametrize(
    "faults", ["", "interruption@1,interruption@4", "late_ack@0", "epoch_drift@3", "partial_write@1", "checksum_mismatch@5"]
)
def test_every_transition_follows_the_observation_that_decided_it(stores: Stores, memory_log: MemoryLog, faults: str) -> None:
    """Each transition is recorded after the observation it was decided from (the nearest earlier observation is its cause)."""
    intent = make_intent(stores)
    _, records = run_transfer(memory_log, stores, intent, faults=faults)
    started = records[0].data
    assert isinstance(started, IntentRecorded)
    cause: Observation | None = None
    cause_seq = 0
    for record in records:
        if isinstance(record.data, Observation):
            cause, cause_seq = record.data, record.seq
            continue
        assert isinstance(record.data, Transition)
        assert cause is not None and cause_seq < record.seq
        assert cause.TYPE in CAUSES[record.data.trigger], f"{record.data.trigger} decided from {cause.TYPE}"
        assert record.data.duration_ms == (cause.at_ns - started.at_ns) / 1e6
