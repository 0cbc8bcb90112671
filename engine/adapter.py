"""The sync adapter: moves an artifact's bytes from a source store to a target store,
recording every observation before the decision that uses it and every state change as a
`transition` event.

The driver does the I/O and asks `decide` what each observation means; the dispatcher
(transitions.Machine, or the compiled lever) says where that leads. It stops at the first
terminal state. Order of a fresh transfer: intent -> negotiation -> source precheck ->
lease -> epoch -> (epoch check, chunk, checkpoint)* -> epoch check -> target hash ->
publish (fsync, rename without replacing, fsync dir) -> completed. A resume replaces
negotiation and precheck with the checkpoint check, before any side effect. The target is
reached through one handle per transfer (`TargetStore.open`), closed when it ends.
"""

from __future__ import annotations

import contextlib
from collections.abc import Awaitable, Callable

import anyio
import msgspec
from blake3 import blake3

from engine import checkpoint as ckpt
from engine.appender import Appender
from engine.causes import explain
from engine.contracts import AdapterProfile, CapabilityMatrix, default_matrix, load_profile
from engine.decide import Progress, backoff_ms, decide
from engine.layout import Layout, bundle_digest
from engine.liveness import holder_for
from engine.machine import Dispatcher, TransferModel
from engine.negotiation import negotiate
from engine.rules import Step
from engine.stop import StopRequest
from engine.store_faults import Guarded, GuardedHandle, Refused, StoreFault, describe
from engine.stores import LateAck, SourceStore, TargetHandle, TargetStore, TransportInterrupted
from engine.target_store import UNKNOWN
from events.clock import Clock, SystemClock
from events.errors import AsupError
from events.observations import (
    BackoffDrawn,
    BundleFile,
    CheckpointRead,
    CheckpointWritten,
    ChunkWritten,
    EpochRead,
    FaultMet,
    Intent,
    IntentRecorded,
    LeaseChecked,
    Observation,
    SourceHashed,
    Suspended,
    TargetFinalized,
    TargetHashed,
)
from events.payloads import Event, Transition
from events.record import encode_payload
from events.store import Pending
from events.vocabulary import FaultKind, ReasonCode, State

Sleep = Callable[[float], Awaitable[None]]


class TransferResult(msgspec.Struct, frozen=True):
    transfer_id: str
    state: State
    reason_code: ReasonCode | None
    attempt: int
    committed_cursor: int
    events: int
    cause: str = ""  # why it failed closed, in one line (engine.causes)
    refused: str = ""  # why it never started (nothing recorded): the error's one line
    suspended: bool = False  # stopped on a signal at a chunk boundary: still syncing, resumable


