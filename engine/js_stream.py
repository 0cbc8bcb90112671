"""The few JetStream stream operations the object store and the KV leases make, as
coroutines on one `events.jetstream.client.Connection` (so on the bridge's loop), and
`run`, the synchronous call that turns the client's errors into AsupErrors naming the URL.

    last(subject)        the newest message on a subject (payload and headers), or None
    fetch(seq)           the message at a stream sequence, or None
    put(subject, ...)    publish with headers, the stored sequence
    scan(subject, ...)   every message on a subject in order, through an ephemeral pull
                         consumer; `headers_only` reads no payload (a chunk's size comes
                         from `Nats-Msg-Size`)
    delete(seq), purge(subject)
"""

from __future__ import annotations

import base64
import contextlib
import json
from collections.abc import Coroutine
from typing import Any, TypeVar

import msgspec
from nats.aio.msg import Msg

from events.errors import AsupError
from events.jetstream.bridge import bridge
from events.jetstream.client import (
    MESSAGE_NOT_FOUND,
    STALE,
    STREAM_NOT_FOUND,
    Connection,
    ServerSaid,
    Unreachable,
    as_asup_error,
    unreachable,
)
from events.jetstream.url import LogUrl

T = TypeVar("T")
EXPECT_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
ROLLUP = "Nats-Rollup"
SCAN_BATCH = 256
_NS = 1_000_000_000


class Stored(msgspec.Struct, frozen=True):
    """One stored message: its stream sequence, headers, payload (b"" when read headers
    only) and payload size."""

    seq: int
    headers: dict[str, str]
    data: bytes
    size: int


def is_stale(exc: BaseException) -> bool:
    """Whether `exc` is the server refusing a publish whose expected last sequence did not hold."""
    return isinstance(exc, ServerSaid) and exc.err_code in STALE


class JsStream:
    """Stream `stream` through `conn` (connected by `connect`)."""

    def __init__(self, url: LogUrl, stream: str, what: str) -> None:
        self.url = url
        self.stream = stream
        self.what = what  # names the URL in every error: `nats://H:P/BUCKET`
        self.conn = Connection(LogUrl(url.servers, stream, url.replicas, url.timeout))

    # --- synchronous -----------------------------------------------------------------

    def run(self, coro: Coroutine[Any, Any, T], *, rounds: int = 4) -> T:
        """Run `coro` on the bridge's loop; its client errors as AsupErrors naming `what`."""
        try:
            return bridge().call(coro, rounds * self.url.timeout + 1)
        except (Unreachable, ServerSaid, TimeoutError) as exc:
            raise as_asup_error(exc, self.what, self.url.timeout) from exc

    def unreachable(self, why: str) -> AsupError:
        return unreachable(self.what, why, self.url.timeout)

    # --- coroutines ------------------------------------------------------------------

    async def ensure(self, config: dict[str, Any]) -> dict[str, Any]:
        """The stream's config: the one there, or `config` created now."""
        try:
            return dict((await self.conn.api(f"STREAM.INFO.{self.stream}"))["config"])
        except ServerSaid as exc:
            if exc.err_code != STREAM_NOT_FOUND:
                raise
        try:
            return dict((await self.conn.api(f"STREAM.CREATE.{self.stream}", {"name": self.stream, **config}))["config"])
        except ServerSaid:  # another client created it first: theirs stands
            return dict((await self.conn.api(f"STREAM.INFO.{self.stream}"))["config"])

    async def last(self, subject: str) -> Stored | None:
        return await self._get({"last_by_subj": subject})

    async def fetch(self, seq: int) -> Stored | None:
        return await self._get({"seq": seq})

    async def _get(self, body: dict[str, Any]) -> Stored | None:
        try:
            answer = (await self.conn.api(f"STREAM.MSG.GET.{self.stream}", body))["message"]
        except ServerSaid as exc:
            if exc.err_code == MESSAGE_NOT_FOUND:
                return None
            raise
        data = base64.b64decode(answer.get("data") or "")
        return Stored(int(answer["seq"]), _headers(base64.b64decode(answer.get("hdrs") or "")), data, len(data))

    async def put(self, subject: str, data: bytes, headers: dict[str, str]) -> int:
        return int((await self.conn.publish(subject, data, headers))["seq"])

    async def delete(self, seq: int) -> None:
        try:
            await self.conn.api(f"STREAM.MSG.DELETE.{self.stream}", {"seq": seq, "no_erase": True})
        except ServerSaid as exc:
            if exc.err_code != MESSAGE_NOT_FOUND:  # gone already: what was asked holds
                raise

    async def purge(self, subject: str) -> None:
        await self.conn.api(f"STREAM.PURGE.{self.stream}", {"filter": subject})

    async def scan(self, subject: str, *, headers_only: bool, last_only: bool = False) -> list[Stored]:
        """Every message on `subject` in stream order (only the newest when `last_only`)."""
        config = {
            "deliver_policy": "last" if last_only else "all",
            "ack_policy": "none",
            "filter_subject": subject,
            "headers_only": headers_only,
            "mem_storage": True,
            "inactive_threshold": int(max(5.0, 2 * self.url.timeout) * _NS),
        }
        created = await self.conn.api(f"CONSUMER.CREATE.{self.stream}", {"stream_name": self.stream, "config": config})
        name = str(created["name"])
        try:
            pending = int(created.get("num_pending", 0))
            return await self._drain(name, 1 if last_only and pending else pending)
        finally:
            with contextlib.suppress(ServerSaid, Unreachable):  # else it goes by itself after its inactive threshold
                await self.conn.api(f"CONSUMER.DELETE.{self.stream}.{name}")

    async def _drain(self, consumer: str, pending: int) -> list[Stored]:
        out: list[Stored] = []
        if not pending:
            return out
        nc = self.conn.nc
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        try:
            while pending:
                want = min(pending, SCAN_BATCH)
                body = json.dumps({"batch": want, "no_wait": True}).encode()  # what is there now, then a status
                await nc.publish(f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{consumer}", body, reply=inbox)
                for _ in range(want):
                    msg = await self._next(sub)
                    if msg is None:
                        return out  # a status (expired, no messages): what there was is read
                    out.append(_stored(msg))
                    pending = msg.metadata.num_pending
                    if not pending:
                        break
            return out
        finally:
            await sub.unsubscribe()

    async def _next(self, sub: Any) -> Msg | None:
        try:
            msg: Msg = await sub.next_msg(self.url.timeout + 1)
        except TimeoutError as exc:  # nats-py's own TimeoutError is one too
            raise Unreachable("timed out reading a stream") from exc
        if msg.headers and "Status" in msg.headers:
            return None
        return msg


def _stored(msg: Msg) -> Stored:
    headers = dict(msg.headers or {})
    size = int(headers.get("Nats-Msg-Size", len(msg.data)))
    return Stored(msg.metadata.sequence.stream, headers, msg.data, size)


def _headers(raw: bytes) -> dict[str, str]:
    """The `NATS/1.0` header block of a stored message, as one value per key."""
    out: dict[str, str] = {}
    for line in raw.decode(errors="replace").split("\r\n")[1:]:
        key, sep, value = line.partition(":")
        if sep:
            out[key.strip()] = value.strip()
    return out
