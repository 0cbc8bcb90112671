"""Ctrl-C and SIGTERM suspend transfers at a chunk boundary, through real processes and real
signals: exit 130, one line naming the `asup resume` command, a valid log, `syncing
(suspended)` in status, and the printed command completes the transfer byte for byte."""

from __future__ import annotations

import fcntl
import json
import os
import random
import shlex
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3

from tests.cli import asup_argv
from tests.reliability.crashloop import report

CHUNK = 65536
CHUNKS = 60
CLASS = ["--artifact-class", "conformance_fixture_bundle", "--mode", "hardened"]
STOP_BOUND = 10.0  # seconds from the signal to the exit: one chunk is about 50 ms here


def _source(path: Path, chunks: int = CHUNKS, seed: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.Random(seed).randbytes(chunks * CHUNK))
    return path


def _b3(path: Path) -> str:
    return blake3(path.read_bytes()).hexdigest()


def _records(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    lines = log.read_bytes().split(b"\n")
    return [json.loads(line) for line in lines[:-1]]  # the last piece may be a line still being written


def _wait_for(log: Path, what: str, process: subprocess.Popen[str], count: int = 1) -> None:
    """Poll the log until `count` records of type `what` are there (the process still running)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if sum(r["type"] == what for r in _records(log)) >= count:
            return
        assert process.poll() is None, f"asup ended before {count} {what} records"
        time.sleep(0.005)
    pytest.fail(f"no {count} {what} records within 60 s")


def _sync(source: Path, target: Path, log: Path, *extra: str, chunk: int = CHUNK) -> subprocess.Popen[str]:
    slow = ",".join(f"slow@{i}" for i in range(CHUNKS))  # about 50 ms a chunk: three seconds in all
    argv = asup_argv("sync", str(source), str(target), *CLASS, "--chunk-size", str(chunk), "--log", str(log), "--fault", slow, *extra)
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _stop(process: subprocess.Popen[str], signum: int) -> tuple[str, str]:
    process.send_signal(signum)
    started = time.monotonic()
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, out + err
    assert time.monotonic() - started < STOP_BOUND
    return out, err


def _asup(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(asup_argv(*args), capture_output=True, text=True, timeout=120, check=False)


def _run_printed(command: str) -> subprocess.CompletedProcess[str]:
    """Run a command asup printed for an operator to paste into a shell."""
    words = shlex.split(command)
    assert words[:2] == ["asup", "resume"], command
    return _asup(*words[1:])


def _verified(log: Path) -> None:
    verify = _asup("log", "verify", str(log))
    assert verify.returncode == 0, verify.stdout + verify.stderr


def _status_row(log: Path, transfer_id: str) -> str:
    status = _asup("status", str(log), "--transfer", transfer_id)
    rows = [row for row in status.stdout.splitlines() if row.startswith(transfer_id)]
    assert len(rows) == 1, status.stdout + status.stderr
    return rows[0]


@contextmanager
def _writer_lock(log: Path) -> Iterator[None]:
    """Hold the log's writer lock (a flock on the log file), so asup's next append waits."""
    fd = os.open(log, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@pytest.mark.parametrize(("signum", "as_json"), [(signal.SIGINT, False), (signal.SIGTERM, True)], ids=["SIGINT", "SIGTERM-json"])
def test_a_signal_suspends_sync_and_the_printed_resume_command_completes_it(tmp_path: Path, signum: int, as_json: bool) -> None:
    """Mid-transfer: exit 130 within the bound, one stderr line with the exact quoted resume command,
    the log verifies, status says syncing (suspended); the command then completes the target byte for byte."""
    source = _source(tmp_path / "src" / "a.bin")
    target, log = tmp_path / "dst" / "a.bin", tmp_path / "my logs" / "log.jsonl"  # a space: the command must quote it
    process = _sync(source, target, log, "--transfer-id", "t-sig", *(["--json"] if as_json else []))
    _wait_for(log, "checkpoint_written", process, count=3)
    out, err = _stop(process, signum)
    name = signal.Signals(signum).name
    lines = err.splitlines()
    assert len(lines) == 1, err
    prefix = f"asup: interrupted ({name}): t-sig suspended at "
    assert lines[0].startswith(prefix), err
    at, resume = lines[0][len(prefix) :].split(" bytes; resume: ")
    done, total = (int(n) for n in at.split("/"))
    assert 0 < done < total == CHUNKS * CHUNK and done % CHUNK == 0
    assert resume == f"asup resume t-sig --log '{log}'"
    if as_json:
        result = json.loads(out)
        assert (result["state"], result["suspended"], result["resume_command"]) == ("syncing", True, resume)
    assert not target.exists()
    _verified(log)
    assert "syncing (suspended)" in _status_row(log, "t-sig")
    status = json.loads(_asup("status", str(log), "--json").stdout)
    row = status["transfers"]["transfers"][0]
    assert (row["suspended"], row["checkpoint"], row["committed_cursor"]) == (True, ".a.bin.asup-ckpt.json", done)
    resumed = _run_printed(resume)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert resumed.stdout.startswith("completed t-sig")
    assert _b3(target) == _b3(source)
    _verified(log)
    assert "suspended" not in _status_row(log, "t-sig")
    report(f"asup sync stopped by {name}", Counter({"suspended at a chunk boundary": 1, "resumed byte-identical": 1}))


def test_a_signal_before_the_first_checkpoint_suspends_at_zero_and_resume_reruns_it(tmp_path: Path) -> None:
    """SIGTERM after the intent is recorded but before the first chunk: suspended at 0 with no checkpoint; asup resume runs it from 0."""
    big = 4 << 20
    source = tmp_path / "src" / "a.bin"
    source.parent.mkdir()
    source.write_bytes(random.Random(3).randbytes(12 * big))  # re-hashed before the first chunk: tens of ms at least
    target, log = tmp_path / "dst" / "a.bin", tmp_path / "log.jsonl"
    process = _sync(source, target, log, "--transfer-id", "t-zero", chunk=big)
    _wait_for(log, "intent_recorded", process)
    with _writer_lock(log):  # taken while the source is re-hashed: the transfer waits before its first chunk
        process.send_signal(signal.SIGTERM)
        time.sleep(0.2)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, out + err
    assert err == f"asup: interrupted (SIGTERM): t-zero suspended at 0/{12 * big} bytes; resume: asup resume t-zero --log {log}\n"
    _verified(log)
    assert "syncing (suspended)" in _status_row(log, "t-zero")
    assert json.loads(_asup("status", str(log), "--json").stdout)["transfers"]["transfers"][0]["checkpoint"] == ""
    resumed = _run_printed(err.split("resume: ")[1].strip())
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert _b3(target) == _b3(source)
    intents = [r for r in _records(log) if r["type"] == "intent_recorded"]
    assert [r["data"]["resume"] for r in intents] == [False, False]  # no checkpoint: a fresh session with the same intent
    report("asup sync stopped before its first checkpoint", Counter({"suspended at 0": 1, "rerun byte-identical": 1}))


def test_a_second_signal_stops_at_once_and_the_log_still_verifies(tmp_path: Path) -> None:
    """SIGINT, then SIGINT again while the stop waits on the log: exit 130 at once, nothing suspended; resume completes."""
    source = _source(tmp_path / "src" / "a.bin")
    target, log = tmp_path / "dst" / "a.bin", tmp_path / "log.jsonl"
    process = _sync(source, target, log, "--transfer-id", "t-twice")
    _wait_for(log, "checkpoint_written", process, count=2)
    with _writer_lock(log):  # the suspension cannot be recorded while the lock is held: only the second signal ends it
        process.send_signal(signal.SIGINT)
        time.sleep(0.3)
        assert process.poll() is None
        _, err = _stop(process, signal.SIGINT)
    assert err == ""  # no traceback from the event loop shutting down, no half-written message
    _verified(log)
    assert not any(r["type"] == "suspended" for r in _records(log))
    assert "syncing" in _status_row(log, "t-twice")
    resumed = _asup("resume", "t-twice", "--log", str(log))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert _b3(target) == _b3(source)
    report("asup sync stopped by a second SIGINT", Counter({"stopped at once": 1, "resumed byte-identical": 1}))


def test_sync_batch_sigterm_suspends_every_running_transfer_and_lists_the_queued(tmp_path: Path) -> None:
    """Three running, one queued: SIGTERM suspends the three (each resumable to its bytes), lists the fourth as not started."""
    sources = [_source(tmp_path / "src" / f"b{i}.bin", chunks=400, seed=i) for i in range(4)]
    batch, log = tmp_path / "batch.jsonl", tmp_path / "log.jsonl"
    batch.write_text(
        "".join(
            json.dumps(
                {"source": str(s), "target": str(tmp_path / "dst" / s.name), "chunk_size": CHUNK, "seed": i, "transfer_id": f"t-b{i}"}
            )
            + "\n"
            for i, s in enumerate(sources)
        )
    )
    argv = asup_argv("sync-batch", str(batch), *CLASS, "--log", str(log), "--concurrency", "3")
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(log, "checkpoint_written", process, count=9)
    out, err = _stop(process, signal.SIGTERM)
    stopped = "3 transfers suspended, 1 not started (rerun their lines); resume each with its asup resume command"
    assert err == f"asup: interrupted (SIGTERM): {stopped}\n"
    for i in range(3):
        assert any(row.startswith(f"t-b{i}") and "syncing (suspended)" in row for row in out.splitlines()), out
        assert f"  resume: asup resume t-b{i} --log {log}" in out.splitlines()
    assert any(row.startswith("t-b3") and "not started" in row for row in out.splitlines()), out
    _verified(log)
    for i in range(3):
        resumed = _asup("resume", f"t-b{i}", "--log", str(log))
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert _b3(tmp_path / "dst" / f"b{i}.bin") == _b3(sources[i])
    unknown = _asup("resume", "t-b3", "--log", str(log))
    assert unknown.returncode == 2 and str(log) in unknown.stderr
    report("asup sync-batch stopped by SIGTERM", Counter({"suspended": 3, "not started": 1, "resumed byte-identical": 3}))