class SyncAdapter:
    """One transfer's driver. Shares the appender and dispatcher with other transfers."""

    def __init__(
        self,
        *,
        appender: Appender,
        source: SourceStore,
        target: TargetStore,
        dispatcher: Dispatcher,
        clock: Clock | None = None,
        matrix: CapabilityMatrix | None = None,
        profile: AdapterProfile | None = None,
        sleep: Sleep = anyio.sleep,
        stop: StopRequest | None = None,
        on_chunk: Callable[[int], None] | None = None,
    ) -> None:
        self.appender = appender
        self.on_chunk = on_chunk  # told the committed cursor after each chunk (a progress bar)
        self.source = Guarded(source)
        self.target = target
        self.dispatcher = dispatcher
        self.clock = clock or SystemClock()
        self.matrix = matrix or default_matrix()
        self.profile = profile
        self.sleep = sleep
        self.stop = stop
        self.suspended = False
        self.progress = Progress()
        self.reason: ReasonCode | None = None
        self.events = 0
        self._model: TransferModel | None = None
        self._version = 0
        self._pending: list[Event] = []
        self._stream_digest = ""
        self._chunk_digests: list[str] = []  # per chunk, from the precheck's pass (a fresh file transfer)
        self._handle: TargetHandle | None = None
        self.checkpoint_ref: str | None = None  # the checkpoint a later process resumes from, once there is one
        self.cause = ""
        self.store_error: BaseException | None = None  # what a store raised, once a store_failed records it

    # --- the transfer ---------------------------------------------------------------

    async def run(self, intent: Intent, resume_from: str | None = None) -> TransferResult:
        try:
            self._handle = GuardedHandle(self.target.open(intent.target, _layout(intent), intent.kind))
        except AsupError as exc:  # a bad or planted name: nothing recorded
            raise Refused(exc) from exc
        self._model = TransferModel(intent.transfer_id, self.dispatcher.rules.initial)
        self.dispatcher.add(self._model)
        self._stream_digest = payload_chain("", intent.transfer_id)
        self._version, _ = self.appender.stream_head(intent.transfer_id)
        try:
            try:
                await self._run(intent, resume_from)
            except StoreFault as fault:  # after the intent: recorded, so no transfer stays `syncing` for ever
                self.store_error = fault.__cause__
                await self._observe(msgspec.structs.replace(fault.observed, at_ns=self._now()))
        finally:
            self._handle.close()
            self.dispatcher.remove(self._model)
        p = self.progress
        return TransferResult(
            intent.transfer_id, self.state, self.reason, p.attempt, p.cursor, self.events, self.cause, suspended=self.suspended
        )

    @property
    def state(self) -> State:
        assert self._model is not None
        return State(self._model.state)

    @property
    def handle(self) -> TargetHandle:
        assert self._handle is not None
        return self._handle

    async def _run(self, intent: Intent, resume_from: str | None) -> None:
        resuming = resume_from is not None
        if await self._observe(IntentRecorded(intent=intent, resume=resuming, at_ns=self._now())):
            return
        if resume_from is None:
            finalized = False
            if await self._open_fresh(intent):
                return
        else:
            finalized, stop = await self._open_resume(intent, resume_from)
            if stop:
                return
        at_ns = self._now()  # one reading, as before: the lease's start is the observation's time
        lease = self.handle.lease(holder_for(intent.transfer_id, at_ns))
        if await self._observe(LeaseChecked(acquired=lease is not None, holder="" if lease else self.handle.lease_holder(), at_ns=at_ns)):
            return
        assert lease is not None
        try:
            await self._transfer(intent, finalized)
        finally:
            if self.dispatcher.rules.is_terminal(self.state):  # recorded: the flush at a terminal state came first
                with contextlib.suppress(StoreFault):  # what is left is `asup clean`'s to remove, never the transfer's failure
                    self.handle.tidy(self.state is State.COMPLETED)
            lease.release()

    async def _open_fresh(self, intent: Intent) -> bool:
        profile = self.profile or load_profile(intent.adapter)
        if await self._observe(negotiate(intent, self.matrix, profile, at_ns=self._now())):
            return True
        if intent.kind == "file":  # the one pass also gives the digests the chunk commits record
            digest, size, self._chunk_digests = self.source.hash_chunks(intent.source, intent.chunk_size)
        else:
            _, files = self.source.manifest(intent.source)
            digest, size = bundle_digest(files), sum(f.size for f in files)
        return await self._observe(SourceHashed(digest=digest, size=size, at_ns=self._now()))

    async def _open_resume(self, intent: Intent, resume_from: str) -> tuple[bool, bool]:
        try:
            checkpoint = ckpt.decode(self.target.load_checkpoint(resume_from), resume_from)
        except (AsupError, OSError) as exc:  # the caller checked it before the intent: it changed since
            raise StoreFault(msgspec.structs.replace(describe(exc, "checkpoint", "read"), kind="io")) from exc
        self.checkpoint_ref = resume_from
        self._stream_digest = payload_chain(checkpoint.stream_digest, intent.transfer_id)
        held = self.handle.held()
        finalized = held.final is not None and held.final[0] == intent.expected_checksum
        observed = CheckpointRead(
            transfer_id=checkpoint.transfer_id,
            seed=checkpoint.seed,
            attempt=checkpoint.attempt,
            committed_cursor=checkpoint.committed_cursor,
            stream_digest=checkpoint.stream_digest,
            target_bytes=held.size,
            finalized=finalized,
            at_ns=self._now(),
        )
        return finalized, await self._observe(observed)

    async def _transfer(self, intent: Intent, finalized: bool) -> None:
        layout = _layout(intent)
        p = self.progress
        final = self._final_digest()
        done = finalized or final == intent.expected_checksum  # the artifact is already there: finish idempotently
        if not done:
            self.handle.prepare(p.cursor)
        if await self._observe(EpochRead(epoch=self.handle.epoch(), chunk=-1, final_digest=final, at_ns=self._now())):
            return
        while p.cursor < intent.size:
            if self.stop is not None and self.stop.requested:
                await self._suspend()
                return
            if await self._chunk(intent, layout):
                return
        chunks = -(-intent.size // intent.chunk_size)
        final = self._final_digest()  # a final artifact that appeared meanwhile is another writer's
        if await self._observe(EpochRead(epoch=self.handle.epoch(), chunk=chunks, final_digest=final, at_ns=self._now())):
            return
        await self._verify(intent, done)

    def _final_digest(self) -> str:
        final = self.handle.held().final
        return final[0] if final else ""

    async def _chunk(self, intent: Intent, layout: Layout) -> bool:
        p = self.progress
        index, offset = p.cursor // intent.chunk_size, p.cursor
        if await self._observe(EpochRead(epoch=self.handle.epoch(), chunk=index, at_ns=self._now()), flush=False):
            return True
        data = self.source.read(intent.source, layout, offset, min(intent.chunk_size, intent.size - offset))
        try:
            committed, epoch = self.handle.write(offset, data)
        except TransportInterrupted as exc:
            if await self._observe(FaultMet(kind=FaultKind.INTERRUPTION, chunk=index, detail=str(exc), at_ns=self._now())):
                return True
            delay = backoff_ms(intent.seed, p.attempt)
            if await self._observe(BackoffDrawn(attempt=p.attempt, delay_ms=delay, at_ns=self._now())):
                return True
            await self.sleep(delay / 1000)
            return False
        written = ChunkWritten(
            chunk=index,
            offset=offset,
            length=len(data),
            digest=self._chunk_digest(intent, offset, data),
            committed=committed,
            epoch=epoch,
            at_ns=self._now(),
        )
        if await self._observe(written, flush=False):
            return True
        if self.on_chunk is not None:
            self.on_chunk(p.cursor)
        return await self._checkpoint(intent)

    def _chunk_digest(self, intent: Intent, offset: int, data: bytes) -> str:
        """The source's chunk as the precheck hashed it (the BLAKE3 check of the target
        before `completed` catches a source that changed since); after a resume, or for a
        piece the precheck did not hash whole, hashed now."""
        index, whole = divmod(offset, intent.chunk_size)
        if not whole and index < len(self._chunk_digests) and len(data) == min(intent.chunk_size, intent.size - offset):
            return self._chunk_digests[index]
        return "blake3:" + blake3(data, max_threads=blake3.AUTO).hexdigest()

    async def _checkpoint(self, intent: Intent) -> bool:
        p = self.progress
        await self._flush()  # the checkpoint names the digest of committed events only
        stream_digest = self._stream_digest
        state = ckpt.Checkpoint(
            transfer_id=intent.transfer_id,
            seed=intent.seed,
            attempt=p.attempt,
            committed_cursor=p.cursor,
            stream_digest=stream_digest,
            artifact=intent.target,
        )
        name = self.checkpoint_ref = self.handle.checkpoint(ckpt.encode(state))
        written = CheckpointWritten(
            name=name.rsplit("/", 1)[-1], committed_cursor=p.cursor, attempt=p.attempt, stream_digest=stream_digest, at_ns=self._now()
        )
        return await self._observe(written, flush=False)  # rides with the next chunk's events

    async def _suspend(self) -> None:
        """Record the stop at this chunk boundary (the chunk in hand is checkpointed): the
        state stays `syncing`, and the lease and handle are released by the callers."""
        assert self.stop is not None
        name = self.checkpoint_ref.rsplit("/", 1)[-1] if self.checkpoint_ref else ""
        cursor = self.progress.cursor
        await self._observe(Suspended(signal=self.stop.signal, checkpoint=name, committed_cursor=cursor, at_ns=self._now()))
        self.suspended = True

    async def _verify(self, intent: Intent, finalized: bool) -> None:
        if finalized:
            final = self.handle.held().final
            digest, size = final if final else UNKNOWN
        else:
            digest, size = self.handle.digest()
        if await self._observe(TargetHashed(digest=digest, size=size, at_ns=self._now())):
            return
        if not finalized:
            try:
                self.handle.publish()
            except LateAck as exc:
                await self._observe(FaultMet(kind=FaultKind.LATE_ACK, chunk=exc.chunk, detail=str(exc), at_ns=self._now()))
                return
        await self._observe(TargetFinalized(name=intent.target, digest=digest, at_ns=self._now()))

    # --- recording ---------------------------------------------------------------------

    async def _observe(self, obs: Observation, *, flush: bool = True) -> bool:
        """Queue `obs` and the transitions it decides; True at a terminal state.

        The queue is committed as one append when `flush` (before every side effect that
        depends on it) and always at a terminal state; the chunk loop defers, so a chunk
        costs one log fsync, not three.
        """
        assert self._model is not None
        p = self.progress
        self._pending.append(obs)
        for decision in decide(p, obs):
            step = self.dispatcher.fire(self._model, decision.trigger, decision.reason)
            transition = transition_event(p, step, obs.at_ns)
            if step.reason_code is not None:
                self.reason = step.reason_code
                self.cause = self.cause or explain(transition, obs, p.intent)
            self._pending.append(transition)
        terminal = self.dispatcher.rules.is_terminal(self._model.state)
        if flush or terminal:
            await self._flush()
        return terminal

    async def _flush(self) -> None:
        if not self._pending:
            return
        assert self._model is not None
        stream = self._model.transfer_id
        items = [Pending(stream, event, self._version + i) for i, event in enumerate(self._pending)]
        for event in self._pending:
            self._stream_digest = payload_chain(self._stream_digest, event)
        self._pending = []
        await self.appender.append(items)
        self._version += len(items)
        self.events += len(items)

    def _now(self) -> int:
        return self.clock.now_ns()


def transition_event(p: Progress, step: Step, at_ns: int) -> Transition:
    """The `transition` event for `step`, with the transfer's telemetry."""
    assert p.intent is not None
    intent = p.intent
    return Transition(
        transfer_id=intent.transfer_id,
        from_state=step.from_state,
        trigger=step.trigger,
        to_state=step.to_state,
        attempt=p.attempt,
        committed_cursor=p.cursor,
        reason_code=step.reason_code,
        artifact_id=intent.artifact_id,
        artifact_class=intent.artifact_class,
        mode=intent.mode,
        seed=intent.seed,
        replay_command=intent.replay_command,
        env_fingerprint=intent.env_fingerprint,
        duration_ms=(at_ns - p.started_ns) / 1e6,
        rejected_trigger=step.rejected_trigger,
    )


def payload_chain(previous: str, item: Event | str) -> str:
    """The transfer's stream digest: a BLAKE3 chain over the payloads it recorded (seeded by
    its transfer id, or by the checkpoint it resumed from). Unlike a record digest it does not
    depend on the global seq or commit time, so each stream is identical at any concurrency."""
    hasher = blake3(previous.encode())
    hasher.update(item.encode() if isinstance(item, str) else encode_payload(item))
    return "blake3:" + hasher.hexdigest()


def _layout(intent: Intent) -> Layout:
    return Layout(intent.files or [BundleFile("", intent.size, intent.expected_checksum)])
