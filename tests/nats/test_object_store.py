"""The object-store target (`engine.object_store`) on real servers (2.9 and 2.15): the
target store contract, a resume after the writer is SIGKILLed mid-put, a publish race, and
an artifact the NATS object store client reads back."""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import nats
import pytest
from blake3 import blake3

from engine.layout import bundle_digest, manifest_bytes
from engine.liveness import Liveness, check, check_kv, holder_for
from engine.object_store import ObjectStore
from engine.target_store import UNKNOWN, Held
from engine.testing.target_store_contract import (
    CHUNK,
    DATA,
    MEMBERS,
    NAME,
    TargetStoreContract,
    bundle_layout,
    digest_of,
    file_layout,
    stream,
)
from events.errors import AsupError, ErrorCode
from events.jetstream.bridge import bridge
from tests.nats import object_writer
from tests.reliability.crashloop import report

ROOT = Path(__file__).resolve().parents[2]


def bucket_for(tmp_path: Path) -> str:
    """One bucket per test (two clients of one `tmp_path` share it)."""
    return "t" + blake3(str(tmp_path).encode()).hexdigest()[:20]


class TestObjectStore(TargetStoreContract):
    @pytest.fixture(autouse=True)
    def _server(self, nats_server: Any) -> None:
        self.server_url = nats_server.url

    def make_store(self, tmp_path: Path) -> ObjectStore:
        return ObjectStore(f"{self.server_url}/{bucket_for(tmp_path)}")


@pytest.fixture
def url(nats_server: Any, tmp_path: Path) -> str:
    return f"{nats_server.url}/{bucket_for(tmp_path)}"


def read_object(url: str, name: str) -> bytes:
    """The object as the nats-py object store client reads it (it checks the SHA-256 digest)."""
    server, bucket = url.rsplit("/", 1)

    async def get() -> bytes:
        nc = await nats.connect(server)
        try:
            result = await (await nc.jetstream().object_store(bucket)).get(name)
            return bytes(result.data or b"")
        finally:
            await nc.close()

    return bridge().call(get(), 30)


def list_objects(url: str) -> list[str]:
    server, bucket = url.rsplit("/", 1)

    async def names() -> list[str]:
        nc = await nats.connect(server)
        try:
            return sorted(info.name for info in await (await nc.jetstream().object_store(bucket)).list())
        finally:
            await nc.close()

    return bridge().call(names(), 30)


def test_a_published_artifact_is_an_object_the_nats_client_reads(url: str) -> None:
    """The meta and chunks are the object store's own: nats-py's `get` reads the bytes and their SHA-256 matches."""
    data = DATA * 40  # several 128 KiB chunks
    handle = ObjectStore(url).open("dir/a.bin", file_layout(data), "file")
    handle.prepare(0)
    for offset in range(0, len(data), 50_000):
        handle.write(offset, data[offset : offset + 50_000])
    handle.checkpoint(b"{}")
    handle.publish()
    assert read_object(url, "dir/a.bin") == data
    assert list_objects(url) == ["dir/a.bin"]  # the checkpoint and the chunk-id record are no objects
    assert handle.chunk_fetches == 0
    handle.close()


def test_a_published_bundle_is_its_members_as_objects_and_its_manifest(url: str) -> None:
    """Each member is an object `NAME/PATH` the nats client reads; `NAME` itself is the manifest, published last."""
    layout = bundle_layout(MEMBERS)
    data = stream(layout, MEMBERS)
    handle = ObjectStore(url).open("b.out", layout, "bundle")
    handle.prepare(0)
    handle.write(0, data)
    handle.publish()
    for path, member in MEMBERS.items():
        assert read_object(url, f"b.out/{path}") == member
    assert read_object(url, "b.out") == manifest_bytes(layout.files)
    assert handle.held().final == (bundle_digest(layout.files), len(data))
    handle.close()


