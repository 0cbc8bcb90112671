"""The URLs of an object-store target, parsed before anything connects:

    nats://HOST:PORT[,HOST:PORT...]/BUCKET[?replicas=N&timeout=S&lease_ttl=S]   a bucket
    nats://HOST:PORT/BUCKET[?...]#NAME                                           an artifact of it

The servers, bucket, `replicas` and `timeout` follow the log URL's rules
(`events.jetstream.url`); `lease_ttl` is the object store's own: the seconds a dead
holder's lease outlives it, given to the lease bucket when asup creates it. `#NAME` is the
artifact's name in the bucket, what `ObjectStore.target_path` records. Neither module that
uses this (`engine.object_store`, `engine.kv_leases`) imports the other through it.
"""

from __future__ import annotations

import msgspec

from engine.layout import check_name
from events.errors import AsupError, ErrorCode
from events.jetstream.url import LogUrl, parse

LEASE_TTL = "lease_ttl"
MAX_LEASE_TTL = 3600.0  # seconds
MIN_LEASE_TTL = 1.0  # the heartbeat renews every TTL/3: below a second it would be most of the traffic


class BucketUrl(msgspec.Struct, frozen=True):
    url: LogUrl  # the servers, options and the bucket's name (as `stream`)
    lease_ttl: float | None = None  # None: not stated (the lease bucket's own, or the default for a new one)

    @property
    def bucket(self) -> str:
        return self.url.stream

    @property
    def text(self) -> str:
        """The URL as an operator writes it, `lease_ttl` included (a resume reopens with it)."""
        if self.lease_ttl is None:
            return self.url.text
        joiner = "&" if "?" in self.url.text else "?"
        return f"{self.url.text}{joiner}{LEASE_TTL}={self.lease_ttl:g}"


def parse_bucket(text: str) -> BucketUrl:
    """`nats://HOST:PORT[,HOST:PORT]/BUCKET[?replicas=N&timeout=S&lease_ttl=S]`; a usage
    error naming the wrong part otherwise."""
    head, _, query = text.partition("?")
    kept, lease_ttl = [], None
    for part in filter(None, query.split("&")):
        key, _, value = part.partition("=")
        if key == LEASE_TTL:
            lease_ttl = _lease_ttl(text, value)
        else:
            kept.append(part)
    try:
        url = parse(head + ("?" + "&".join(kept) if kept else ""))
    except AsupError as exc:
        raise AsupError(ErrorCode.USAGE, _as_bucket(exc.message), file=text) from None
    return BucketUrl(url, lease_ttl)


def parse_target(text: str) -> tuple[BucketUrl, str]:
    """`nats://…/BUCKET[?…]#NAME`: the bucket and the artifact's name; a usage error otherwise."""
    url_text, hash_sign, name = text.partition("#")
    if not hash_sign or not name:
        raise AsupError(ErrorCode.USAGE, "not an object-store target: write nats://HOST:PORT/BUCKET#NAME", file=text)
    try:
        bucket = parse_bucket(url_text)
    except AsupError as exc:
        raise AsupError(ErrorCode.USAGE, exc.message, file=text) from None
    try:
        return bucket, check_name(name)
    except AsupError as exc:
        raise AsupError(ErrorCode.USAGE, f"not an object-store target: {exc.message}", file=text) from None


def _lease_ttl(text: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        seconds = 0.0
    if not MIN_LEASE_TTL <= seconds <= MAX_LEASE_TTL:
        why = f"{LEASE_TTL}={value!r}: a number of seconds from {MIN_LEASE_TTL:g} to {MAX_LEASE_TTL:g}"
        raise AsupError(ErrorCode.USAGE, f"not an object store URL: {why}", file=text)
    return seconds


def _as_bucket(message: str) -> str:
    """The log URL parser's words for a bucket URL."""
    return (
        message.replace("not a log URL", "not an object store URL")
        .replace("stream name", "bucket name")
        .replace("/STREAM", "/BUCKET")
        .replace("the options are replicas and timeout", f"the options are replicas, timeout and {LEASE_TTL}")
    )
