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

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

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