def test_a_cursor_inside_a_chunk_rewrites_that_chunk(url: str) -> None:
    """prepare(cursor) in the middle of a chunk reads that one chunk back and rewrites its head; the rest follows it."""
    handle = ObjectStore(url).open(NAME, file_layout(DATA), "file")
    handle.prepare(0)
    for offset in range(0, len(DATA), CHUNK):
        handle.write(offset, DATA[offset : offset + CHUNK])
    again = ObjectStore(url).open(NAME, file_layout(DATA), "file")
    again.prepare(CHUNK + 5)
    assert again.held().size == CHUNK + 5 and again.chunk_fetches == 1
    again.write(CHUNK + 5, DATA[CHUNK + 5 :])
    again.publish()
    assert read_object(url, NAME) == DATA
    assert again.held().final == (digest_of(DATA), len(DATA))
    handle.close()
    again.close()


def test_a_resume_after_a_sigkill_mid_put_reads_no_committed_chunk_back(url: str) -> None:
    """A writer killed mid-put leaves chunks past its checkpoint: a new process holds them,
    cuts back to the checkpoint and finishes without reading a chunk back until the digest,
    which reads each committed chunk once; the published object is the whole payload."""
    size = 200 * object_writer.CHUNK + 123
    argv = [sys.executable, "-m", "tests.nats.object_writer", url, NAME, str(size)]
    with subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            for _ in range(12):  # a few checkpoints, so the kill lands well into the put
                ref = proc.stdout.readline().split()[1]
            time.sleep(0.03)  # and a few chunks past the last one
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
    store = ObjectStore(url)
    cursor = json.loads(store.load_checkpoint(ref))["committed_cursor"]
    handle = store.open(NAME, object_writer.layout(size), "file")
    held = handle.held().size
    assert 0 < cursor <= held < size
    handle.prepare(cursor)
    assert handle.held().size == cursor
    data = object_writer.payload(size)
    for offset in range(cursor, size, object_writer.CHUNK):
        handle.write(offset, data[offset : offset + object_writer.CHUNK])
    assert handle.chunk_fetches == 0  # held, prepare and the writes read no committed chunk back
    assert handle.digest() == (digest_of(data), size)
    read_back = handle.chunk_fetches
    handle.publish()
    assert handle.chunk_fetches == read_back == size // object_writer.CHUNK + 1  # every chunk read once, for the digest
    assert handle.held().final == (digest_of(data), size)
    assert read_object(url, NAME) == data
    past = (held - cursor) // object_writer.CHUNK
    report(
        "object store resume after a SIGKILLed writer",
        Counter({"kills": 1, "chunks cut past the checkpoint": past, "fetches before the digest": 0, "fetches for it": read_back}),
    )
    handle.close()


def test_two_clients_racing_to_publish_one_name_one_wins(url: str) -> None:
    """Two clients (two hosts finishing one transfer) publish the same name at once: one
    publishes, the other is CONFLICT_DETECTED, and the object is whole."""
    first = ObjectStore(url).open(NAME, file_layout(DATA), "file")
    first.prepare(0)
    first.write(0, DATA)
    second = ObjectStore(url).open(NAME, file_layout(DATA), "file")
    assert second.held().size == len(DATA)
    start = threading.Barrier(2)
    outcome: list[str] = []

    def publish(handle: Any) -> None:
        start.wait()
        try:
            handle.publish()
            outcome.append("published")
        except AsupError as exc:
            outcome.append(str(exc.code))

    threads = [threading.Thread(target=publish, args=(h,)) for h in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcome) == ["conflict_detected", "published"]
    assert first.held().final == second.held().final == (digest_of(DATA), len(DATA))
    assert read_object(url, NAME) == DATA
    first.close()
    second.close()


def test_a_handles_lease_is_held_then_stale_once_released(url: str) -> None:
    """`check_kv` on the store's probe: held while a handle holds the artifact's lease, stale after its release."""
    store = ObjectStore(url)
    handle = store.open(NAME, file_layout(DATA), "file")
    lease = handle.lease(holder_for("t-1", 0))
    assert lease is not None
    assert check_kv(ObjectStore(url).lease_probe(NAME)).liveness is Liveness.HELD
    assert check(store.target_path(NAME)).liveness is Liveness.HELD  # what status asks of a recorded target path
    lease.release()
    assert check_kv(store.lease_probe(NAME)).liveness is Liveness.STALE
    assert check(store.target_path(NAME)).liveness is Liveness.STALE
    assert check(url).liveness is Liveness.UNKNOWN  # a bucket, no artifact named
    handle.close()


