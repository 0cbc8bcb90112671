"""One artifact of an object-store target: the handle `ObjectStore.open` returns.

In bucket `B` (stream `OBJ_B`), artifact `NAME` with key `K` (the first 32 hex digits of
BLAKE3(NAME)) uses the object store's own subjects:

    $O.B.C.asup-K-tmp       the unpublished artifact's record: which chunk id it writes
                            (last message wins); a new one once that id is published (or,
                            for a bundle, when it was made for another layout)
    $O.B.C.<chunk id>       a file's chunks, in stream order exactly its bytes from offset 0;
                            each chunk's headers record its offset (`Asup-Offset`), BLAKE3
                            (`Asup-Blake3`) and the handle that wrote it (`Asup-Writer`)
    $O.B.C.<chunk id>-<i>   the chunks of a bundle's member i, the same way (a "lane" each)
    $O.B.C.asup-K-ckpt      the checkpoint (rolled up: last message wins)
    $O.B.M.<base64url NAME> the published object's meta, as `nats object` writes it (with
                            its `SHA-256=` digest), plus the BLAKE3 in its `headers`

`held()` reads the chunks' headers only (a headers-only consumer), never their bytes. A
chunk is appended expecting the subject's last sequence as this handle knows it, so two
writers never interleave silently. `prepare(cursor)` deletes the chunks past the cursor
(newest first: a crash leaves a shorter prefix) and rewrites a chunk the cursor cuts.
`publish()` writes the meta with `Nats-Expected-Last-Subject-Sequence: 0`: a meta there
already is CONFLICT_DETECTED, never replaced. A bundle publishes each member as the object
`NAME/PATH` first, then `NAME` itself, whose bytes are the bundle's manifest: that last
meta is the commit point `held().final` reads (the members are visible to `nats object ls`
a moment before it; a retry finds the members it published and goes on). What an earlier
transfer of another layout left stays on its own chunk ids, which nothing publishes.
The digests of the bytes are kept while this handle writes them in order; a handle that
did not write them all (a resume) reads the chunks back once, for `digest()` or
`publish()`, and checks each against its header. Leases are KV leases (`engine.kv_leases`).
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
from engine.kv_leases import KvLease, KvLeases, lease_key
from engine.layout import Layout, bundle_digest, manifest_bytes
from engine.liveness import describe_holder
from engine.target_store import UNKNOWN, Digest, Held
from events.clock import format_ts
from events.errors import AsupError, ErrorCode
from events.jetstream.client import ServerSaid
from events.observations import BundleFile

CHUNK_SIZE = 128 * 1024  # the object store's default chunk size
OFFSET, BLAKE3, WRITER, SIZE = "Asup-Offset", "Asup-Blake3", "Asup-Writer", "Asup-Size"


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


def checkpoint_subject(bucket: str, name: str) -> str:
    return f"$O.{bucket}.C.asup-{name_key(name)}-ckpt"


def meta_subject(bucket: str, name: str) -> str:
    return f"$O.{bucket}.M.{base64.urlsafe_b64encode(name.encode()).decode()}"


class ObjectHandle:
    """Artifact `name` of the bucket `js` streams (see the module docstring)."""

    def __init__(self, js: JsStream, bucket: str, leases: KvLeases, name: str, layout: Layout, kind: str, generations: Generations) -> None:
        self._js = js
        self._bucket = bucket
        self._leases = leases
        self._name = name
        self._layout = layout
        self._bundle = kind == "bundle"
        self._generations = generations
        key = name_key(name)
        self._lease_key = lease_key(bucket, name)
        self._chunk_prefix = f"asup-{key}-"
        self._record = f"$O.{bucket}.C.asup-{key}-tmp"
        self.checkpoint_subject = checkpoint_subject(bucket, name)
        self._meta = meta_subject(bucket, name)
        self._where = f"{js.what}/{name}"
        self._writer = secrets.token_hex(8)
        self._hashes: dict[str, Hashes] = {}  # per lane: the digests of its bytes, while this handle wrote them all
        self._tails: dict[str, tuple[int, int]] = {}  # per lane: (bytes, last seq) as this handle left them
        self._held_leases: list[KvLease] = []
        self.chunk_fetches = 0  # chunk payloads read back (a resume's digest, a cut chunk)

    # --- lease -------------------------------------------------------------------------

    def lease(self, holder: str) -> KvLease | None:
        lease = self._leases.take(self._lease_key, holder)
        if lease is not None:
            self._held_leases.append(lease)
        return lease

    def _check_leases(self) -> None:
        """A lease this handle took and lost (not renewed in time, taken by another) stops
        every write and the publish: another holder may be writing now."""
        for lease in self._held_leases:
            lease.check()

    def lease_holder(self) -> str:
        try:
            return describe_holder(self._leases.holder(self._lease_key) or b"")
        except AsupError:
            return describe_holder(b"")  # the lease is refused either way; who holds it is a courtesy

    # --- lanes: one chunk subject per member (the one of a file) ------------------------------

    def _lanes(self, cid: str) -> list[str]:
        """The chunk id of each member: the artifact's own for a file, `<id>-<index>` for a bundle's."""
        return [cid] if not self._bundle else [f"{cid}-{i}" for i in range(len(self._layout.files))]

    def _chunks(self, lane: str) -> str:
        return f"$O.{self._bucket}.C.{lane}"

    async def _scan(self, lane: str) -> list[Chunk]:
        return [_chunk(m) for m in await self._js.scan(self._chunks(lane), headers_only=True)]

    async def _chunk_id(self, *, create: bool) -> str | None:
        """The unpublished artifact's chunk id; a new one (when `create`) if there is none,
        the one recorded was published, or (a bundle) it was made for another layout: what
        that left stays on its subjects, where no publish takes it."""
        record = await self._js.last(self._record)
        info = _json(record.data) if record is not None else {}
        cid = info.get("chunks")
        if isinstance(cid, str) and cid.startswith(self._chunk_prefix) and info.get("layout") == self._layout_id():
            meta = await self._js.last(self._meta)
            if meta is None or _json(meta.data).get("nuid") not in (cid, f"{cid}-m"):
                return cid
        if not create:
            return None
        new = self._chunk_prefix + secrets.token_hex(10)
        body = json.dumps({"name": self._name, "chunks": new, "layout": self._layout_id()}).encode()
        try:
            await self._js.put(self._record, body, {EXPECT_SUBJECT_SEQ: str(record.seq if record else 0), ROLLUP: "sub"})
        except ServerSaid as exc:
            if not is_stale(exc):
                raise
            return await self._chunk_id(create=False)  # another client made one first: share it
        return new

    def _layout_id(self) -> str | None:
        return bundle_digest(self._layout.files) if self._bundle else None

    # --- reading -------------------------------------------------------------------------

    def epoch(self) -> str:
        return self._generations.token(self._name, self._js.run(self._stamp()))

    async def _stamp(self) -> str:
        cid = await self._chunk_id(create=False)
        if cid is None:
            return "-"
        lasts = []
        for lane in self._lanes(cid):
            last = await self._js.scan(self._chunks(lane), headers_only=True, last_only=True)
            if not last:  # or 2.9 lost the subject's last sequence (see `_put_chunk`): look at them all
                last = await self._js.scan(self._chunks(lane), headers_only=True)
            lasts.append(str(last[-1].seq if last else 0))
        return f"{cid}:{','.join(lasts)}"

    def held(self) -> Held:
        return self._js.run(self._held())

    async def _held(self) -> Held:
        cid = await self._chunk_id(create=False)
        return Held(await self._held_bytes(cid) if cid is not None else 0, await self._final())

    async def _held_bytes(self, cid: str, *, known: bool = False) -> int:
        """The contiguous bytes of the stream held: members complete in order, then the next
        one's start (`known`: a lane this handle wrote counted as it left it, unread)."""
        total = 0
        for lane, f in zip(self._lanes(cid), self._layout.files, strict=True):
            if known and lane in self._tails:
                size = min(f.size, self._tails[lane][0])
            else:
                size = min(f.size, sum(c.size for c in _contiguous(await self._scan(lane))))
            total += size
            if size < f.size:
                break
        return total

    async def _final(self) -> Digest | None:
        meta = await self._js.last(self._meta)
        if meta is None:
            return None
        info = _json(meta.data)
        headers = info.get("headers") or {}
        claimed, size = headers.get(BLAKE3), headers.get(SIZE) or [info.get("size") or 0]
        if info.get("deleted") or not isinstance(claimed, list) or not claimed:
            return UNKNOWN  # not an object asup published
        return str(claimed[0]), int(size[0])

    # --- writing -----------------------------------------------------------------------

    def prepare(self, cursor: int) -> None:
        self._check_leases()
        self._js.run(self._prepare(cursor), rounds=4 + 2 * len(self._layout.files))

    async def _prepare(self, cursor: int) -> None:
        cid = await self._chunk_id(create=True)
        assert cid is not None
        for lane, start, f in zip(self._lanes(cid), self._layout.starts, self._layout.files, strict=True):
            keep = cursor - start if self._bundle else cursor
            await self._prepare_lane(lane, max(0, min(f.size, keep)) if self._bundle else max(0, keep))

    async def _prepare_lane(self, lane: str, cursor: int) -> None:
        """Keep exactly the first `cursor` bytes of one lane."""
        chunks = await self._scan(lane)
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
        hashes = self._hashes.get(lane)
        if size == 0:
            self._hashes[lane] = Hashes()
        elif hashes is not None and (hashes.size, hashes.seq) != (size, last):
            del self._hashes[lane]
        self._tails[lane] = (size, last)
        if head:
            await self._append(lane, size, head)

    async def _read_cut(self, cut: Chunk, take: int) -> bytes:
        """The first `take` bytes of the chunk the cursor cuts (empty when it is damaged)."""
        msg = await self._js.fetch(cut.seq)
        self.chunk_fetches += 1
        if msg is None or "blake3:" + blake3(msg.data).hexdigest() != cut.blake3:
            return b""
        return msg.data[:take]

    def write(self, offset: int, data: bytes) -> tuple[int, str]:
        self._check_leases()
        size, stamp = self._js.run(self._write(offset, data), rounds=4 + 2 * len(self._layout.files))
        return size, self._generations.own_write(self._name, stamp)

    async def _write(self, offset: int, data: bytes) -> tuple[int, str]:
        cid = await self._chunk_id(create=True)
        assert cid is not None
        lanes = self._lanes(cid)
        if not self._bundle:
            await self._write_lane(cid, offset, data)
            size, last = self._tails[cid]
            return size, f"{cid}:{last}"
        done = 0
        for index, at, take in self._layout.pieces(offset, len(data)):
            await self._write_lane(lanes[index], at, data[done : done + take])
            done += take
        stamp = ",".join(str(self._tails[lane][1]) if lane in self._tails else "0" for lane in lanes)
        return await self._held_bytes(cid, known=True), f"{cid}:{stamp}"

    async def _write_lane(self, lane: str, offset: int, data: bytes) -> None:
        for _ in range(3):
            size, _last = await self._known_tail(lane)
            if offset > size:
                raise AsupError(ErrorCode.USAGE, f"bytes go in order: offset {offset} is past the {size} bytes held", file=self._where)
            if offset < size:
                await self._prepare_lane(lane, offset)
            try:
                await self._append(lane, offset, data)
                return
            except ServerSaid as exc:
                if not is_stale(exc):
                    raise
                self._tails.pop(lane, None)  # another writer moved the chunks: read where they are now
        raise AsupError(ErrorCode.CONFLICT_DETECTED, "another writer keeps changing the unpublished artifact", file=self._where)

    async def _known_tail(self, lane: str) -> tuple[int, int]:
        if lane not in self._tails:
            chunks = _contiguous(await self._scan(lane))
            self._tails[lane] = (sum(c.size for c in chunks), chunks[-1].seq if chunks else 0)
            if not chunks:
                self._hashes[lane] = Hashes()  # nothing held: what this handle writes is all there is
        return self._tails[lane]

    async def _append(self, lane: str, offset: int, data: bytes) -> None:
        """Chunks of `data` at `offset`, each expecting the last sequence this handle knows."""
        last = self._tails[lane][1]
        for at in range(0, len(data), CHUNK_SIZE):
            piece = data[at : at + CHUNK_SIZE]
            headers = {
                EXPECT_SUBJECT_SEQ: str(last),
                OFFSET: str(offset + at),
                BLAKE3: "blake3:" + blake3(piece).hexdigest(),
                WRITER: self._writer,
            }
            last = await self._put_chunk(lane, piece, headers, last)
            self._tails[lane] = (offset + at + len(piece), last)
            hashes = self._hashes.get(lane)
            if hashes is not None and hashes.size == offset + at:
                hashes.add(piece, last)
            else:
                self._hashes.pop(lane, None)

    async def _put_chunk(self, lane: str, piece: bytes, headers: dict[str, str], last: int) -> int:
        try:
            return await self._js.put(self._chunks(lane), piece, headers)
        except ServerSaid as exc:
            # 2.9's file store forgets a subject's last sequence once its newest message is
            # deleted (a prepare) and counts the subject empty until the next publish; when
            # the chunks are still as this handle left them, expecting 0 is that same state
            if not (is_stale(exc) and last and exc.description.endswith("sequence: 0")):
                raise
            chunks = await self._scan(lane)
            if not chunks or chunks[-1].seq != last:
                raise
        return await self._js.put(self._chunks(lane), piece, {**headers, EXPECT_SUBJECT_SEQ: "0"})

    # --- digest ------------------------------------------------------------------------

    def digest(self) -> Digest:
        return self._js.run(self._digest(), rounds=16 + 2 * len(self._layout.files))

    async def _digest(self) -> Digest:
        cid = await self._chunk_id(create=False)
        if cid is None:
            return ("blake3:" + blake3().hexdigest(), 0) if not self._bundle else UNKNOWN
        members = [await self._lane_hashes(lane) for lane in self._lanes(cid)]
        if not self._bundle:
            return "blake3:" + members[0].blake3.hexdigest(), members[0].size
        files = [BundleFile(f.path, h.size, "blake3:" + h.blake3.hexdigest()) for f, h in zip(self._layout.files, members, strict=True)]
        return bundle_digest(files), sum(h.size for h in members)

    async def _lane_hashes(self, lane: str) -> Hashes:
        """The digests of a lane's bytes: this handle's own, or its chunks read back once."""
        chunks = _contiguous(await self._scan(lane))
        last = chunks[-1].seq if chunks else 0
        size = sum(c.size for c in chunks)
        hashes = self._hashes.get(lane)
        if hashes is not None and (hashes.size, hashes.seq) == (size, last):
            return hashes
        hashes = Hashes()
        for msg in await self._js.scan(self._chunks(lane), headers_only=False):
            chunk = _chunk(msg)
            if chunk.offset != hashes.size:
                break
            self.chunk_fetches += 1
            if "blake3:" + blake3(msg.data).hexdigest() != chunk.blake3:
                why = f"chunk at offset {chunk.offset} (seq {chunk.seq}) does not match its recorded BLAKE3"
                raise AsupError(ErrorCode.CORRUPT_RECORD, why, file=self._where)
            hashes.add(msg.data, msg.seq)
        self._hashes[lane] = hashes
        return hashes

    # --- publish -----------------------------------------------------------------------

    def publish(self) -> None:
        self._check_leases()
        self._js.run(self._publish(), rounds=16 + 4 * len(self._layout.files))

    async def _publish(self) -> None:
        cid = await self._chunk_id(create=True)
        assert cid is not None
        if not self._bundle:
            hashes, chunks = await self._sealed(cid)
            await self._put_meta(self._meta, self._name, cid, hashes, chunks, None)
            return
        if await self._js.last(self._meta) is not None:
            raise self._conflict("an object is already published under this name")
        for lane, f in zip(self._lanes(cid), self._layout.files, strict=True):
            hashes, chunks = await self._sealed(lane)
            member = f"{self._name}/{f.path}"
            there = await self._js.last(meta_subject(self._bucket, member))
            if there is None or _json(there.data).get("nuid") != lane:  # a retry finds its own members
                await self._put_meta(meta_subject(self._bucket, member), member, lane, hashes, chunks, None)
        await self._put_manifest(cid)

    async def _sealed(self, lane: str) -> tuple[Hashes, int]:
        """A lane ready to be an object: only its contiguous chunks left (`nats object get`
        reads every message on the subject), their digests and count."""
        chunks = await self._scan(lane)
        keep = {c.seq for c in _contiguous(chunks)}
        for chunk in reversed(chunks):
            if chunk.seq not in keep:
                await self._js.delete(chunk.seq)
        return await self._lane_hashes(lane), len(keep)

    async def _put_manifest(self, cid: str) -> None:
        """The bundle's own object, published last: its manifest, naming every member."""
        lane = f"{cid}-m"
        await self._js.purge(self._chunks(lane))  # a retry's earlier manifest chunk
        data = manifest_bytes(self._layout.files)
        seq = await self._js.put(
            self._chunks(lane), data, {OFFSET: "0", BLAKE3: "blake3:" + blake3(data).hexdigest(), WRITER: self._writer}
        )
        hashes = Hashes()
        hashes.add(data, seq)
        total = (bundle_digest(self._layout.files), self._layout.size)
        await self._put_meta(self._meta, self._name, lane, hashes, 1, total)

    async def _put_meta(self, subject: str, name: str, lane: str, hashes: Hashes, chunks: int, bundle: Digest | None) -> None:
        headers = {BLAKE3: [bundle[0] if bundle else "blake3:" + hashes.blake3.hexdigest()]}
        if bundle is not None:
            headers[SIZE] = [str(bundle[1])]  # the stream's bytes, where `size` is the manifest's
        info = {
            "name": name,
            "bucket": self._bucket,
            "nuid": lane,
            "size": hashes.size,
            "chunks": chunks,
            "mtime": format_ts(time.time_ns()),
            "digest": "SHA-256=" + base64.urlsafe_b64encode(hashes.sha256.digest()).decode(),
            "headers": headers,
            "options": {"max_chunk_size": CHUNK_SIZE},
        }
        try:
            await self._js.put(subject, json.dumps(info).encode(), {EXPECT_SUBJECT_SEQ: "0", ROLLUP: "sub"})
        except ServerSaid as exc:
            if not is_stale(exc):
                raise
            raise self._conflict(f"an object is already published as {name!r}") from None

    def _conflict(self, why: str) -> AsupError:
        return AsupError(ErrorCode.CONFLICT_DETECTED, f"{why} in bucket {self._bucket} (never replaced)", file=self._where)

    # --- checkpoint, tidy, close ----------------------------------------------------------

    def checkpoint(self, data: bytes) -> str:
        self._js.run(self._js.put(self.checkpoint_subject, data, {ROLLUP: "sub"}))
        return self.checkpoint_subject

    def tidy(self, completed: bool) -> None:
        """Completed: the checkpoint and the record of the (now published) chunk id go.
        Failed before a byte was written: the empty record goes. Bytes a resume needs stay."""
        self._js.run(self._tidy(completed), rounds=4 + len(self._layout.files))

    async def _tidy(self, completed: bool) -> None:
        if completed:
            await self._js.purge(self.checkpoint_subject)
            if await self._chunk_id(create=False) is None:
                await self._js.purge(self._record)
        elif not self._bundle and self._layout.size and (await self._held()).size == 0:
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
