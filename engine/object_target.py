"""One artifact of an object-store target: the handle `ObjectStore.open` returns.

In bucket `B` (stream `OBJ_B`), artifact `NAME` with key `K` (the first 32 hex digits of
BLAKE3(NAME)) uses the object store's own subjects:

    $O.B.C.asup-K-tmp       the unpublished artifact's record: which chunk id it writes
                            (last message wins); a new one once that id is published
    $O.B.C.<chunk id>       its chunks, in stream order exactly the bytes from offset 0; each
                            chunk's headers record its offset (`Asup-Offset`), its BLAKE3
                            (`Asup-Blake3`) and the handle that wrote it (`Asup-Writer`)
    $O.B.C.asup-K-ckpt      the checkpoint (rolled up: last message wins)
    $O.B.M.<base64url NAME> the published object's meta, as `nats object` writes it (with
                            its `SHA-256=` digest), plus the BLAKE3 in its `headers`

`held()` reads the chunks' headers only (a headers-only consumer), never their bytes. A
chunk is appended expecting the subject's last sequence as this handle knows it, so two
writers never interleave silently. `prepare(cursor)` deletes the chunks past the cursor
(newest first: a crash leaves a shorter prefix) and rewrites a chunk the cursor cuts.
`publish()` writes the meta with `Nats-Expected-Last-Subject-Sequence: 0`: a meta there
already is CONFLICT_DETECTED, never replaced. The digests of the bytes are kept while this
handle writes them in order; a handle that did not write them all (a resume) reads the
chunks back once, for `digest()` or `publish()`, and checks each against its header.
Leases are KV leases (`engine.kv_leases`). Bundles are refused by `ObjectStore.open`.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from typing import Any

import msgspec
from blake3 import blake3

from engine.directory_target import Generations
from engine.js_stream import EXPECT_SUBJECT_SEQ, ROLLUP, JsStream, Stored, is_stale
from engine.kv_leases import KvLease, KvLeases
from engine.layout import Layout
from engine.liveness import describe_holder
from engine.target_store import UNKNOWN, Digest, Held
from events.clock import format_ts
from events.errors import AsupError, ErrorCode
from events.jetstream.client import ServerSaid

CHUNK_SIZE = 128 * 1024  # the object store's default chunk size
OFFSET, BLAKE3, WRITER = "Asup-Offset", "Asup-Blake3", "Asup-Writer"


class Chunk(msgspec.Struct, frozen=True):
    seq: int
    offset: int
    size: int
    blake3: str
    writer: str


class Hashes:
    """BLAKE3 and SHA-256 of the bytes [0, `size`), the last chunk hashed being `seq`."""

    def __init__(self) -> None:
        self.blake3 = blake3()
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.seq = 0

    def add(self, data: bytes, seq: int) -> None:
        self.blake3.update(data)
        self.sha256.update(data)
        self.size += len(data)
        self.seq = seq


def name_key(name: str) -> str:
    return blake3(name.encode()).hexdigest()[:32]


def meta_subject(bucket: str, name: str) -> str:
    return f"$O.{bucket}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"


class ObjectHandle:
    """Artifact `name` of the bucket `js` streams (see the module docstring)."""

    def __init__(self, js: JsStream, bucket: str, leases: KvLeases, name: str, layout: Layout, generations: Generations) -> None:
        self._js = js
        self._bucket = bucket
        self._leases = leases
        self._name = name
        self._layout = layout
        self._generations = generations
        key = name_key(name)
        self._lease_key = f"obj.{bucket}.{key}"
        self._chunk_prefix = f"asup-{key}-"
        self._record = f"$O.{bucket}.C.asup-{key}-tmp"
        self.checkpoint_subject = f"$O.{bucket}.C.asup-{key}-ckpt"
        self._meta = meta_subject(bucket, name)
        self._writer = secrets.token_hex(8)
        self._hashes: Hashes | None = None  # None: this handle has not hashed the bytes held
        self._tail: tuple[str, int, int] | None = None  # (chunk id, bytes, last seq) as left by this handle
        self._held_leases: list[KvLease] = []
        self.chunk_fetches = 0  # chunk payloads read back (a resume's digest, a cut chunk)

    # --- lease -------------------------------------------------------------------------

    def lease(self, holder: str) -> KvLease | None:
        lease = self._leases.take(self._lease_key, holder)
        if lease is not None:
            self._held_leases.append(lease)
        return lease

    def lease_holder(self) -> str:
        try:
            return describe_holder(self._leases.holder(self._lease_key) or b"")
        except AsupError:
            return describe_holder(b"")  # the lease is refused either way; who holds it is a courtesy

    # --- reading -------------------------------------------------------------------------

    def epoch(self) -> str:
        return self._generations.token(self._name, self._js.run(self._stamp()))

    async def _stamp(self) -> str:
        cid = await self._chunk_id(create=False)
        if cid is None:
            return "-"
        last = await self._js.scan(self._chunks(cid), headers_only=True, last_only=True)
        if not last:  # or 2.9 lost the subject's last sequence (see `_put_chunk`): look at them all
            last = await self._js.scan(self._chunks(cid), headers_only=True)
        return f"{cid}:{last[-1].seq if last else 0}"

    def held(self) -> Held:
        return self._js.run(self._held())

    async def _held(self) -> Held:
        cid = await self._chunk_id(create=False)
        size = 0
        if cid is not None:
            size = sum(c.size for c in _contiguous(await self._scan(cid)))
        return Held(size, await self._final())

    async def _final(self) -> Digest | None:
        meta = await self._js.last(self._meta)
        if meta is None:
            return None
        info = _json(meta.data)
        claimed = (info.get("headers") or {}).get(BLAKE3)
        if info.get("deleted") or not isinstance(claimed, list) or not claimed:
            return UNKNOWN  # not an object asup published
        return str(claimed[0]), int(info.get("size") or 0)

    async def _scan(self, cid: str) -> list[Chunk]:
        return [_chunk(m) for m in await self._js.scan(self._chunks(cid), headers_only=True)]

    def _chunks(self, cid: str) -> str:
        return f"$O.{self._bucket}.C.{cid}"

    async def _chunk_id(self, *, create: bool) -> str | None:
        """The unpublished artifact's chunk id; a new one (when `create`) if there is none
        or the one recorded was published."""
        record = await self._js.last(self._record)
        cid = _json(record.data).get("chunks") if record is not None else None
        if isinstance(cid, str) and cid.startswith(self._chunk_prefix):
            meta = await self._js.last(self._meta)
            if meta is None or _json(meta.data).get("nuid") != cid:
                return cid
        if not create:
            return None
        new = self._chunk_prefix + secrets.token_hex(10)
        body = json.dumps({"name": self._name, "chunks": new}).encode()
        try:
            await self._js.put(self._record, body, {EXPECT_SUBJECT_SEQ: str(record.seq if record else 0), ROLLUP: "sub"})
        except ServerSaid as exc:
            if not is_stale(exc):
                raise
            return await self._chunk_id(create=False)  # another client made one first: share it
        return new

    # --- writing -----------------------------------------------------------------------

    def prepare(self, cursor: int) -> None:
        self._js.run(self._prepare(cursor))

    async def _prepare(self, cursor: int) -> None:
        cid = await self._chunk_id(create=True)
        assert cid is not None
        chunks = await self._scan(cid)
        keep = _contiguous(chunks)
        size, cut = 0, None
        for index, chunk in enumerate(keep):
            if size + chunk.size > cursor:
                cut = chunk if cursor > size else None
                keep = keep[:index]
                break
            size += chunk.size
        kept = {c.seq for c in keep}
        head = await self._read_cut(cut, cursor - size) if cut is not None else b""
        for chunk in reversed(chunks):  # newest first: what stays is always a prefix
            if chunk.seq not in kept:
                await self._js.delete(chunk.seq)
        last = keep[-1].seq if keep else 0
        if cursor == 0:
            self._hashes = Hashes()
        elif self._hashes is not None and (self._hashes.size, self._hashes.seq) != (size, last):
            self._hashes = None
        self._tail = (cid, size, last)
        if head:
            await self._append(cid, size, head)

    async def _read_cut(self, cut: Chunk, take: int) -> bytes:
        """The first `take` bytes of the chunk the cursor cuts (empty when it is damaged)."""
        msg = await self._js.fetch(cut.seq)
        self.chunk_fetches += 1
        if msg is None or "blake3:" + blake3(msg.data).hexdigest() != cut.blake3:
            return b""
        return msg.data[:take]

    def write(self, offset: int, data: bytes) -> tuple[int, str]:
        size, stamp = self._js.run(self._write(offset, data))
        return size, self._generations.own_write(self._name, stamp)

    async def _write(self, offset: int, data: bytes) -> tuple[int, str]:
        cid = await self._chunk_id(create=True)
        assert cid is not None
        for _ in range(3):
            cid, size, _last = await self._known_tail(cid)
            if offset > size:
                why = f"bytes go in order: offset {offset} is past the {size} bytes held"
                raise AsupError(ErrorCode.USAGE, why, file=f"{self._js.what}/{self._name}")
            if offset < size:
                await self._prepare(offset)
            try:
                await self._append(cid, offset, data)
            except ServerSaid as exc:
                if not is_stale(exc):
                    raise
                self._tail = None  # another writer moved the chunks: read where they are now
                continue
            assert self._tail is not None
            return self._tail[1], f"{cid}:{self._tail[2]}"
        raise AsupError(
            ErrorCode.CONFLICT_DETECTED, "another writer keeps changing the unpublished artifact", file=f"{self._js.what}/{self._name}"
        )

    async def _known_tail(self, cid: str) -> tuple[str, int, int]:
        if self._tail is None or self._tail[0] != cid:
            chunks = _contiguous(await self._scan(cid))
            self._tail = (cid, sum(c.size for c in chunks), chunks[-1].seq if chunks else 0)
            if not chunks:
                self._hashes = Hashes()  # nothing held: what this handle writes is all there is
        return self._tail

    async def _append(self, cid: str, offset: int, data: bytes) -> None:
        """Chunks of `data` at `offset`, each expecting the last sequence this handle knows."""
        assert self._tail is not None
        last = self._tail[2]
        for at in range(0, len(data), CHUNK_SIZE):
            piece = data[at : at + CHUNK_SIZE]
            headers = {
                EXPECT_SUBJECT_SEQ: str(last),
                OFFSET: str(offset + at),
                BLAKE3: "blake3:" + blake3(piece).hexdigest(),
                WRITER: self._writer,
            }
            last = await self._put_chunk(cid, piece, headers, last)
            self._tail = (cid, offset + at + len(piece), last)
            if self._hashes is not None and self._hashes.size == offset + at:
                self._hashes.add(piece, last)
            else:
                self._hashes = None

    async def _put_chunk(self, cid: str, piece: bytes, headers: dict[str, str], last: int) -> int:
        try:
            return await self._js.put(self._chunks(cid), piece, headers)
        except ServerSaid as exc:
            # 2.9's file store forgets a subject's last sequence once its newest message is
            # deleted (a prepare) and counts the subject empty until the next publish; when
            # the chunks are still as this handle left them, expecting 0 is that same state
            if not (is_stale(exc) and last and exc.description.endswith("sequence: 0")):
                raise
            chunks = await self._scan(cid)
            if not chunks or chunks[-1].seq != last:
                raise
        return await self._js.put(self._chunks(cid), piece, {**headers, EXPECT_SUBJECT_SEQ: "0"})

    # --- digest, publish ---------------------------------------------------------------

    def digest(self) -> Digest:
        hashes = self._js.run(self._hashed(), rounds=16)
        return "blake3:" + hashes.blake3.hexdigest(), hashes.size

    async def _hashed(self) -> Hashes:
        """The digests of the bytes held: this handle's own, or the chunks read back once."""
        cid = await self._chunk_id(create=False)
        if cid is None:
            return Hashes()
        chunks = _contiguous(await self._scan(cid))
        last = chunks[-1].seq if chunks else 0
        size = sum(c.size for c in chunks)
        if self._hashes is not None and (self._hashes.size, self._hashes.seq) == (size, last):
            return self._hashes
        hashes = Hashes()
        for msg in await self._js.scan(self._chunks(cid), headers_only=False):
            chunk = _chunk(msg)
            if chunk.offset != hashes.size:
                break
            self.chunk_fetches += 1
            if "blake3:" + blake3(msg.data).hexdigest() != chunk.blake3:
                why = f"chunk at offset {chunk.offset} (seq {chunk.seq}) does not match its recorded BLAKE3"
                raise AsupError(ErrorCode.CORRUPT_RECORD, why, file=f"{self._js.what}/{self._name}")
            hashes.add(msg.data, msg.seq)
        self._hashes = hashes
        return hashes

    def publish(self) -> None:
        self._js.run(self._publish(), rounds=16)

    async def _publish(self) -> None:
        cid = await self._chunk_id(create=True)
        assert cid is not None
        chunks = await self._scan(cid)
        keep = {c.seq for c in _contiguous(chunks)}
        for chunk in reversed(chunks):  # `nats object get` reads every message on the subject
            if chunk.seq not in keep:
                await self._js.delete(chunk.seq)
        hashes = await self._hashed()
        info = self._info(cid, hashes, len(keep))
        try:
            await self._js.put(self._meta, json.dumps(info).encode(), {EXPECT_SUBJECT_SEQ: "0", ROLLUP: "sub"})
        except ServerSaid as exc:
            if not is_stale(exc):
                raise
            why = f"an object is already published under this name in bucket {self._bucket} (never replaced)"
            raise AsupError(ErrorCode.CONFLICT_DETECTED, why, file=f"{self._js.what}/{self._name}") from None

    def _info(self, cid: str, hashes: Hashes, chunks: int) -> dict[str, Any]:
        """The meta JSON as the object store clients write it."""
        return {
            "name": self._name,
            "bucket": self._bucket,
            "nuid": cid,
            "size": hashes.size,
            "chunks": chunks,
            "mtime": format_ts(time.time_ns()),
            "digest": "SHA-256=" + base64.urlsafe_b64encode(hashes.sha256.digest()).decode(),
            "headers": {BLAKE3: ["blake3:" + hashes.blake3.hexdigest()]},
            "options": {"max_chunk_size": CHUNK_SIZE},
        }

    # --- checkpoint, tidy, close ----------------------------------------------------------

    def checkpoint(self, data: bytes) -> str:
        self._js.run(self._js.put(self.checkpoint_subject, data, {ROLLUP: "sub"}))
        return self.checkpoint_subject

    def tidy(self, completed: bool) -> None:
        """Completed: the checkpoint and the record of the (now published) chunk id go.
        Failed before a byte was written: the empty record goes. Bytes a resume needs stay."""
        self._js.run(self._tidy(completed))

    async def _tidy(self, completed: bool) -> None:
        if completed:
            await self._js.purge(self.checkpoint_subject)
            if await self._chunk_id(create=False) is None:
                await self._js.purge(self._record)
        elif self._layout.size and (await self._held()).size == 0:
            await self._js.purge(self._record)

    def close(self) -> None:
        for lease in self._held_leases:
            lease.release()
        self._held_leases = []


def _chunk(msg: Stored) -> Chunk:
    try:
        offset = int(msg.headers.get(OFFSET, "-1"))
    except ValueError:
        offset = -1
    return Chunk(msg.seq, offset, msg.size, msg.headers.get(BLAKE3, ""), msg.headers.get(WRITER, ""))


def _contiguous(chunks: list[Chunk]) -> list[Chunk]:
    """The chunks that hold bytes from offset 0 with no gap, in order."""
    out, size = [], 0
    for chunk in chunks:
        if chunk.offset != size:
            break
        out.append(chunk)
        size += chunk.size
    return out


def _json(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}
