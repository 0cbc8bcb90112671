"""One NATS connection and the few JetStream requests the log makes, as coroutines run on
the bridge's loop (`events.jetstream.bridge`). Failures come out as `Unreachable` (no
server answered in time) or `ServerSaid` (the server refused, with its JetStream error
code); the log turns them into AsupErrors naming the URL."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections import deque
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import ConsumerConfig, DeliverPolicy

from events.errors import AsupError, ErrorCode
from events.jetstream.url import LogUrl

WRONG_LAST_SEQUENCE = 10071  # a plain publish's Nats-Expected-Last-(Subject-)Sequence did not hold
BATCH_WRONG_LAST_SEQUENCE = 10164  # the same, for an atomic batch (rejected whole)
STREAM_NOT_FOUND = 10059
MESSAGE_NOT_FOUND = 10037
STALE = frozenset({WRONG_LAST_SEQUENCE, BATCH_WRONG_LAST_SEQUENCE})

FEED_MAX = 16384  # delivered messages held for a reader that has not taken them
RECONNECT_WAIT = 0.2  # seconds between tries of a server

Message = tuple[int, bytes]  # (stream sequence, payload)


class Unreachable(Exception):
    """No server answered within the timeout (down, partitioned, or electing a leader)."""


class ServerSaid(Exception):
    def __init__(self, code: int, err_code: int, description: str) -> None:
        self.code, self.err_code, self.description = code, err_code, description
        super().__init__(f"{description} (JetStream error {err_code})")


async def _quiet(_: Exception) -> None:
    """nats-py reports connection trouble through this callback; asup reports it itself."""


class Connection:
    def __init__(self, url: LogUrl) -> None:
        self.url = url
        self._nc: Client | None = None

    async def connect(self) -> None:
        try:
            self._nc = await nats.connect(
                servers=list(self.url.servers),
                connect_timeout=max(1, round(self.url.timeout)),
                # per server, reset by each success: an unreachable URL fails within about its timeout,
                # while a cluster that loses a node is reconnected to the others
                max_reconnect_attempts=max(2, round(self.url.timeout / RECONNECT_WAIT)),
                reconnect_time_wait=RECONNECT_WAIT,
                allow_reconnect=True,
                error_cb=_quiet,
                name="asup",
            )
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise Unreachable(_why(exc)) from exc

    @property
    def nc(self) -> Client:
        assert self._nc is not None, "connect() first"
        return self._nc

    @property
    def connected(self) -> bool:
        """False while nats-py is reconnecting, and once it has given up."""
        return self._nc is not None and self._nc.is_connected

    def server_version(self) -> tuple[int, int, int]:
        version = self.nc.connected_server_version
        return version.major, version.minor, version.patch

    async def api(self, operation: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        """A JetStream API request (`$JS.API.<operation>`), its JSON answer; `ServerSaid` when it is an error."""
        payload = json.dumps(body).encode() if body is not None else b""
        msg = await self._request(f"$JS.API.{operation}", payload, None)
        return _answer(msg)

    async def publish(self, subject: str, data: bytes, headers: dict[str, str]) -> dict[str, Any]:
        """Publish and wait for the stream's acknowledgement."""
        return _answer(await self._request(subject, data, headers))

    async def send(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        """Publish with no acknowledgement asked (the non-final messages of an atomic batch)."""
        try:
            await self.nc.publish(subject, data, headers=headers)
        except (nats.errors.Error, OSError) as exc:
            raise Unreachable(_why(exc)) from exc

    async def get(self, seq: int) -> bytes | None:
        """The payload stored at `seq`, or None when there is none."""
        try:
            answer = await self.api(f"STREAM.MSG.GET.{self.url.stream}", {"seq": seq})
        except ServerSaid as exc:
            if exc.err_code == MESSAGE_NOT_FOUND:
                return None
            raise
        return base64.b64decode(answer["message"].get("data") or "")

    async def follow(self, subject: str, start: int) -> Feed:
        """An ordered consumer of `subject` from stream sequence `start` (in memory on the
        server, no acks: it costs the stream nothing and ends with the subscription)."""
        feed = Feed()
        config = ConsumerConfig(opt_start_seq=start, deliver_policy=DeliverPolicy.BY_START_SEQUENCE)
        try:
            feed.sub = await self.nc.jetstream(timeout=self.url.timeout).subscribe(
                subject, stream=self.url.stream, ordered_consumer=True, config=config, idle_heartbeat=1.0, cb=feed.take
            )
        except nats.errors.TimeoutError as exc:
            raise Unreachable(_why(exc)) from exc
        except nats.errors.Error as exc:
            raise ServerSaid(0, 0, str(exc) or type(exc).__name__) from exc
        return feed

    async def close(self) -> None:
        if self._nc is not None and not self._nc.is_closed:
            with contextlib.suppress(nats.errors.Error, OSError):
                await self._nc.close()

    async def _request(self, subject: str, payload: bytes, headers: dict[str, str] | None) -> Msg:
        try:
            return await self.nc.request(subject, payload, timeout=self.url.timeout, headers=headers)
        except nats.errors.NoRespondersError as exc:
            raise Unreachable("no JetStream server answered (no responders)") from exc
        except (nats.errors.Error, OSError, TimeoutError) as exc:
            raise Unreachable(_why(exc)) from exc


class Feed:
    """What an ordered consumer delivered and the caller has not taken yet. The consumer's
    callback appends (no task per message, as `next_msg` would make) and waits while
    FEED_MAX are untaken, so a slow reader holds the server back instead of filling memory."""

    def __init__(self) -> None:
        self.sub: Subscription | None = None
        self._items: deque[Message] = deque()
        self._arrived = asyncio.Event()
        self._taken = asyncio.Event()

    async def take(self, msg: Msg) -> None:
        while len(self._items) >= FEED_MAX:
            self._taken.clear()
            await self._taken.wait()
        self._items.append((msg.metadata.sequence.stream, msg.data))
        self._arrived.set()

    async def next(self, most: int, wait: float | None) -> list[Message]:
        """Up to `most` delivered messages: waits (at most `wait` s, None: for as long as it
        takes) for the first, then takes only what has already arrived."""
        if not self._items:
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), wait)
            except TimeoutError:
                return []
        items = self._items
        out = [items.popleft() for _ in range(min(most, len(items)))]
        self._taken.set()
        return out

    async def close(self) -> None:
        if self.sub is not None:
            with contextlib.suppress(nats.errors.Error, OSError):
                await self.sub.unsubscribe()


