"""Live tail with real writer processes: every event exactly once, across restarts and a repair."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from events.jsonl_log import JsonlLog
from events.record import Record
from replay.tail import follow

WRITER = """
import sys
from pathlib import Path
from events.jsonl_log import JsonlLog
from events.payloads import Transition
from events.vocabulary import State, Trigger
path, first, count, torn = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
with JsonlLog.open(path, lock_timeout=10) as log:
    for i in range(first, first + count):
        log.append("live", [Transition(transfer_id="live", from_state=State.SYNCING, trigger=Trigger.CHUNK_COMMITTED,
                                       to_state=State.SYNCING, attempt=0, committed_cursor=i)])
if torn:  # a crash mid-write: half a line at the tail, for the next writer to repair
    with path.open("ab") as fh:
        fh.write(b'{"type":"transition","v":1,"seq":')
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.mark.parametrize("inotify", [True, False], ids=["inotify", "poll"])
@pytest.mark.anyio
async def test_tail_sees_every_event_once_across_writer_restarts_and_repair(tmp_path: Path, inotify: bool) -> None:
    """Three writer processes in turn (the second leaves a torn tail the third repairs): the tail prints
    every committed event exactly once, in order, including the log_repaired record, and no partial line."""
    path = tmp_path / "live.jsonl"
    with JsonlLog.open(path):
        pass
    seen: list[Record] = []
    stop = anyio.Event()

    async def reader() -> None:
        async for record in follow(path, inotify=inotify, stop=stop):
            seen.append(record)
            if sum(r.stream == "live" for r in seen) == 60 and any(r.type == "log_repaired" for r in seen):
                stop.set()
                return

    def write(first: int, torn: bool) -> None:
        subprocess.run([sys.executable, "-c", WRITER, str(path), str(first), "20", "1" if torn else "0"], check=True)

    async def writers() -> None:
        for first, torn in ((0, False), (20, True), (40, False)):
            await anyio.to_thread.run_sync(write, first, torn)

    with anyio.fail_after(60):
        async with anyio.create_task_group() as group:
            group.start_soon(reader)
            await writers()
    cursors = [r.data.committed_cursor for r in seen if r.stream == "live"]  # type: ignore[attr-defined]
    assert cursors == list(range(60))
    assert [r.seq for r in seen] == list(range(1, len(seen) + 1))
    assert sum(r.type == "log_repaired" for r in seen) == 1
