"""Leases in a JetStream KV bucket (`engine.kv_leases`) on real servers (2.9 and 2.15), with
a short TTL: exclusive while held, kept past the TTL by the heartbeat, lost when another
takes the key, free once released, and taken by another process about a TTL after its
holder is SIGKILLed. `engine.liveness.check_kv` calls the lease held, then stale."""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nats
import pytest

from engine.kv_leases import KvLeases
from engine.liveness import Liveness, check_kv, holder_for
from events.errors import AsupError
from events.jetstream.bridge import bridge
from events.jetstream.url import parse
from tests.reliability.crashloop import report

TTL = 2.0
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bucket() -> str:
    """A bucket of its own per test: a bucket keeps the TTL it was made with."""
    return "asup-leases-t" + secrets.token_hex(4)


@pytest.fixture
def leases(nats_server: Any, bucket: str) -> Iterator[KvLeases]:
    kv = KvLeases(parse(f"{nats_server.url}/leases"), ttl=TTL, bucket=bucket)
    yield kv
    kv.close()


def another(nats_server: Any, bucket: str) -> KvLeases:
    return KvLeases(parse(f"{nats_server.url}/leases"), ttl=TTL, bucket=bucket)


def nats_kv_get(server: str, bucket: str, key: str) -> bytes:
    async def get() -> bytes:
        nc = await nats.connect(server)
        try:
            entry = await (await nc.jetstream().key_value(bucket)).get(key)
            return bytes(entry.value or b"")
        finally:
            await nc.close()

    return bridge().call(get(), 30)


def test_a_lease_is_exclusive_while_held_and_names_its_holder(leases: KvLeases, nats_server: Any, bucket: str) -> None:
    """A second client gets None while the first holds the key; the value is the holder JSON."""
    holder = holder_for("t-1", 1_780_000_000_000_000_000)
    lease = leases.take("k", holder)
    assert lease is not None
    other = another(nats_server, bucket)
    assert other.take("k", holder_for("t-2", 0)) is None
    assert other.holder("k") == holder.encode()
    assert nats_kv_get(nats_server.url, bucket, "k") == holder.encode()  # a KV bucket the NATS clients read
    assert check_kv(other.probe("k")).liveness is Liveness.HELD
    lease.release()
    other.close()


def test_the_heartbeat_keeps_a_lease_past_its_ttl(leases: KvLeases, nats_server: Any, bucket: str) -> None:
    """Renewed every TTL/3, a lease outlives its TTL several times over and stays exclusive."""
    lease = leases.take("k", holder_for("t-1", 0))
    assert lease is not None
    other = another(nats_server, bucket)
    time.sleep(2.5 * TTL)
    assert other.take("k", holder_for("t-2", 0)) is None
    assert lease.lost is None and lease.renewals >= 5
    lease.release()
    other.close()


def test_a_released_lease_is_free(leases: KvLeases, nats_server: Any, bucket: str) -> None:
    """Release deletes the entry: the next taker gets it at once, and the probe calls it stale."""
    lease = leases.take("k", holder_for("t-1", 0))
    assert lease is not None
    lease.release()
    other = another(nats_server, bucket)
    assert check_kv(other.probe("k")).liveness is Liveness.STALE
    again = other.take("k", holder_for("t-2", 0))
    assert again is not None
    again.release()
    other.close()


def test_a_lease_taken_from_under_its_holder_is_reported_lost(leases: KvLeases) -> None:
    """When the key is written by another hand, the next renewal is refused and the lease says it is lost."""
    lease = leases.take("k", holder_for("t-1", 0))
    assert lease is not None
    leases._js.run(leases._js.put(f"$KV.{leases.bucket}.k", b"theirs", {}))
    deadline = time.monotonic() + TTL
    while lease.lost is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lease.lost is not None and "another holder" in lease.lost
    with pytest.raises(Exception, match="was lost"):
        lease.check()
    lease.release()  # does not delete what is now another's
    assert leases.holder("k") == b"theirs"


def test_a_sigkilled_holders_lease_expires_and_another_process_takes_it(leases: KvLeases, nats_server: Any, bucket: str) -> None:
    """A holder killed with SIGKILL stops renewing: its lease goes stale and is taken about a TTL later."""
    argv = [sys.executable, "-m", "tests.nats.lease_holder", f"{nats_server.url}/leases", bucket, "k", str(TTL)]
    with subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
            time.sleep(TTL)  # it renews past one TTL
            assert leases.take("k", holder_for("t-2", 0)) is None
            os.kill(proc.pid, signal.SIGKILL)
            killed = time.monotonic()
        finally:
            proc.kill()
    assert check_kv(leases.probe("k")).liveness is Liveness.HELD
    tries = 0
    while (lease := leases.take("k", holder_for("t-2", 0))) is None:
        tries += 1
        assert time.monotonic() - killed < TTL + 5, "the dead holder's lease never expired"
        time.sleep(0.05)
    waited = time.monotonic() - killed
    assert TTL * 2 / 3 - 0.2 <= waited <= TTL + 3
    report(
        "kv lease after a SIGKILLed holder",
        Counter({"taken": 1, "refused tries": tries, f"ms waited (TTL {TTL:g} s)": round(waited * 1000)}),
    )
    lease.release()


def test_asking_about_a_lease_creates_nothing(nats_server: Any, bucket: str) -> None:
    """A probe of a bucket that does not exist says stale and leaves no bucket behind."""
    reader = KvLeases(parse(f"{nats_server.url}/leases"), ttl=TTL, bucket=bucket)
    assert check_kv(reader.probe("k")).liveness is Liveness.STALE
    with pytest.raises(AsupError, match="stream not found"):
        reader._js.run(reader._js.conn.api(f"STREAM.INFO.KV_{bucket}"))
    reader.close()
