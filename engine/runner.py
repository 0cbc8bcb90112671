"""Running many transfers at once: an anyio task group under a concurrency limit, one
log writer with group commit, one dispatcher shared by every transfer.

Cancellation-safe: a cancelled transfer stops at its next await; every append is one
atomic batch and every checkpoint an atomic file, so Ctrl-C leaves a valid log and
checkpoints a later `--resume` picks up.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
import msgspec

from engine.adapter import Sleep, SyncAdapter, TransferResult
from engine.appender import GroupCommitter
from engine.contracts import AdapterProfile
from engine.machine import make_dispatcher
from engine.stop import StopRequest
from engine.store_faults import Refused
from engine.stores import SourceStore, TargetStore
from events.clock import Clock, SystemClock
from events.observations import Intent
from events.store import LogStore
from events.vocabulary import State


class Job(msgspec.Struct, frozen=True):
    intent: Intent
    source: SourceStore
    target: TargetStore
    resume_from: str | None = None
    profile: AdapterProfile | None = None


ClockFor = Callable[[str], Clock]


async def run_jobs(
    jobs: list[Job],
    log: LogStore,
    *,
    limit: int = 8,
    lever: bool = True,
    clock_for: ClockFor | None = None,
    sleep: Sleep = anyio.sleep,
    on_result: Callable[[TransferResult], None] | None = None,
    stop: StopRequest | None = None,
) -> list[TransferResult]:
    """Run `jobs` concurrently; results in job order. `clock_for(transfer_id)` gives each
    transfer its own clock, so each stream is byte-identical at any concurrency. Once `stop`
    is requested, running transfers suspend at their next chunk boundary and queued ones
    never start (they have no result)."""
    committer = GroupCommitter(log)
    dispatcher = make_dispatcher(lever)
    limiter = anyio.CapacityLimiter(max(1, limit))
    results: list[TransferResult | None] = [None] * len(jobs)
    shared = SystemClock()

    async def one(index: int, job: Job) -> None:
        async with limiter:
            if stop is not None and stop.requested:
                return  # never started: nothing of it is recorded
            adapter = SyncAdapter(
                appender=committer,
                source=job.source,
                target=job.target,
                dispatcher=dispatcher,
                clock=clock_for(job.intent.transfer_id) if clock_for else shared,
                profile=job.profile,
                sleep=sleep,
                stop=stop,
            )
            try:
                result = await adapter.run(job.intent, job.resume_from)
            except Refused as refusal:  # nothing of it recorded: this one is not run, the others go on
                intent = job.intent
                result = TransferResult(intent.transfer_id, State.IDLE, None, 0, 0, 0, refused=refusal.one_line())
        results[index] = result
        if on_result is not None:
            on_result(result)

    async with anyio.create_task_group() as outer:
        outer.start_soon(committer.serve)
        async with anyio.create_task_group() as transfers:
            for index, job in enumerate(jobs):
                transfers.start_soon(one, index, job)
        outer.cancel_scope.cancel()
    return [r for r in results if r is not None]
