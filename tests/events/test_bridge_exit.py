"""The NATS bridge's loop at process exit: a task a signal left running (a subscription's
reader) is cancelled by the exit hook, so asyncio prints nothing on the way out."""

from __future__ import annotations

import subprocess
import sys

LEFT_RUNNING = """
import asyncio
from events.jetstream.bridge import bridge

async def forever() -> None:
    await asyncio.Event().wait()

async def start() -> None:
    asyncio.get_running_loop().create_task(forever())

bridge().call(start(), 5)
raise SystemExit(130)
"""


def test_a_task_left_on_the_bridge_loop_ends_quietly_at_exit() -> None:
    done = subprocess.run([sys.executable, "-c", LEFT_RUNNING], capture_output=True, timeout=30, check=False)
    assert done.returncode == 130
    assert done.stderr == b""  # without the hook: "Task was destroyed but it is pending!"