def test_an_unreachable_server_is_one_error_naming_the_url() -> None:
    """No server at the URL: `log_unreachable` naming it, within about its timeout, no traceback."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"nats://127.0.0.1:{port}/nobody?timeout=1"
    with pytest.raises(AsupError) as failed:
        ObjectStore(url).open(NAME, file_layout(DATA), "file")
    assert failed.value.code is ErrorCode.LOG_UNREACHABLE and url in str(failed.value)


def test_a_bad_url_is_a_usage_error_naming_the_part() -> None:
    """The URL is checked by the log URL's rules before any connection: a usage error."""
    with pytest.raises(AsupError) as bad:
        ObjectStore("nats://127.0.0.1:4/bad.bucket")
    assert bad.value.code is ErrorCode.USAGE and "not an object store URL" in str(bad.value)


def test_tidy_after_completion_leaves_only_the_object(url: str) -> None:
    """tidy(True) after publish removes the checkpoint and the record of the chunk id; the object stays."""
    store = ObjectStore(url)
    handle = store.open(NAME, file_layout(DATA), "file")
    handle.prepare(0)
    handle.write(0, DATA)
    ref = handle.checkpoint(b'{"committed_cursor":1}')
    handle.publish()
    handle.tidy(True)
    with pytest.raises(AsupError) as gone:
        store.load_checkpoint(ref)
    assert gone.value.code is ErrorCode.USAGE
    later = ObjectStore(url).open(NAME, file_layout(DATA), "file")
    assert later.held() == Held(0, (digest_of(DATA), len(DATA)))
    assert read_object(url, NAME) == DATA
    handle.close()
    later.close()


def test_an_object_another_client_put_is_not_ours_and_never_replaced(url: str) -> None:
    """An object `nats object put` wrote (no BLAKE3 of ours) reads as `blake3:-`; publishing over it is a conflict."""
    server, bucket = url.rsplit("/", 1)

    async def put() -> None:
        nc = await nats.connect(server)
        try:
            await (await nc.jetstream().object_store(bucket)).put(NAME, b"theirs")
        finally:
            await nc.close()

    ObjectStore(url).open(NAME, file_layout(DATA), "file").close()  # makes the bucket
    bridge().call(put(), 30)
    handle = ObjectStore(url).open(NAME, file_layout(DATA), "file")
    handle.prepare(0)
    handle.write(0, DATA)
    assert handle.held().final == UNKNOWN
    with pytest.raises(AsupError) as conflict:
        handle.publish()
    assert conflict.value.code is ErrorCode.CONFLICT_DETECTED
    assert read_object(url, NAME) == b"theirs"
    handle.close()


def test_a_handle_whose_lease_was_lost_writes_nothing(url: str) -> None:
    """Once another hand takes the key of a handle's lease, its next renewal is refused and the handle's writes and publish fail closed."""
    store = ObjectStore(url, lease_ttl=1.5, lease_bucket="asup-leases-t" + secrets.token_hex(4))
    handle = store.open(NAME, file_layout(DATA), "file")
    handle.prepare(0)
    lease = handle.lease(holder_for("t-1", 0))
    assert lease is not None
    handle.write(0, DATA[:CHUNK])
    leases = store._leases
    leases._js.run(leases._js.put(f"$KV.{leases.bucket}.{lease.key}", b"theirs", {}))
    deadline = time.monotonic() + 3
    while lease.lost is None and time.monotonic() < deadline:
        time.sleep(0.05)
    for call in (lambda: handle.write(CHUNK, DATA[CHUNK : 2 * CHUNK]), handle.publish):
        with pytest.raises(AsupError) as stopped:
            call()
        assert stopped.value.code is ErrorCode.CONFLICT_DETECTED and "was lost" in str(stopped.value)
    assert handle.held().size == CHUNK and handle.held().final is None
    handle.close()
