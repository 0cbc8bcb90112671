"""A target store on a JetStream object-store bucket: `ObjectStore("nats://HOST:PORT/BUCKET")`
(the URL's rules, `lease_ttl` among its options, are `engine.object_url`'s).

The bucket is the stream `OBJ_<BUCKET>` laid out as the NATS object store lays it out
(created so when absent): an artifact published here is an object the NATS object store
clients read, chunks and meta (with its `SHA-256=` digest) on the subjects they expect
(the tests read them back with nats-py's). What asup keeps beside an artifact (the
unpublished chunks, the checkpoint) sits on chunk subjects no meta names, so a listing of
the bucket's objects shows only published artifacts. Each artifact is an
`engine.object_target.ObjectHandle`; its lease is a KV lease (`engine.kv_leases`) on the
same servers, so two hosts writing one bucket exclude each other. A bundle is published
as one object per member under its name (`NAME/PATH`) and `NAME` itself, its manifest.
"""

from __future__ import annotations

import re
from typing import Any

from engine.directory_target import Generations
from engine.js_stream import JsStream
from engine.kv_leases import BUCKET, DEFAULT_TTL, KvLeases, LeaseProbe, lease_key
from engine.layout import Layout, check_name
from engine.object_target import ObjectHandle, checkpoint_subject
from engine.object_url import LEASE_TTL, parse_bucket
from events import strict_json
from events.errors import AsupError, ErrorCode

_CHECKPOINT = re.compile(r"\$O\.([A-Za-z0-9_-]+)\.C\.asup-[0-9a-f]{32}-ckpt")


def _bucket_config(bucket: str, replicas: int | None) -> dict[str, Any]:
    """The stream an object-store bucket is, as the NATS clients create it."""
    return {
        "subjects": [f"$O.{bucket}.C.>", f"$O.{bucket}.M.>"],
        "discard": "new",
        "allow_rollup_hdrs": True,
        "allow_direct": True,
        "storage": "file",
        "num_replicas": replicas or 1,
    }


class ObjectStore:
    """The artifacts of one object-store bucket (see the module docstring)."""

    def __init__(self, url: str, *, lease_ttl: float | None = None, lease_bucket: str = BUCKET) -> None:
        parsed = parse_bucket(url)
        self.url = parsed.url
        self.bucket = parsed.bucket
        self.name = parsed.text
        self._lease_ttl = lease_ttl if lease_ttl is not None else parsed.lease_ttl  # None: not asked for
        self._js = JsStream(self.url, f"OBJ_{self.bucket}", self.name)
        self._leases = KvLeases(self.url, ttl=self._lease_ttl or DEFAULT_TTL, bucket=lease_bucket)
        self._generations = Generations()  # shared by every handle: a resumed session goes on counting
        self._ready = False

    def _open(self) -> None:
        if not self._ready:
            self._js.run(self._js.conn.connect())
            self._js.run(self._js.ensure(_bucket_config(self.bucket, self.url.replicas)))
            self._ready = True
            if self._lease_ttl is not None:
                self._check_lease_ttl(self._lease_ttl)

    def _check_lease_ttl(self, asked: float) -> None:
        """A lease bucket keeps the TTL it was made with: a `lease_ttl` it does not have would
        be ignored silently, so it is refused before any lease is taken."""
        self._leases.open()
        if abs(self._leases.ttl - asked) > 1e-3:
            why = (
                f"{LEASE_TTL}={asked:g}, but the lease bucket {self._leases.bucket} keeps leases {self._leases.ttl:g} s "
                f"(a bucket keeps the TTL it was made with): give {LEASE_TTL}={self._leases.ttl:g} or leave it out"
            )
            raise AsupError(ErrorCode.USAGE, why, file=self.name)

    def open(self, name: str, layout: Layout, kind: str) -> ObjectHandle:
        if kind not in ("file", "bundle"):
            raise AsupError(ErrorCode.USAGE, f"artifact kind {kind!r} is neither 'file' nor 'bundle'")
        name = check_name(name)
        self._open()
        return ObjectHandle(self._js, self.bucket, self._leases, name, layout, kind, self._generations)

    def target_path(self, name: str) -> str:
        """The text a transfer records as its target path: `nats://HOST:PORT/BUCKET#NAME`,
        what `engine.liveness.check` asks the artifact's KV lease about."""
        return f"{self.name}#{check_name(name)}"

    def checkpoint_ref(self, name: str) -> str:
        """The ref artifact `name`'s handle saves its checkpoint under (what a transfer
        records as the checkpoint's name, and `load_checkpoint` takes)."""
        return checkpoint_subject(self.bucket, check_name(name))

    def saved_checkpoint(self, name: str) -> str | None:
        """`checkpoint_ref(name)` when a checkpoint is saved there, else None."""
        ref = self.checkpoint_ref(name)
        self._open()
        return ref if self._js.run(self._js.last(ref)) is not None else None

    def lease_probe(self, name: str) -> LeaseProbe:
        """What `engine.liveness.check_kv` asks about artifact `name`'s lease (held, or stale
        once it expired); asking creates nothing."""
        return self._leases.probe(lease_key(self.bucket, check_name(name)))

    def load_checkpoint(self, ref: str) -> bytes:
        """The checkpoint a handle of this bucket saved under `ref` (its subject)."""
        match = _CHECKPOINT.fullmatch(ref)
        if match is None or match.group(1) != self.bucket:
            raise AsupError(ErrorCode.USAGE, f"not a checkpoint of bucket {self.bucket}: {ref!r}", file=self.name)
        self._open()
        stored = self._js.run(self._js.last(ref))
        if stored is None:
            raise AsupError(ErrorCode.USAGE, "cannot read checkpoint: there is none", file=f"{self.name} {ref}")
        if len(stored.data) > strict_json.MAX_DOCUMENT:
            raise AsupError(
                ErrorCode.USAGE, f"invalid checkpoint: over the {strict_json.MAX_DOCUMENT}-byte limit", file=f"{self.name} {ref}"
            )
        return stored.data

    def close(self) -> None:
        if self._ready:
            self._leases.close()
            self._js.run(self._js.conn.close())
            self._ready = False
