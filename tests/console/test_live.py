"""The live feed: records another process appends reach a subscriber within a second, and a
reconnect with Last-Event-ID gets exactly what it missed, from memory or from the log."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from events.scan import read_records
from runbook.console import live
from runbook.console.live import Hub, run_followers
from runbook.console.model import LogModel
from runbook.console.views import LiveRecord, Query

APPEND = """
import sys
from pathlib import Path
from events.jsonl_log import JsonlLog
from events.testing import transition
with JsonlLog.open(Path(sys.argv[1])) as log:
    for i in range(int(sys.argv[2])):
        log.append(f"live-{i}", [transition(f"live-{i}")])
"""


def append_elsewhere(log: Path, n: int) -> None:
    subprocess.run([sys.executable, "-c", APPEND, str(log), str(n)], check=True, timeout=60)


def test_records_appended_by_another_process_arrive_within_a_second(log: Path) -> None:
    model = LogModel([str(log)])
    hub = Hub(model)
    got: list[tuple[LiveRecord, float]] = []

    async def main() -> None:
        stop = anyio.Event()
        async with anyio.create_task_group() as group:
            group.start_soon(run_followers, model, hub, stop)
            while not model.ready:
                await anyio.sleep(0.01)
            start_seq = hub.last_seq(0)

            async def listen() -> None:
                async for item in hub.subscribe(0, start_seq):
                    assert item is not None
                    got.append((item, time.monotonic()))
                    if len(got) == 3:
                        return

            group.start_soon(listen)
            await anyio.sleep(0.1)
            sent = time.monotonic()
            await anyio.to_thread.run_sync(append_elsewhere, log, 3)
            with anyio.fail_after(5):
                while len(got) < 3:
                    await anyio.sleep(0.01)
            stop.set()
            assert max(at for _, at in got) - sent < 1.0 + 0.5  # the writer's own start-up is in it
            assert [item.seq for item, _ in got] == [start_seq + 1, start_seq + 2, start_seq + 3]

    anyio.run(main)
    assert {item.key for item, _ in got} == {"0:live-0", "0:live-1", "0:live-2"}
    assert all(item.row is not None and item.row.transfer_id == item.key[2:] for item, _ in got)
    assert model.transfers(Query(text="live-")).total == 3


@pytest.mark.parametrize("keep", [10_000, 5], ids=["from-memory", "from-the-log"])
def test_a_resume_by_last_event_id_gets_exactly_what_was_missed(log: Path, monkeypatch: pytest.MonkeyPatch, keep: int) -> None:
    monkeypatch.setattr(live, "KEEP", keep)
    model = LogModel([str(log)])
    model.cold_start(0)
    hub = Hub(model)
    before = hub.last_seq(0)
    append_elsewhere(log, 20)
    hub.publish(model.apply(0, model.logs[0].tailer.drain()))
    after = before + 3  # the browser had seen up to here
    got: list[int] = []

    async def main() -> None:
        with anyio.move_on_after(1):
            async for item in hub.subscribe(0, after, heartbeat=0.05):
                if item is None:
                    return  # caught up: the heartbeat comes
                got.append(item.seq)

    anyio.run(main)
    assert got == list(range(after + 1, before + 21))
    assert got == [r.seq for r in read_records(log) if r.seq > after]


def test_a_subscriber_that_falls_behind_is_dropped_not_waited_for(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(live, "QUEUE", 2)
    model = LogModel([str(log)])
    model.cold_start(0)
    hub = Hub(model)
    start = hub.last_seq(0)
    ended = []

    async def main() -> None:
        subscription = hub.subscribe(0, start)
        first = anyio.Event()

        async def slow() -> None:
            async for _item in subscription:
                first.set()
                await anyio.sleep(0.2)  # a page that reads slowly
            ended.append(True)

        async with anyio.create_task_group() as group:
            group.start_soon(slow)
            await anyio.sleep(0.05)
            append_elsewhere(log, 10)
            hub.publish(model.apply(0, model.logs[0].tailer.drain()))  # returns at once: nobody waits for the page
            with anyio.fail_after(5):
                await first.wait()

    anyio.run(main)
    assert ended == [True]
    assert not hub.subscribers.get(0)
