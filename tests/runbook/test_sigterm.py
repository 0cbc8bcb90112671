"""SIGTERM is handled like Ctrl-C: exit 130, a valid log, a checkpoint a later --resume completes from."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from pathlib import Path

from tests.cli import asup_argv

CHUNK = 65536


def test_sigterm_mid_sync_leaves_a_valid_log_and_a_resumable_checkpoint(tmp_path: Path) -> None:
    """`asup sync` stopped by SIGTERM mid-transfer exits 130; the log verifies; --resume completes byte-identical."""
    source = tmp_path / "src" / "a.bin"
    source.parent.mkdir()
    source.write_bytes(random.Random(5).randbytes(40 * CHUNK))
    target, log = tmp_path / "dst" / "a.bin", tmp_path / "log.jsonl"
    common = [
        "--artifact-class",
        "conformance_fixture_bundle",
        "--mode",
        "hardened",
        "--seed",
        "5",
        "--chunk-size",
        str(CHUNK),
        "--log",
        str(log),
    ]
    slow = ",".join(f"slow@{i}" for i in range(40))  # 50 ms a chunk: about two seconds in all
    process = subprocess.Popen(asup_argv("sync", str(source), str(target), *common, "--fault", slow))
    checkpoint = target.with_name(".a.bin.asup-ckpt.json")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (checkpoint.exists() and json.loads(checkpoint.read_bytes())["committed_cursor"] > 0):
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 130
    assert not target.exists()
    verify = subprocess.run(asup_argv("log", "verify", str(log)), capture_output=True, text=True)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    resume = asup_argv("sync", str(source), str(target), *common, "--resume", str(checkpoint))
    resumed = subprocess.run(resume, capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert target.read_bytes() == source.read_bytes()
