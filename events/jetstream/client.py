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
import orjson
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
# "JetStream system temporarily unavailable": a cluster electing a leader says it; ask again
TEMPORARILY_UNAVAILABLE = 10008
NO_RESPONDERS = "503"  # the status NATS answers a request with when nothing subscribes to its subject

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
        self._acks: Acks | None = None

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

    async def publish_many(self, messages: list[tuple[str, bytes, dict[str, str]]]) -> list[dict[str, Any] | Exception]:
        """Publish every (subject, data, headers) at once and wait for all acknowledgements:
        each answer or its `ServerSaid`, in order; `Unreachable` when some did not come
        within the timeout."""
        return [_answer_or_error(data) for data in await self._request_many(messages)]

    async def get_many(self, seqs: list[int]) -> list[bytes | None]:
        """The payloads stored at `seqs` (None where there is none), asked all at once."""
        subject = f"$JS.API.STREAM.MSG.GET.{self.url.stream}"
        answers = await self._request_many([(subject, b'{"seq":%d}' % seq, {}) for seq in seqs])
        out: list[bytes | None] = []
        for seq, data in zip(seqs, answers, strict=True):
            answer = _answer_or_error(data)
            if isinstance(answer, ServerSaid) and answer.err_code == MESSAGE_NOT_FOUND:
                out.append(None)
            elif isinstance(answer, Exception):
                raise answer
            elif int(answer["message"].get("seq", 0)) != seq:
                raise ServerSaid(0, 0, f"asked for the message at {seq}, given {answer['message'].get('seq')}")
            else:
                out.append(base64.b64decode(answer["message"].get("data") or ""))
        return out

    async def _request_many(self, messages: list[tuple[str, bytes, dict[str, str]]]) -> list[bytes]:
        """Send every request at once and wait for every answer, in order. One reply
        subscription serves them all (a request each, as `publish` makes, costs a future, a
        timer and a task per message: several times slower)."""
        acks = await self._replies()
        waiting = acks.expect(len(messages))
        try:
            for n, (subject, data, headers) in enumerate(messages):
                await self.nc.publish(subject, data, reply=f"{waiting.reply}.{n}", headers=headers or None)
            await waiting.wait(self.url.timeout)
        except (nats.errors.Error, OSError) as exc:
            raise Unreachable(_why(exc)) from exc
        finally:
            acks.done(waiting)
        out = []
        for msg in waiting.answers:
            assert msg is not None  # all arrived
            if msg.headers and msg.headers.get("Status") == NO_RESPONDERS:
                raise Unreachable("no JetStream server answered (no responders)")
            out.append(msg.data)
        return out

    async def _replies(self) -> Acks:
        if self._acks is None:
            acks, prefix = Acks(), self.nc.new_inbox()
            try:
                await self.nc.subscribe(f"{prefix}.>", cb=acks.take)
            except (nats.errors.Error, OSError) as exc:
                raise Unreachable(_why(exc)) from exc
            acks.prefix = prefix
            self._acks = acks
        return self._acks

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
        self._last = 0  # the stream sequence of the last message delivered

    async def take(self, msg: Msg) -> None:
        seq = msg.metadata.sequence.stream
        if seq <= self._last:
            return  # delivered again: an ordered consumer recreated after a leader change may start before its last delivery
        self._last = seq
        while len(self._items) >= FEED_MAX:
            self._taken.clear()
            await self._taken.wait()
        self._items.append((seq, msg.data))
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


class Waiting:
    """The acknowledgements of one `publish_many`, by their index in it."""

    def __init__(self, reply: str, count: int) -> None:
        self.reply = reply
        self.answers: list[Msg | None] = [None] * count
        self.left = count
        self.arrived = asyncio.Event()

    async def wait(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(self.arrived.wait(), timeout)
        except TimeoutError:
            raise Unreachable(f"{self.left} of {len(self.answers)} requests were not answered within {timeout:g} s") from None


class Acks:
    """The reply subscription `publish_many` shares: `<prefix>.<batch>.<index>` per message."""

    def __init__(self) -> None:
        self.prefix = ""
        self._batch = 0
        self._waiting: dict[str, Waiting] = {}

    def expect(self, count: int) -> Waiting:
        self._batch += 1
        waiting = Waiting(f"{self.prefix}.{self._batch}", count)
        self._waiting[str(self._batch)] = waiting
        if count == 0:
            waiting.arrived.set()
        return waiting

    def done(self, waiting: Waiting) -> None:
        self._waiting.pop(waiting.reply.rsplit(".", 1)[-1], None)

    async def take(self, msg: Msg) -> None:
        *_, batch, index = msg.subject.rsplit(".", 2)
        waiting = self._waiting.get(batch)
        if waiting is None or not index.isdigit() or int(index) >= len(waiting.answers):
            return  # a late answer of a batch already given up on
        n = int(index)
        if waiting.answers[n] is None:
            waiting.answers[n] = msg
            waiting.left -= 1
            if not waiting.left:
                waiting.arrived.set()


def _answer_or_error(data: bytes) -> dict[str, Any] | Exception:
    try:
        return _parsed(data)
    except ServerSaid as exc:
        return exc


def _answer(msg: Msg) -> dict[str, Any]:
    return _parsed(msg.data)


def _parsed(data: bytes) -> dict[str, Any]:
    try:
        answer = orjson.loads(data) if data else {}
    except ValueError as exc:
        raise ServerSaid(0, 0, f"not a JetStream answer: {data[:80]!r}") from exc
    error = answer.get("error")
    if error and int(error.get("err_code", 0)) == TEMPORARILY_UNAVAILABLE:
        raise Unreachable(str(error.get("description", "JetStream temporarily unavailable")))
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
