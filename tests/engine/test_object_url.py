"""The object-store URLs (`engine.object_url`): the log URL's rules plus `lease_ttl` and
`#NAME`, checked before anything connects; what a target records reads back the same."""

from __future__ import annotations

import pytest

from engine.object_store import ObjectStore
from engine.object_url import parse_bucket, parse_target
from events.errors import AsupError, ErrorCode


def test_lease_ttl_is_the_object_stores_own_option_and_survives_the_recorded_path() -> None:
    bucket = parse_bucket("nats://127.0.0.1:4222,127.0.0.1:4223/B?lease_ttl=2&timeout=3")
    assert (bucket.bucket, bucket.lease_ttl, bucket.url.timeout) == ("B", 2.0, 3.0)
    assert bucket.text == "nats://127.0.0.1:4222,127.0.0.1:4223/B?timeout=3&lease_ttl=2"
    recorded = ObjectStore(bucket.text).target_path("dir/a.bin")  # no connection made
    assert recorded == "nats://127.0.0.1:4222,127.0.0.1:4223/B?timeout=3&lease_ttl=2#dir/a.bin"
    again, name = parse_target(recorded)
    assert (again, name) == (bucket, "dir/a.bin")
    assert parse_bucket("nats://127.0.0.1:4222/B").lease_ttl is None
    assert parse_bucket("nats://127.0.0.1:4222/B?lease_ttl=90").text == "nats://127.0.0.1:4222/B?lease_ttl=90"


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("nats://127.0.0.1:4222/B", "not an object-store target: write nats://HOST:PORT/BUCKET#NAME"),
        ("nats://127.0.0.1:4222/B#", "not an object-store target: write nats://HOST:PORT/BUCKET#NAME"),
        ("nats://127.0.0.1:4222/B?lease_ttl=0.5#a", "not an object store URL: lease_ttl='0.5': a number of seconds from 1 to 3600"),
        ("nats://127.0.0.1:4222/B?lease_ttl=nan#a", "not an object store URL: lease_ttl='nan': a number of seconds from 1 to 3600"),
        ("nats://127.0.0.1:4222/B?x=1#a", "not an object store URL: unknown option 'x': the options are replicas, timeout and lease_ttl"),
        ("nats://127.0.0.1:4222/#a", "not an object store URL: no bucket name: write nats://HOST:PORT/BUCKET"),
        ("nats://127.0.0.1:4222/B#a//b", "not an object-store target: artifact path 'a//b' must be relative"),
    ],
)
def test_a_malformed_target_is_a_usage_error_naming_it(text: str, why: str) -> None:
    with pytest.raises(AsupError) as bad:
        parse_target(text)
    assert bad.value.code is ErrorCode.USAGE and bad.value.file == text and bad.value.message.startswith(why), bad.value.message
