"""Dead transfers do not look alive: an `asup sync` killed mid-transfer is shown as stale by
`status` (state column, `--stale`, `--json` liveness), reported by `escalate` (P2
`stale_transfer`) and `triage`, each with the command that continues it; a running one is
held, and a second sync of the same target is told who holds it. Real processes on tmpfs.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import random
import signal
import socket
import subprocess
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from engine.liveness import parse_holder
from tests.cli import asup_argv, run_asup
from tests.golden.cases import HERE as GOLDEN
from tests.reliability.crashloop import report

CHUNK = 4096
CHUNKS = 160  # each slowed by 50 ms: eight seconds of transfer, far longer than the checks made while it runs
TRANSFER = "t-stale"
LOG = "transfers.jsonl"
SHM = Path("/dev/shm")


@pytest.fixture
def work(tmp_path: Path) -> Iterator[Path]:
    """tmpfs where there is one: the transfer's fsyncs cost nothing there, so its pace is the slow faults'."""
    if SHM.is_dir() and os.access(SHM, os.W_OK):
        with tempfile.TemporaryDirectory(dir=SHM, prefix="asup-stale-") as directory:
            yield Path(directory)
    else:
        yield tmp_path


def _sync_argv(work: Path, transfer: str) -> list[str]:
    slow = ",".join(f"slow@{i}" for i in range(CHUNKS))
    return asup_argv(
        "sync",
        "src.bin",
        "out/a.bin",
        *("--artifact-class", "conformance_fixture_bundle", "--mode", "hardened", "--transfer-id", transfer),
        *("--chunk-size", str(CHUNK), "--fault", slow, "--log", LOG),
    )


@contextlib.contextmanager
def running_sync(work: Path) -> Iterator[subprocess.Popen[str]]:
    """An `asup sync` that has taken its lease and written a chunk; SIGKILLed at the end if still running."""
    (work / "src.bin").write_bytes(random.Random(7).randbytes(CHUNKS * CHUNK))
    (work / "out").mkdir(exist_ok=True)
    process = subprocess.Popen(_sync_argv(work, TRANSFER), cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_mid_transfer(work, process)
        yield process
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)


def _wait_mid_transfer(work: Path, process: subprocess.Popen[str]) -> None:
    lease = work / "out" / ".a.bin.asup-lease"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        held = parse_holder(lease.read_bytes()) if lease.exists() else None
        if held is not None and held.pid == process.pid and b'"chunk_written"' in (work / LOG).read_bytes():
            return
        time.sleep(0.05)
    raise AssertionError("the sync never got past its first chunk")


def _rows(work: Path, *extra: str) -> dict[str, dict[str, object]]:
    done = run_asup("status", LOG, "--json", *extra, cwd=work)
    assert done.returncode == 0, done.stdout + done.stderr
    return {t["transfer_id"]: t for t in json.loads(done.stdout)["transfers"]["transfers"]}


def _row_line(stdout: str, transfer: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith(transfer + " "))


def test_a_running_sync_is_held_and_a_second_one_is_told_who_holds_it(work: Path) -> None:
    with running_sync(work) as first:
        row = _rows(work)[TRANSFER]
        assert (row["state"], row["liveness"]) == ("syncing", "held")
        assert row["target_path"] == str(work / "out" / "a.bin") and row["started"]
        plain = run_asup("status", LOG, cwd=work).stdout
        assert "(stale)" not in _row_line(plain, TRANSFER) and str(work / "out" / "a.bin") in _row_line(plain, TRANSFER)
        assert TRANSFER not in _rows(work, "--stale")
        second = subprocess.run(_sync_argv(work, "t-second"), cwd=work, capture_output=True, text=True, timeout=60, check=False)
        assert second.returncode == 1 and "Traceback" not in second.stderr, second.stdout + second.stderr
        assert first.poll() is None, "the first sync ended before the checks: what was held was not shown running"
    records = [json.loads(line) for line in (work / LOG).read_bytes().splitlines()]
    checked = [r["data"] for r in records if r["stream"] == "t-second" and r["type"] == "lease_checked"]
    assert len(checked) == 1 and not checked[0]["acquired"]
    assert checked[0]["holder"].startswith(f"pid {first.pid} on {socket.gethostname()} since 20"), checked[0]
    assert checked[0]["holder"].endswith(f"(transfer {TRANSFER})")
    report("a sync running while a second starts on its target", Counter({"held in status": 1, "second sync told the holder": 1}))


def test_a_killed_sync_is_stale_in_status_escalate_and_triage(work: Path) -> None:
    with running_sync(work) as process:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    resume = f"asup resume {TRANSFER} --log {LOG}"

    row = _rows(work)[TRANSFER]
    assert (row["state"], row["liveness"]) == ("syncing", "stale")
    assert list(_rows(work, "--stale")) == [TRANSFER]
    plain = run_asup("status", LOG, cwd=work).stdout
    assert "syncing (stale)" in _row_line(plain, TRANSFER)
    why = next(line for line in plain.splitlines() if line.startswith("nobody holds the lease: its holder, pid "))
    assert f"pid {process.pid} on {socket.gethostname()}" in why and why.split()[-6:] == [TRANSFER, *resume.split()], plain
    assert "syncing (stale)" in _row_line(run_asup("status", LOG, "--stale", cwd=work).stdout, TRANSFER)

    judged = run_asup("escalate", LOG, cwd=work)
    assert judged.returncode == 0, judged.stdout + judged.stderr  # P2: reported, not a failed check
    assert judged.stdout.startswith("escalation: P2")
    fired = next(line for line in judged.stdout.splitlines() if "stale_transfer" in line)
    assert fired.startswith(f"  P2 stale_transfer: {TRANSFER} (target {work / 'out' / 'a.bin'})") and fired.endswith(resume)
    verdict = json.loads(run_asup("escalate", LOG, "--json", cwd=work).stdout)
    assert [r["rule"] for r in verdict["rules"]] == ["stale_transfer"] and verdict["rules"][0]["evidence"][0]["resume_command"] == resume

    triaged = run_asup("triage", LOG, cwd=work)
    assert triaged.returncode == 0 and "stale transfers" in triaged.stdout and f"  {resume}" in triaged.stdout.splitlines()
    assert "escalation level: P2" in triaged.stdout
    assert json.loads(run_asup("triage", LOG, "--json", cwd=work).stdout)["stale"][0]["transfer_id"] == TRANSFER
    report("asup sync SIGKILLed mid-transfer", Counter({"stale in status, --stale, --json, escalate and triage": 1}))


def test_a_planted_lease_is_neither_followed_nor_blocked_on(work: Path) -> None:
    """After the kill, a FIFO at the lease name (which a blocking open would wait on for ever)
    and a symlink to a file another process holds locked (which, followed, would look held)
    both leave the transfer stale."""
    with running_sync(work) as process:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    lease = work / "out" / ".a.bin.asup-lease"
    lease.unlink()
    os.mkfifo(lease)
    assert _rows(work)[TRANSFER]["liveness"] == "stale"  # run_asup's timeout would fail a blocked probe
    lease.unlink()
    decoy = work / "decoy"
    decoy.write_text(json.dumps({"transfer_id": TRANSFER, "pid": os.getpid(), "host": socket.gethostname(), "started": ""}))
    fd = os.open(decoy, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        lease.symlink_to(decoy)
        assert _rows(work)[TRANSFER]["liveness"] == "stale"
    finally:
        os.close(fd)
    report("a FIFO and a locked file's symlink at a killed sync's lease name, through asup status", Counter({"judged stale": 2}))


def test_a_v1_log_records_no_target_path_so_liveness_is_unknown(tmp_path: Path) -> None:
    done = run_asup("status", str(GOLDEN / "logs" / "v1" / "scenarios.jsonl"), "--json", cwd=tmp_path)
    rows = {t["transfer_id"]: t for t in json.loads(done.stdout)["transfers"]["transfers"]}
    assert rows["resume_transfer_mismatch-7"]["liveness"] == "unknown"
    assert {t["liveness"] for t in rows.values() if t["state"] in ("completed", "failed_closed")} == {None}
    assert "stale_transfer" not in run_asup("escalate", str(GOLDEN / "logs" / "v1" / "scenarios.jsonl"), cwd=tmp_path).stdout


def test_resuming_a_transfer_that_is_still_running_is_refused_and_records_nothing(work: Path) -> None:
    """`asup resume` of a live transfer: exit 1 naming it as running; nothing of the resume is
    in the log, and the live transfer goes on to complete (a resume's records in its stream
    would have broken its next append)."""
    with running_sync(work) as process:
        refused = run_asup("resume", TRANSFER, "--log", LOG, cwd=work)
        assert refused.returncode == 1 and "is running" in refused.stderr, refused.stderr
        assert len(refused.stderr.strip().splitlines()) == 1
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, out + err
    intents = [json.loads(line) for line in (work / LOG).read_text().splitlines() if '"type":"intent_recorded"' in line]
    assert [i["data"]["resume"] for i in intents] == [False]
