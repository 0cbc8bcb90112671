"""Running the console: uvicorn on a socket `asup ui` bound, the followers in its lifespan.

uvicorn's own signal handling re-raises the signal once it has shut down, which would end
the process by SIGTERM's default action or a KeyboardInterrupt at an arbitrary point; here a
signal only asks the server to stop, and `serve` says it came, so `asup ui` exits 130 as
every asup command stopped by Ctrl-C or SIGTERM does.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from collections.abc import Iterator
from types import FrameType

import anyio
import uvicorn

from runbook.console.app import build_app
from runbook.console.live import Hub, run_followers
from runbook.console.model import LogModel
from runbook.console.security import Settings

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Server(uvicorn.Server):
    signalled = False
    hub: Hub | None = None

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.hub is not None:
            self.hub.close()  # the live feeds end first: a browser's open stream must not hold the shutdown
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self._stop) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _stop(self, sig: int, frame: FrameType | None) -> None:
        self.signalled = True
        self.should_exit = True


def make_server(model: LogModel, settings: Settings) -> _Server:
    hub = Hub(model)
    stop = anyio.Event()

    async def followers() -> None:
        try:
            await run_followers(model, hub, stop)
        finally:
            stop.set()

    app = build_app(model, hub, settings, followers)
    config = uvicorn.Config(app, log_level="warning", lifespan="on", access_log=False, timeout_graceful_shutdown=1)
    server = _Server(config)
    server.hub = hub
    return server


def serve(model: LogModel, settings: Settings, sock: socket.socket) -> bool:
    """Serve until stopped; True when a signal stopped it."""
    server = make_server(model, settings)
    server.run(sockets=[sock])
    return server.signalled
