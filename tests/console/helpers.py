"""Logs for the console tests: the built-in scenarios (a transfer failing closed with every
reason code), a copy of it whose one recorded decision was edited (replay diverges there),
and a console served on a free loopback port in a thread."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec

from events.payloads import Transition
from events.scan import read_records
from events.vocabulary import Trigger
from runbook.console.model import LogModel
from runbook.console.security import Settings
from runbook.console.serve import make_server
from tests.cli import run_asup
from tests.projections.helpers import write_log

SEED = 7


def scenario_root(where: Path) -> Path:
    """`asup scenario run all` under `where/root`: its log is root/scenarios/scenarios.jsonl."""
    where.mkdir(parents=True, exist_ok=True)
    done = run_asup("scenario", "run", "all", "--root", "root", cwd=where)
    assert done.returncode == 0, done.stderr
    return where / "root"


def scenario_log(root: Path) -> Path:
    return root / "scenarios" / "scenarios.jsonl"


def diverging_copy(source: Path, target: Path, transfer: str = f"retry_exhausted-{SEED}") -> tuple[Path, int]:
    """`source`'s records written again, with `transfer`'s first recorded interruption saying
    attempt 5: today's engine decides attempt 1 there. Returns the log and that record's seq."""
    entries = []
    edited = 0
    for record in read_records(source):
        data = record.data
        if record.type == "log_created":
            continue
        if not edited and record.stream == transfer and isinstance(data, Transition) and data.trigger is Trigger.TRANSPORT_INTERRUPTED:
            data = msgspec.structs.replace(data, attempt=5)
            edited = record.seq
        entries.append((record.stream, data))
    assert edited, f"no interruption of {transfer} in {source}"
    return write_log(target, entries), edited


def tree(root: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under `root`: (size, mtime_ns, BLAKE2 of its bytes) by relative path."""
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            st = path.stat()
            out[str(path.relative_to(root))] = (st.st_size, st.st_mtime_ns, hashlib.blake2b(path.read_bytes()).hexdigest())
        else:
            out[str(path.relative_to(root))] = (-1, 0, "dir" if path.is_dir() else "other")
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def copy_root(root: Path, where: Path) -> Path:
    shutil.copytree(root, where, symlinks=True)
    return where


@contextlib.contextmanager
def served(model: LogModel, *, remote: bool = False, allowed: tuple[str, ...] = ()) -> Iterator[tuple[str, Settings]]:
    """The console app on a free loopback port, run by uvicorn in a thread, until the block ends."""
    port = free_port()
    settings = Settings.make("127.0.0.1", port, allowed, remote)
    server = make_server(model, settings)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(16)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.started, "the console did not start"
    try:
        yield f"http://127.0.0.1:{port}", settings
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def wait_ready(model: LogModel, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not model.ready and time.monotonic() < deadline:
        time.sleep(0.02)
    assert model.ready, "the cold start did not finish"


def environ_without_columns() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "NO_COLOR")}
