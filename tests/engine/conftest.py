"""Shared engine test setup: seeded source/target directory stores and a one-transfer
harness (real SyncAdapter, real files, a StepClock, a no-op async sleep) that returns the
transfer's result and the records of its stream."""

from __future__ import annotations

import random
from pathlib import Path

import anyio
import pytest

from engine.adapter import Sleep, SyncAdapter, TransferResult
from engine.appender import DirectAppender
from engine.contracts import AdapterProfile
from engine.faults import FaultPlan, FaultyTarget, parse_plan
from engine.intent import build_intent
from engine.layout import MANIFEST_NAME
from engine.machine import Dispatcher, make_dispatcher
from engine.stores import DirectoryStore, TargetStore
from events.clock import StepClock
from events.jsonl_log import JsonlLog
from events.memory_log import MemoryLog
from events.observations import Intent, Observation
from events.payloads import Event, Transition
from events.record import Record
from events.vocabulary import Mode

CHUNK = 4096  # the smallest chunk the capability matrix allows
SEED = 20260528
FILE_NAME = "artifact.bin"
FILE_SIZE = 5 * CHUNK + 321  # six chunks, the last one short
BUNDLE_NAME = "bundle"
FILE_TARGET = "artifact.out"
BUNDLE_TARGET = "bundle.out"
ARTIFACT_CLASS = "conformance_fixture_bundle"

Log = MemoryLog | JsonlLog


async def no_sleep(_seconds: float) -> None:
    """Backoff delays are drawn and recorded, never waited out."""


class Stores:
    """A source and a target DirectoryStore under one root, with seeded artifacts."""

    def __init__(self, root: Path, seed: int = SEED) -> None:
        self.root = root
        self.source_dir = root / "source"
        self.target_dir = root / "target"
        self.source_dir.mkdir(parents=True, exist_ok=True)
        self.target_dir.mkdir(parents=True, exist_ok=True)
        self.source = DirectoryStore(self.source_dir)
        self.target = DirectoryStore(self.target_dir)
        rng = random.Random(seed)
        (self.source_dir / FILE_NAME).write_bytes(rng.randbytes(FILE_SIZE))
        bundle = self.source_dir / BUNDLE_NAME
        (bundle / "fixtures" / "deep").mkdir(parents=True, exist_ok=True)
        (bundle / "fixtures" / "graph.json").write_bytes(rng.randbytes(2 * CHUNK + 17))
        (bundle / "fixtures" / "deep" / "edges.bin").write_bytes(rng.randbytes(CHUNK - 5))
        (bundle / "README.txt").write_bytes(b"seeded test bundle\n" * 40)
        (bundle / "baseline.bin").write_bytes(rng.randbytes(CHUNK + 3))

    def final(self, target_name: str) -> Path:
        return self.target.path(target_name)

    def temp(self, target_name: str) -> Path:
        return self.target.temp_path(target_name)

    def checkpoint(self, target_name: str) -> str:
        return str(self.target.checkpoint_path(target_name))

    def source_tree(self, name: str) -> dict[str, bytes]:
        """Relative path -> bytes of every file of a source bundle."""
        return tree(self.source.path(name))


def tree(root: Path) -> dict[str, bytes]:
    """Relative path -> bytes of every file under `root`."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def stores(tmp_path: Path) -> Stores:
    """A tmp source/target DirectoryStore pair with a seeded file and bundle."""
    return Stores(tmp_path)


@pytest.fixture
def memory_log() -> MemoryLog:
    """An in-memory log with a deterministic clock."""
    return MemoryLog("engine-tests", clock=StepClock())


def make_intent(
    stores: Stores,
    source_name: str = FILE_NAME,
    target_name: str = FILE_TARGET,
    *,
    mode: Mode = Mode.HARDENED,
    seed: int = SEED,
    chunk_size: int = CHUNK,
    artifact_class: str = ARTIFACT_CLASS,
    adapter: str = "full",
    max_attempts: int | None = None,
    expected_checksum: str | None = None,
    transfer_id: str | None = None,
) -> Intent:
    """The intent of a transfer between the seeded stores."""
    return build_intent(
        stores.source,
        source_name,
        target_name,
        artifact_class=artifact_class,
        mode=mode,
        seed=seed,
        chunk_size=chunk_size,
        max_attempts=max_attempts,
        adapter=adapter,
        expected_checksum=expected_checksum,
        transfer_id=transfer_id,
        replay_command="pytest tests/engine",
    )


def faulty(target: TargetStore, plan: str | FaultPlan, chunk_size: int) -> FaultyTarget:
    """`target` behind a fault plan whose `slow` faults do not actually sleep."""
    parsed = parse_plan(plan) if isinstance(plan, str) else plan
    return FaultyTarget(target, parsed, chunk_size, sleep=lambda _seconds: None)


def run_transfer(
    log: Log,
    stores: Stores,
    intent: Intent,
    *,
    faults: str | FaultPlan = "",
    resume_from: str | None = None,
    lever: bool = True,
    dispatcher: Dispatcher | None = None,
    profile: AdapterProfile | None = None,
    target: TargetStore | None = None,
    sleep: Sleep = no_sleep,
) -> tuple[TransferResult, list[Record]]:
    """Run one transfer through the real adapter; (result, the records of its stream).

    A SimulatedCrash from the plan escapes, as it would from a killed process."""
    adapter = SyncAdapter(
        appender=DirectAppender(log),
        source=stores.source,
        target=target if target is not None else faulty(stores.target, faults, intent.chunk_size),
        dispatcher=dispatcher if dispatcher is not None else make_dispatcher(lever),
        clock=StepClock(),
        profile=profile,
        sleep=sleep,
    )
    result = anyio.run(adapter.run, intent, resume_from)
    return result, stream_records(log, intent.transfer_id)


def stream_records(log: Log, stream: str) -> list[Record]:
    return list(log.read_stream(stream))


def events_of(records: list[Record]) -> list[Event]:
    return [r.data for r in records]


def transitions_of(records: list[Record]) -> list[Transition]:
    return [r.data for r in records if isinstance(r.data, Transition)]


def observations_of(records: list[Record]) -> list[Observation]:
    return [r.data for r in records if isinstance(r.data, Observation)]


def types_of(records: list[Record]) -> list[str]:
    return [r.type for r in records]


def sessions_of(records: list[Record]) -> list[list[Record]]:
    """A stream split at each `intent_recorded` (a resume starts a new session)."""
    sessions: list[list[Record]] = []
    for record in records:
        if record.type == "intent_recorded" or not sessions:
            sessions.append([])
        sessions[-1].append(record)
    return sessions


def published_bundle(stores: Stores, target_name: str) -> dict[str, bytes]:
    """The files of a published bundle, without its manifest."""
    files = tree(stores.final(target_name))
    files.pop(MANIFEST_NAME, None)
    return files
