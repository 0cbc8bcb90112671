"""Leases shared across hosts, in a JetStream KV bucket (`KV_asup-leases`).

The bucket keeps one message per key (history 1) for at most its TTL (the stream's
`max_age`, 15 s unless asked otherwise). A lease is one key:

    take      publish the holder JSON (`engine.liveness.holder_for`) on `$KV.asup-leases.<key>`
              with `Nats-Expected-Last-Subject-Sequence: 0`: only when nobody holds it (a
              delete marker a release left is taken over with its own sequence expected)
    renew     a heartbeat task on the bridge's loop republishes the value every TTL/3,
              expecting the revision it wrote last; the new message restarts the TTL
    lost      a renewal refused (another holder took the key after it expired) or not
              acknowledged within the TTL: `KvLease.lost` says why, `check()` raises
    release   a delete marker (`KV-Operation: DEL`), expecting the revision held; a server
              that cannot be reached then only stops the renewals (the entry expires)

A holder that dies stops renewing; its entry expires after the TTL and the next taker gets
the lease. `KvLeases.probe(key)` lets `engine.liveness.check_kv` ask whether it is held.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from blake3 import blake3

from engine.js_stream import EXPECT_SUBJECT_SEQ, JsStream, Stored, is_stale
from engine.object_url import parse_target
from events.errors import AsupError, ErrorCode
from events.jetstream.client import STREAM_NOT_FOUND, ServerSaid, Unreachable
from events.jetstream.url import LogUrl

BUCKET = "asup-leases"
DEFAULT_TTL = 15.0  # seconds a dead holder's lease outlives it
OPERATION = "KV-Operation"
_NS = 1_000_000_000


def lease_key(bucket: str, name: str) -> str:
    """The lease key of artifact `name` of the object-store bucket `bucket`."""
    return f"obj.{bucket}.{blake3(name.encode()).hexdigest()[:32]}"


def target_probe(target_path: str) -> LeaseProbe:
    """The lease of an object-store target path, `nats://HOST:PORT/BUCKET#NAME`
    (`engine.object_store.ObjectStore.target_path`); a usage error when it is not one."""
    bucket, name = parse_target(target_path)
    return KvLeases(bucket.url).probe(lease_key(bucket.bucket, name))


def _config(bucket: str, ttl: float, replicas: int | None) -> dict[str, Any]:
    """A KV bucket as the NATS clients make one, so `nats kv` reads it."""
    return {
        "subjects": [f"$KV.{bucket}.>"],
        "max_msgs_per_subject": 1,
        "max_age": int(ttl * _NS),
        "duplicate_window": int(min(ttl, 120.0) * _NS),
        "discard": "new",
        "allow_rollup_hdrs": True,
        "deny_delete": True,
        "allow_direct": True,
        "storage": "file",
        "num_replicas": replicas or 1,
    }


class KvLeases:
    """The lease bucket on the servers of `url` (its stream part is ignored)."""

    def __init__(self, url: LogUrl, *, ttl: float = DEFAULT_TTL, bucket: str = BUCKET) -> None:
        self.bucket = bucket
        self._js = JsStream(url, f"KV_{bucket}", f"{url.servers[0]}/KV_{bucket}")
        self._asked_ttl = ttl
        self.ttl = ttl  # the bucket's own once it is open (a bucket made earlier keeps its TTL)
        self._ready = False
        self._connected = False

    def _subject(self, key: str) -> str:
        return f"$KV.{self.bucket}.{key}"

    def _connect(self) -> None:
        if not self._connected:
            self._js.run(self._js.conn.connect())
            self._connected = True

    def open(self) -> None:
        """Connect, and make the bucket when it is not there yet (a taker does; a reader never)."""
        if self._ready:
            return
        self._connect()
        config = self._js.run(self._js.ensure(_config(self.bucket, self._asked_ttl, self._js.url.replicas)))
        self.ttl = int(config.get("max_age", 0)) / _NS or self._asked_ttl
        self._ready = True

    def take(self, key: str, holder: str) -> KvLease | None:
        """The lease `key`, holding `holder` and renewed until released; None while another holds it."""
        self.open()
        rev = self._js.run(self._create(self._subject(key), holder.encode()))
        if rev is None:
            return None
        lease = KvLease(self, key, holder.encode(), rev)
        self._js.run(lease.start())
        return lease

    async def _create(self, subject: str, value: bytes) -> int | None:
        """Publish `value` only where no live entry is: none at all, or a release's delete marker."""
        expect = 0
        for _ in range(2):
            try:
                return await self._js.put(subject, value, {EXPECT_SUBJECT_SEQ: str(expect)})
            except ServerSaid as exc:
                if not is_stale(exc):
                    raise
            there = await self._js.last(subject)
            if there is not None and not _deleted(there):
                return None  # a live entry: held
            expect = there.seq if there is not None else 0  # a marker, or an entry that expired just now
        return None  # another taker was first

    def holder(self, key: str) -> bytes | None:
        """The value of a live lease `key` (the holder JSON); None when nobody holds it (no
        bucket at all included: asking creates nothing)."""
        self._connect()
        there = self._js.run(self._last(self._subject(key)))
        return None if there is None or _deleted(there) else there.data

    async def _last(self, subject: str) -> Stored | None:
        try:
            return await self._js.last(subject)
        except ServerSaid as exc:
            if exc.err_code == STREAM_NOT_FOUND:
                return None
            raise

    def probe(self, key: str) -> LeaseProbe:
        return LeaseProbe(self, key)

    def close(self) -> None:
        if self._connected:
            self._js.run(self._js.conn.close())
            self._ready = self._connected = False


