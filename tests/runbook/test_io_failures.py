"""I/O failures through the CLI, on real filesystems: a disk that fills up mid-copy (a small
tmpfs), a read-only mount, a target directory another user cannot write (run as `nobody`
with setpriv: CI runs as root, where permission bits stop nothing). Each is a recorded
fail-closed `io_failed` transition carrying the errno and path, one line naming the cause,
exit 1, seen by status, escalate and triage; never a traceback, never a transfer left
`syncing`, never `conflict_detected`. A source unreadable before the intent is recorded is
a usage error (exit 2) that records nothing; one transfer's failure never stops a batch.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli import asup_argv

CLASS = ("--artifact-class", "conformance_fixture_bundle", "--mode", "hardened")
NOBODY = 65534


def run(*args: str, cwd: Path, user: int | None = None) -> subprocess.CompletedProcess[str]:
    prefix = [] if user is None else ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASUP_") and k not in ("COLUMNS", "NO_COLOR")}
    return subprocess.run([*prefix, *asup_argv(*args)], cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False)


def assert_no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stderr + done.stdout, done.stderr


@contextlib.contextmanager
def mounted(where: Path, *options: str) -> Iterator[Path]:
    where.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    made = subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(["size=1m", *options]), "tmpfs", str(where)], capture_output=True)
    if made.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {made.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


@pytest.fixture
def shared(tmp_path: Path) -> Iterator[Path]:
    """A directory `nobody` can reach (pytest's own tmp is root's alone)."""
    top = Path(tempfile.mkdtemp(prefix="asup-io-", dir="/tmp"))
    top.chmod(0o755)
    try:
        yield top
    finally:
        shutil.rmtree(top, ignore_errors=True)


def as_nobody_works(cwd: Path) -> None:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("running as another user needs root and setpriv")
    probe = run("--version", cwd=cwd, user=NOBODY)
    if probe.returncode != 0:
        pytest.skip(f"this interpreter cannot run as nobody here: {probe.stderr.strip()[:200]}")


def source(at: Path, size: int = 3_000_000) -> Path:
    at.mkdir(exist_ok=True)
    path = at / "a.bin"
    path.write_bytes(os.urandom(size))
    path.chmod(0o644)
    return path


def status_row(log: Path, cwd: Path) -> Any:
    done = run("status", str(log), "--json", cwd=cwd)
    assert done.returncode == 0, done.stderr
    (row,) = json.loads(done.stdout)["transfers"]["transfers"]
    return row


def recorded_failure(log: Path) -> Any:
    (failed,) = [json.loads(line)["data"] for line in log.read_text().splitlines() if '"type":"store_failed"' in line]
    return failed


def test_a_disk_that_fills_up_mid_copy_is_io_failed_not_a_conflict(tmp_path: Path) -> None:
    src = source(tmp_path / "src")
    with mounted(tmp_path / "full") as full:
        done = run("sync", str(src), str(full / "a.bin"), *CLASS, "--chunk-size", "65536", "--log", "log.jsonl", cwd=tmp_path)
        assert_no_traceback(done)
        assert done.returncode == 1, done.stdout + done.stderr
        assert "io_failed (runbook section D)" in done.stdout
        assert f"cause: no space left on device: {full}/.a.bin.asup-tmp (ENOSPC, target write)" in done.stdout
        assert "conflict_detected" not in done.stdout
        failed = recorded_failure(tmp_path / "log.jsonl")
        assert (failed["kind"], failed["where"], failed["op"], failed["error"]) == ("io", "target", "write", "ENOSPC")
        assert failed["errno"] == 28 and failed["path"] == f"{full}/.a.bin.asup-tmp"
        row = status_row(tmp_path / "log.jsonl", tmp_path)
        assert (row["state"], row["reason_code"]) == ("failed_closed", "io_failed")
        assert run("log", "verify", "log.jsonl", cwd=tmp_path).returncode == 0
        escalated = run("escalate", "log.jsonl", "--json", cwd=tmp_path)
        assert escalated.returncode == 1 and json.loads(escalated.stdout)["level"] == "P1"
        assert "failed_closed_io_failed" in escalated.stdout
        triaged = run("triage", "log.jsonl", "--json", "--root", "root", cwd=tmp_path)
        report = json.loads(triaged.stdout)
        assert report["sections"] == ["D"] and report["level"] == "P1"
        assert report["failures"][0]["cause"].startswith("no space left on device: ")
        storage = [s for s in report["steps"] if s["step"].startswith("storage of")]
        assert len(storage) == 1 and not storage[0]["passed"], storage  # the disk is still full
        assert "recorded: no space left on device" in storage[0]["detail"] and "bytes free" in storage[0]["detail"]
        assert any(s["step"].startswith("replay") and s["passed"] for s in report["steps"])


def test_a_read_only_filesystem_is_io_failed(tmp_path: Path) -> None:
    src = source(tmp_path / "src", 200_000)
    with mounted(tmp_path / "ro", "ro") as ro:
        done = run("sync", str(src), str(ro / "a.bin"), *CLASS, "--log", "log.jsonl", cwd=tmp_path)
        assert_no_traceback(done)
        assert done.returncode == 1 and "io_failed" in done.stdout
        assert "cause: read-only file system:" in done.stdout and "EROFS" in done.stdout
        assert status_row(tmp_path / "log.jsonl", tmp_path)["state"] == "failed_closed"


def test_a_target_directory_another_user_cannot_write_is_io_failed(shared: Path) -> None:
    as_nobody_works(shared)
    src = source(shared / "src", 200_000)
    (shared / "locked").mkdir(mode=0o755)  # root's: nobody may not write in it
    logs = shared / "logs"
    logs.mkdir()
    os.chown(logs, NOBODY, NOBODY)
    done = run("sync", str(src), str(shared / "locked" / "a.bin"), *CLASS, "--log", str(logs / "t.jsonl"), cwd=shared, user=NOBODY)
    assert_no_traceback(done)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "cause: permission denied:" in done.stdout and "EACCES" in done.stdout
    failed = recorded_failure(logs / "t.jsonl")
    assert (failed["where"], failed["error"]) == ("target", "EACCES")
    assert status_row(logs / "t.jsonl", shared)["reason_code"] == "io_failed"
    assert sorted(p.name for p in (shared / "locked").iterdir()) == []


def test_an_unwritable_log_directory_is_one_line_and_records_nothing(shared: Path) -> None:
    as_nobody_works(shared)
    src = source(shared / "src", 100_000)
    (shared / "logs").mkdir(mode=0o755)
    out = shared / "out"
    out.mkdir()
    os.chown(out, NOBODY, NOBODY)
    done = run("sync", str(src), str(out / "a.bin"), *CLASS, "--log", str(shared / "logs" / "t.jsonl"), cwd=shared, user=NOBODY)
    assert_no_traceback(done)
    assert done.returncode in (1, 2) and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "logs" in done.stderr and "ermission denied" in done.stderr
    assert list((shared / "logs").iterdir()) == [] and list(out.iterdir()) == []


def test_a_source_unreadable_before_the_intent_is_a_usage_error_recording_nothing(shared: Path) -> None:
    as_nobody_works(shared)
    src = source(shared / "src", 100_000)
    src.chmod(0o600)  # root's alone
    logs = shared / "logs"
    logs.mkdir()
    os.chown(logs, NOBODY, NOBODY)
    done = run("sync", str(src), str(logs / "a.bin"), *CLASS, "--log", str(logs / "t.jsonl"), cwd=shared, user=NOBODY)
    assert_no_traceback(done)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert str(src) in done.stderr
    assert not (logs / "t.jsonl").exists()


def test_one_unwritable_target_never_stops_the_rest_of_a_batch(shared: Path) -> None:
    as_nobody_works(shared)
    src = source(shared / "src", 300_000)
    (shared / "locked").mkdir(mode=0o755)
    good = shared / "good"
    good.mkdir()
    os.chown(good, NOBODY, NOBODY)
    batch = shared / "batch.jsonl"
    lines = [{"source": str(src), "target": str(shared / "locked" / "a.bin")}, {"source": str(src), "target": str(good / "a.bin")}]
    batch.write_text("".join(json.dumps(line) + "\n" for line in lines))
    done = run("sync-batch", str(batch), *CLASS, "--log", str(good / "t.jsonl"), "--json", cwd=shared, user=NOBODY)
    assert_no_traceback(done)
    assert done.returncode == 1, done.stderr
    results = {r["reason_code"] for r in json.loads(done.stdout)["results"]}
    assert results == {None, "io_failed"}
    assert (good / "a.bin").read_bytes() == src.read_bytes()
    rows = json.loads(run("status", str(good / "t.jsonl"), "--json", cwd=shared).stdout)["transfers"]["transfers"]
    assert sorted(r["state"] for r in rows) == ["completed", "failed_closed"]


def test_a_transfer_failed_on_a_full_disk_resumes_once_there_is_room(tmp_path: Path) -> None:
    """The failure line gives the resume command; once the disk has room it completes the
    transfer from its checkpoint, with the source's bytes."""
    src = source(tmp_path / "src")
    with mounted(tmp_path / "full") as full:
        done = run("sync", str(src), str(full / "a.bin"), *CLASS, "--chunk-size", "65536", "--log", "log.jsonl", cwd=tmp_path)
        assert done.returncode == 1 and "io_failed" in done.stdout
        (hint,) = [ln for ln in done.stdout.splitlines() if "once the storage is fixed:" in ln]
        command = hint.split("once the storage is fixed: ", 1)[1].split()
        assert command[:2] == ["asup", "resume"] and command[3:] == ["--log", "log.jsonl"]
        assert run(*command[1:], cwd=tmp_path).returncode == 1  # still full: fails closed again, recorded
        subprocess.run(["mount", "-o", "remount,size=8m", str(full)], check=True)
        resumed = run(*command[1:], cwd=tmp_path)
        assert_no_traceback(resumed)
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        assert (full / "a.bin").read_bytes() == src.read_bytes()
        assert status_row(tmp_path / "log.jsonl", tmp_path)["state"] == "completed"


