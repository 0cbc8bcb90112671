"""The console over a nats:// log: the stream copied into a private local file, verified,
shown as a file log is, followed live through an ordered consumer, the copy removed at the end."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import anyio
import pytest

from events.jetstream.log import JetStreamLog
from events.testing import transition
from runbook.console.live import Hub, run_followers
from runbook.console.model import LogModel
from runbook.console.views import Query
from tests.cli import run_asup
from tests.console.helpers import SEED, scenario_log, scenario_root
from tests.nats.servers import NatsServer

pytestmark = pytest.mark.nats


def test_a_stream_is_shown_followed_and_its_copy_removed(nats_server: NatsServer, tmp_path: Path) -> None:
    log = scenario_log(scenario_root(tmp_path / "s"))
    url = f"{nats_server.url}/CONSOLE"
    assert run_asup("log", "import", str(log), url, cwd=tmp_path).returncode == 0
    model = LogModel([url])
    copy = model.logs[0].mirror_dir
    assert copy is not None
    hub = Hub(model)
    arrived: list[str] = []

    async def main() -> None:
        stop = anyio.Event()
        async with anyio.create_task_group() as group:
            group.start_soon(run_followers, model, hub, stop)
            with anyio.fail_after(20):
                while not model.ready:
                    await anyio.sleep(0.02)
            page = model.transfers(Query(state="failed_closed", size=500))
            assert page.total > 0 and all(r.cause for r in page.rows)
            detail = model.transfer(f"0:disk_full-{SEED}")
            assert detail is not None and "ENOSPC" in detail.row.cause
            assert detail.commands[0].command == f"asup replay {url} --transfer disk_full-{SEED}"

            def append() -> None:
                with JetStreamLog.open(url) as writer:
                    writer.append("live-stream", [transition("live-stream")])

            sent = time.monotonic()
            await anyio.to_thread.run_sync(append)
            with anyio.fail_after(5):
                while model.transfers(Query(text="live-stream")).total == 0:
                    await anyio.sleep(0.02)
            arrived.append(f"{time.monotonic() - sent:.3f}")
            live = model.transfer("0:live-stream")  # read back from the local copy
            assert live is not None and len(live.timeline) == 1
            stop.set()

    anyio.run(main)
    assert float(arrived[0]) < 2.0
    assert model.replay(0).outcome != "problem"
    model.close()
    assert not copy.exists()
    shutil.rmtree(tmp_path / "s", ignore_errors=True)