class LeaseProbe:
    """What `engine.liveness.check_kv` asks: the holder of one key, or None."""

    def __init__(self, leases: KvLeases, key: str) -> None:
        self.leases, self.key = leases, key
        self.name = f"{leases.bucket}/{key}"

    def held_by(self) -> bytes | None:
        return self.leases.holder(self.key)

    def close(self) -> None:
        self.leases.close()


class KvLease:
    """One held lease; renewed by a task on the bridge's loop until `release`."""

    def __init__(self, leases: KvLeases, key: str, value: bytes, rev: int) -> None:
        self._leases = leases
        self._js = leases._js
        self.key = key
        self._subject = leases._subject(key)
        self._value = value
        self.revision = rev
        self.renewals = 0
        self.lost: str | None = None  # why the lease was lost, once it was
        self.released = False
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._beat())

    async def _beat(self) -> None:
        every = self._leases.ttl / 3
        renewed = time.monotonic()
        while self.lost is None:
            await asyncio.sleep(every)
            try:
                self.revision = await self._js.put(self._subject, self._value, {EXPECT_SUBJECT_SEQ: str(self.revision)})
                renewed = time.monotonic()
                self.renewals += 1
            except ServerSaid as exc:
                self.lost = (
                    "another holder took it: it expired before it was renewed" if is_stale(exc) else f"the server refused a renewal: {exc}"
                )
            except Unreachable as exc:
                if time.monotonic() - renewed >= self._leases.ttl:
                    self.lost = f"not renewed within its {self._leases.ttl:g} s TTL: {exc}"

    def check(self) -> None:
        """Raise when the lease was lost (see `lost`)."""
        if self.lost is not None and not self.released:
            raise AsupError(ErrorCode.CONFLICT_DETECTED, f"the lease {self.key} was lost: {self.lost}", file=self._js.what)

    def release(self) -> None:
        """Stop renewing and delete the entry, unless another holder has it by now."""
        if self._task is None:
            return
        self.released = True
        self._js.run(self._stop())
        if self.lost is None:
            try:
                self._js.run(self._delete())
            except AsupError as exc:
                if exc.code is not ErrorCode.LOG_UNREACHABLE:
                    raise
                # no longer renewed, the entry expires a TTL from now: a lost server keeps nobody out for longer,
                # and the failure the transfer met first stays the one it reports
                self.lost = f"not released: {exc.message}"

    async def _stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _delete(self) -> None:
        headers = {EXPECT_SUBJECT_SEQ: str(self.revision), OPERATION: "DEL"}
        try:
            await self._js.put(self._subject, b"", headers)
        except ServerSaid as exc:
            if not is_stale(exc):
                raise
            self.lost = "another holder took it before the release"


def _deleted(msg: Stored) -> bool:
    return msg.headers.get(OPERATION) in ("DEL", "PURGE")
