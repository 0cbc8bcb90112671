"""Cancelling the runner mid-flight (what Ctrl-C does) leaves a valid log and resumable checkpoints."""

from __future__ import annotations

import random
import time
from pathlib import Path

import anyio
import pytest

from engine.adapter import SyncAdapter
from engine.appender import DirectAppender
from engine.intent import build_intent
from engine.layout import Layout
from engine.machine import make_dispatcher
from engine.runner import Job, run_jobs
from engine.stores import DirectoryHandle, DirectoryStore
from events.chain import ChainState
from events.clock import StepClock
from events.jsonl_log import JsonlLog
from events.scan import Scanner
from events.vocabulary import Mode, State

CHUNK = 4096


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.anyio
async def test_a_cancelled_runner_leaves_a_valid_log_and_resumable_checkpoints(tmp_path: Path) -> None:
    """Cancel 8 slow transfers after some chunks: the log verifies, and each transfer resumes to a byte-identical target."""
    (tmp_path / "src").mkdir()
    (tmp_path / "dst").mkdir()
    for i in range(8):
        (tmp_path / "src" / f"a{i}.bin").write_bytes(random.Random(i).randbytes(40 * CHUNK))
    source, target = DirectoryStore(tmp_path / "src"), DirectoryStore(tmp_path / "dst")
    intents = [
        build_intent(
            source, f"a{i}.bin", f"a{i}.bin", artifact_class="conformance_fixture_bundle", mode=Mode.HARDENED, seed=i, chunk_size=CHUNK
        )
        for i in range(8)
    ]
    log_path = tmp_path / "log.jsonl"
    with JsonlLog.open(log_path, clock=StepClock()) as log:

        async def slow_store_sleep(_seconds: float) -> None:
            await anyio.sleep(0)

        with anyio.move_on_after(0.3):  # the runner yields at every append; slow disks make this mid-transfer
            await run_jobs([Job(i, source, _Slow(tmp_path / "dst")) for i in intents], log, limit=8, sleep=slow_store_sleep)
    scanner = Scanner(log_path, ChainState())
    assert sum(1 for _ in scanner) > 0 and scanner.problem is None
    unfinished = [i for i in intents if not target.path(i.target).exists()]
    assert unfinished, "the cancel came after every transfer had finished: nothing was tested"
    for intent in unfinished:
        final = target.path(intent.target)
        checkpoint = target.checkpoint_path(intent.target)
        with JsonlLog.open(log_path, clock=StepClock()) as log:
            adapter = SyncAdapter(
                appender=DirectAppender(log), source=source, target=target, dispatcher=make_dispatcher(True), clock=StepClock()
            )
            resume = str(checkpoint) if checkpoint.exists() else None
            result = await adapter.run(intent, resume)
        assert result.state is State.COMPLETED
        assert final.read_bytes() == (tmp_path / "src" / intent.source).read_bytes()


class _Slow(DirectoryStore):
    """A target that takes a little real time per write, so a cancel lands mid-transfer."""

    def open(self, name: str, layout: Layout, kind: str) -> DirectoryHandle:
        handle = super().open(name, layout, kind)
        handle.__class__ = _SlowHandle  # the same handle, each write a little slower
        return handle


class _SlowHandle(DirectoryHandle):
    def write(self, offset: int, data: bytes) -> tuple[int, str]:
        time.sleep(0.002)
        return super().write(offset, data)
