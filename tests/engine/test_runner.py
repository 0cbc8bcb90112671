"""The runner: many transfers under a concurrency limit through one group-committing log
writer; each stream independent of the concurrency; one slot's stale expectation does not
fail the others."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import anyio
import msgspec
import pytest

from engine.adapter import TransferResult
from engine.appender import GroupCommitter
from engine.intent import build_intent
from engine.runner import Job, run_jobs
from engine.stores import DirectoryStore
from events.chain import Position
from events.clock import Clock, StepClock
from events.errors import AsupError, ErrorCode
from events.memory_log import MemoryLog
from events.observations import Observation
from events.payloads import Transition
from events.record import HEADER_STREAM, Record
from events.store import Pending
from events.vocabulary import Mode, State, Trigger
from tests.engine.conftest import ARTIFACT_CLASS, CHUNK, faulty, no_sleep

JOBS = 50
Expected = dict[str, tuple[str, bytes]]  # transfer id -> (target name, bytes)


def transition(tag: str, cursor: int) -> Transition:
    """A distinct, valid transition payload for the group-commit tests."""
    return Transition(
        transfer_id=tag,
        from_state=State.SYNCING,
        trigger=Trigger.CHUNK_COMMITTED,
        to_state=State.SYNCING,
        attempt=0,
        committed_cursor=cursor,
    )


def make_jobs(root: Path) -> tuple[list[Job], Expected, DirectoryStore]:
    """JOBS small seeded files (one to three chunks), every third with a retried interruption;
    expected: transfer id -> (target name, bytes)."""
    source_dir, target_dir = root / "source", root / "target"
    source_dir.mkdir(parents=True)
    target_dir.mkdir(parents=True)
    source, target = DirectoryStore(source_dir), DirectoryStore(target_dir)
    jobs: list[Job] = []
    expected: dict[str, tuple[str, bytes]] = {}
    for i in range(JOBS):
        rng = random.Random(i)
        data = rng.randbytes(rng.randint(1, 3 * CHUNK))
        (source_dir / f"a{i:02d}.bin").write_bytes(data)
        intent = build_intent(
            source, f"a{i:02d}.bin", f"a{i:02d}.out", artifact_class=ARTIFACT_CLASS, mode=Mode.HARDENED, seed=i, chunk_size=CHUNK
        )
        expected[intent.transfer_id] = (intent.target, data)
        jobs.append(Job(intent, source, faulty(target, "interruption@0" if i % 3 == 0 else "", CHUNK)))
    return jobs, expected, target


def run_all(root: Path, limit: int, lever: bool = True) -> tuple[list[TransferResult], MemoryLog, Expected, DirectoryStore]:
    jobs, expected, target = make_jobs(root)
    log = MemoryLog("runner", clock=StepClock())

    def clock_for(_transfer_id: str) -> Clock:
        return StepClock()

    results = anyio.run(lambda: run_jobs(jobs, log, limit=limit, lever=lever, clock_for=clock_for, sleep=no_sleep))
    return results, log, expected, target


def by_stream(log: MemoryLog) -> dict[str, list[Record]]:
    streams: dict[str, list[Record]] = {}
    for record in log.read():
        if record.stream != HEADER_STREAM:
            streams.setdefault(record.stream, []).append(record)
    return streams


@pytest.mark.parametrize("lever", [True, False], ids=["lever", "machine"])
def test_fifty_transfers_complete_under_a_limit_with_group_commit(tmp_path: Path, lever: bool) -> None:
    """50 transfers with limit 8 all complete byte-identical, and the log commits them in fewer batches than appends."""
    results, log, expected, target = run_all(tmp_path, limit=8, lever=lever)
    assert len(results) == JOBS
    assert [r.transfer_id for r in results] == list(expected)  # results in job order
    assert all(r.state is State.COMPLETED and r.reason_code is None for r in results)
    for target_name, data in expected.values():
        assert target.path(target_name).read_bytes() == data
    records = [r for r in log.read() if r.stream != HEADER_STREAM]
    assert len(records) == sum(r.events for r in results)
    appends = sum(isinstance(r.data, Observation) for r in records)  # the adapter appends once per observation
    batches = len({r.ts for r in records})  # the log's StepClock is read once per committed batch
    assert batches < appends, f"{batches} batches for {appends} appends: no group commit"
    assert [r.seq for r in log.read()] == list(range(1, len(records) + 2))


def test_each_stream_is_identical_at_concurrency_one_and_eight(tmp_path: Path) -> None:
    """With a clock per transfer, every stream's payloads are the same at concurrency 1 and 8 (only the interleaving differs)."""
    _, serial, _, _ = run_all(tmp_path / "serial", limit=1)
    _, parallel, _, _ = run_all(tmp_path / "parallel", limit=8)
    one, eight = by_stream(serial), by_stream(parallel)
    assert one.keys() == eight.keys() and len(one) == JOBS
    for stream, records in one.items():
        a = [msgspec.json.encode(r.data) for r in records]
        b = [msgspec.json.encode(r.data) for r in eight[stream]]
        assert a == b, f"stream {stream} differs between concurrency 1 and 8"
    interleaving = [r.stream for r in parallel.read() if r.stream != HEADER_STREAM]
    assert interleaving != sorted(interleaving, key=list(one).index), "concurrency 8 interleaved the streams"


