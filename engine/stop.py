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
import signal
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, TypeVar

import anyio

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
