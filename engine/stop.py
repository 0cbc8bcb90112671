"""A request to stop transfers at their next chunk boundary, and the signal handlers that
make one from SIGINT or SIGTERM.

The adapter never yields between a write and its checkpoint, so a signal raised as an
exception wherever it lands could stop a transfer between a chunk's write and its record.
Instead the first signal only sets the flag; each adapter finishes the chunk in hand,
records `suspended` and returns. A second signal while stopping is the operator insisting:
it raises `KeyboardInterrupt` at once, as before (the log stays valid; the transfer simply
has no `suspended` record).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, TypeVar

import anyio

from events.jetstream import bridge

T = TypeVar("T")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Set once, by the first stop signal (or a test); read at every chunk boundary."""

    def __init__(self) -> None:
        self.signal = ""  # "SIGINT" or "SIGTERM" once requested

    @property
    def requested(self) -> bool:
        return bool(self.signal)

    def request(self, name: str) -> None:
        if not self.signal:
            self.signal = name


@contextmanager
def stop_on_signals(stop: StopRequest) -> Iterator[StopRequest]:
    """While inside, SIGINT and SIGTERM set `stop`; a second one raises KeyboardInterrupt.
    The previous handlers are restored on the way out."""

    def handle(signum: int, frame: FrameType | None) -> None:
        if stop.requested:
            raise KeyboardInterrupt  # the second signal: stop now, as Ctrl-C always did
        stop.request(signal.Signals(signum).name)

    previous = {signum: signal.signal(signum, handle) for signum in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_stoppable(func: Callable[..., Awaitable[T]], *args: object) -> T:
    """`anyio.run(func, *args)` on an event loop that does not log the second signal's
    KeyboardInterrupt as an unhandled task error while it shuts down: the CLI reports it as
    exit 130, and a traceback on the operator's terminal would be a defect."""
    return anyio.run(func, *args, backend_options={"loop_factory": _quiet_loop})


class Interrupts:
    """SIGINT and SIGTERM for a command that reads and then follows (`asup tail -f`).

    Python's own handler raises KeyboardInterrupt wherever the signal lands. Landing in a
    callback that swallows exceptions (a weakref's, an import lock's) the command never
    ends; landing in a task, its task group prints a traceback; landing in code run by
    `exec` (a dataclass being built during an import), CPython marks the interrupt
    unhandled even once it is caught, and the process kills itself with SIGINT instead of
    exiting 130. So inside `installed()` the handler raises nothing: it remembers the
    signal, makes the bridge's waits end (`bridge.interrupt`), and, while following
    (`follow`), wakes the event loop to cancel the follower. The command meets the signal at
    places it chose: `check()` (called per record read), a bridge wait, the end of `follow`
    and the way out of `installed()`, each raising KeyboardInterrupt: exit 130, as Ctrl-C.
    """

    def __init__(self) -> None:
        self.signal = 0
        self._wake: Callable[[], object] | None = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signal = signum
        bridge.interrupt()
        if self._wake is not None:
            self._wake()

    def check(self) -> None:
        """Raise KeyboardInterrupt if a signal came: a long read stops at its next record."""
        if self.signal:
            raise KeyboardInterrupt

    @contextmanager
    def installed(self) -> Iterator[Interrupts]:
        previous = {signum: signal.signal(signum, self._handle) for signum in STOP_SIGNALS}
        try:
            yield self
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            bridge.clear_interrupt()  # a later command in this process (a test's) waits as usual
        self.check()  # a signal that came after the last place that looked

    def follow(self, func: Callable[..., Awaitable[None]], *args: object) -> None:
        """`anyio.run(func, *args)` until it returns or a signal comes (one that came while
        reading included)."""

        async def main() -> None:
            with anyio.CancelScope() as scope:
                loop = asyncio.get_running_loop()
                self._wake = lambda: _soon(loop, scope.cancel)
                if not self.signal:
                    await func(*args)

        try:
            run_stoppable(main)
        finally:
            self._wake = None
        self.check()


def _soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], object]) -> None:
    """`callback` on `loop` soon, unless the loop has closed meanwhile (the follow is over)."""
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback)


def _quiet_loop() -> asyncio.AbstractEventLoop:
    loop = asyncio.new_event_loop()
    loop.set_exception_handler(_unless_interrupted)
    return loop


def _unless_interrupted(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    if not _is_interrupt(context.get("exception")):
        loop.default_exception_handler(context)


def _is_interrupt(exc: BaseException | None) -> bool:
    if isinstance(exc, BaseExceptionGroup):
        return exc.subgroup(lambda e: isinstance(e, KeyboardInterrupt)) is not None
    return isinstance(exc, KeyboardInterrupt)