async def _commit_together(committer: GroupCommitter, batches: list[list[Pending]]) -> list[list[Position] | AsupError]:
    """Append every batch from its own task, gathered into one group commit."""
    outcomes: list[list[Position] | AsupError] = [[] for _ in batches]

    async def one(index: int, items: list[Pending]) -> None:
        try:
            outcomes[index] = await committer.append(items)
        except AsupError as error:
            outcomes[index] = error

    async with anyio.create_task_group() as outer:
        outer.start_soon(committer.serve)
        async with anyio.create_task_group() as group:
            for index, items in enumerate(batches):
                group.start_soon(one, index, items)
        outer.cancel_scope.cancel()
    return outcomes


def test_a_stale_expectation_in_one_slot_does_not_fail_the_others() -> None:
    """Two conflicting batches for one stream in one group commit: the first commits, the stale one alone gets CONFLICT_DETECTED."""
    log = MemoryLog("group", clock=StepClock())
    committer = GroupCommitter(log)
    fresh = [Pending("t-a", transition("a-0", 0), 0), Pending("t-a", transition("a-1", 1), 1)]
    stale = [Pending("t-a", transition("b-0", 0), 0)]  # also expects an empty stream
    other = [Pending("t-b", transition("c-0", 0), 0)]
    outcomes = anyio.run(_commit_together, committer, [fresh, stale, other])
    assert committer.batches == 1
    first, conflict, third = outcomes
    assert isinstance(first, list) and [(p.stream, p.sv) for p in first] == [("t-a", 1), ("t-a", 2)]
    assert isinstance(conflict, AsupError) and conflict.code is ErrorCode.CONFLICT_DETECTED
    assert isinstance(third, list) and [(p.stream, p.sv) for p in third] == [("t-b", 1)]
    assert log.stream_version("t-a") == 2 and log.stream_version("t-b") == 1
    assert [r.data for r in log.read_stream("t-a")] == [fresh[0].event, fresh[1].event]


def test_group_commit_gathers_concurrent_appends_into_few_batches() -> None:
    """Forty tasks appending at once are committed in fewer batches than appends, each at its own position."""
    log = MemoryLog("group", clock=StepClock())
    committer = GroupCommitter(log)
    batches = [[Pending(f"t-{i}", transition(f"x-{i}", 0), 0)] for i in range(40)]
    outcomes = anyio.run(_commit_together, committer, batches)
    assert committer.batches < len(batches)
    positions = [o for o in outcomes if isinstance(o, list)]
    assert len(positions) == 40
    assert sorted(p[0].seq for p in positions) == list(range(2, 42))
    assert Counter(p[0].stream for p in positions) == Counter(f"t-{i}" for i in range(40))