def test_a_batch_run_again_with_resume_skips_what_completed_and_continues_the_rest(tmp_path: Path) -> None:
    """One line of three fails on a full disk; --resume after the disk has room skips the two
    that completed (recording nothing for them) and continues the third from its checkpoint."""
    sources = [source(tmp_path / f"s{i}", 1_500_000) for i in range(3)]
    lines = [{"source": str(s), "target": str(tmp_path / "out" / f"{i}.bin"), "chunk_size": 65536} for i, s in enumerate(sources[:2])]
    with mounted(tmp_path / "full") as full:
        lines.append({"source": str(sources[2]), "target": str(full / "2.bin"), "chunk_size": 65536})
        (tmp_path / "b.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
        first = run("sync-batch", "b.jsonl", *CLASS, "--log", "l.jsonl", "--json", cwd=tmp_path)
        assert first.returncode == 1 and sorted(str(r["reason_code"]) for r in json.loads(first.stdout)["results"]) == [
            "None",
            "None",
            "io_failed",
        ]
        subprocess.run(["mount", "-o", "remount,size=8m", str(full)], check=True)
        before = len((tmp_path / "l.jsonl").read_text().splitlines())
        again = run("sync-batch", "b.jsonl", *CLASS, "--log", "l.jsonl", "--resume", "--json", cwd=tmp_path)
        assert again.returncode == 0, again.stdout + again.stderr
        report = json.loads(again.stdout)
        assert len(report["skipped"]) == 2 and [r["state"] for r in report["results"]] == ["completed"]
        added = (tmp_path / "l.jsonl").read_text().splitlines()[before:]
        assert {json.loads(line)["stream"] for line in added} == {report["results"][0]["transfer_id"]}
        assert any('"trigger":"resume_requested"' in line for line in added)
        assert (full / "2.bin").read_bytes() == sources[2].read_bytes()