def _answer(msg: Msg) -> dict[str, Any]:
    try:
        answer = json.loads(msg.data) if msg.data else {}
    except ValueError as exc:
        raise ServerSaid(0, 0, f"not a JetStream answer: {msg.data[:80]!r}") from exc
    error = answer.get("error")
    if error:
        raise ServerSaid(int(error.get("code", 0)), int(error.get("err_code", 0)), str(error.get("description", "")))
    return dict(answer)


def unreachable(name: str, why: str, timeout: float) -> AsupError:
    """The one line for a server that did not answer: exit 4, naming the URL and its timeout."""
    return AsupError(
        ErrorCode.LOG_UNREACHABLE,
        f"cannot reach the server: {why} (each request waits {timeout:g} s; set ?timeout=SECONDS)",
        file=name,
    )


def as_asup_error(exc: Unreachable | ServerSaid | TimeoutError, name: str, timeout: float) -> AsupError:
    """A client failure as the AsupError every caller raises (`from exc`)."""
    if isinstance(exc, ServerSaid):
        return AsupError(ErrorCode.IO_FAILED, f"the server refused: {exc}", file=name)
    return unreachable(name, str(exc) if isinstance(exc, Unreachable) else "timed out", timeout)


def _why(exc: BaseException) -> str:
    if isinstance(exc, nats.errors.NoServersError):
        return "no server accepted a connection"
    if isinstance(exc, nats.errors.TimeoutError | TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__
