"""The one bridge between asup's synchronous stores and nats-py's asyncio client.

Every NATS connection of the process lives on one asyncio loop, run by a daemon thread
started on first use. A synchronous caller (the LogStore interface) blocks on `call`; an
async caller on its own loop (a follower, the runner) awaits `wait`. Nothing else in asup
runs nats-py coroutines, so no second loop or ad-hoc `asyncio.run` ever holds a connection.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

SLICE = 0.05  # seconds: how long a wait goes without looking for an interrupt
SHUTDOWN_WAIT = 1.0  # seconds the exit hook gives the loop's leftover tasks to end
_lock = threading.Lock()
_bridge: Bridge | None = None
_interrupted = threading.Event()


class Bridge:
    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="asup-nats", daemon=True)
        self._thread.start()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run `coro` on the bridge's loop and wait for its result (at most `timeout` s: the
        coroutines bound themselves; this is the backstop that keeps a caller from hanging)."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("Bridge.call from the bridge's own loop would deadlock; await the coroutine")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        deadline = time.monotonic() + timeout
        try:
            while True:  # in slices, so an interrupt asked for meanwhile (`interrupt`) ends the wait
                if _interrupted.is_set():
                    raise KeyboardInterrupt
                try:
                    return future.result(min(SLICE, max(0.0, deadline - time.monotonic())))
                except concurrent.futures.TimeoutError:
                    if time.monotonic() >= deadline:
                        raise TimeoutError(f"no answer within {timeout:g} s") from None
        except BaseException:
            future.cancel()  # Ctrl-C in the caller: nothing keeps running on its behalf
            raise

    def shutdown(self) -> None:
        """At exit: cancel what still runs on the loop (a subscription a signal cut short),
        give it a moment, stop the loop. Without it, asyncio reports each such task as
        'destroyed but pending' on stderr while the interpreter tears the loop down."""
        self._loop.set_exception_handler(lambda _loop, _context: None)  # exiting: nothing left to report to
        try:
            asyncio.run_coroutine_threadsafe(_cancel_all(), self._loop).result(SHUTDOWN_WAIT)
        except BaseException:  # exiting: a loop that does not answer is left to the daemon thread's end
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(SHUTDOWN_WAIT)

    async def wait(self, coro: Coroutine[Any, Any, T]) -> T:
        """Await `coro`, run on the bridge's loop, from another asyncio loop (cancelling the
        wait cancels it there)."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self._loop))


async def _cancel_all() -> None:
    tasks = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=SHUTDOWN_WAIT / 2)


def interrupt() -> None:
    """Make every `Bridge.call` waiting now or later end with KeyboardInterrupt: a signal
    handler's way to stop a command at a known place (a KeyboardInterrupt it raised itself
    would land wherever the main thread is, often a callback that swallows it)."""
    _interrupted.set()


def clear_interrupt() -> None:
    """Waits wait again (the command that asked for `interrupt` has ended)."""
    _interrupted.clear()


def bridge() -> Bridge:
    global _bridge
    with _lock:
        if _bridge is None:
            _bridge = Bridge()
            atexit.register(_bridge.shutdown)
        return _bridge
