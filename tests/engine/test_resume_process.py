"""Resume across a real process restart: `asup sync` is SIGKILLed mid-transfer, then a new
`asup sync --resume CHECKPOINT` process finishes it — byte-identical artifact, a log that
verifies (the kill may have torn its tail; the reopen repairs it), the resume recorded."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from pathlib import Path

from events.observations import ChunkWritten, IntentRecorded
from events.payloads import LogRepaired, Transition
from events.scan import read_records
from events.vocabulary import State, Trigger
from tests.cli import ASUP, asup_argv
from tests.engine.conftest import sessions_of

CHUNK = 64 * 1024
CHUNKS = 24
SEED = 7
START_TIMEOUT = 30.0


def test_a_killed_sync_resumes_in_a_new_process(tmp_path: Path) -> None:
    """SIGKILL `asup sync` after its first checkpoints; `asup sync --resume` completes it byte-identical, with a verifying log."""
    src, dst, log = tmp_path / "src" / "data.bin", tmp_path / "dst" / "data.out", tmp_path / "logs" / "sync.jsonl"
    src.parent.mkdir()
    dst.parent.mkdir()
    payload = random.Random(SEED).randbytes(CHUNKS * CHUNK - 999)
    src.write_bytes(payload)
    common = [
        *ASUP, "sync", str(src), str(dst),
        "--artifact-class", "conformance_fixture_bundle", "--mode", "hardened",
        "--seed", str(SEED), "--log", str(log), "--chunk-size", str(CHUNK),
    ]  # fmt: skip
    slow = ",".join(f"slow@{i}" for i in range(CHUNKS))  # ~50 ms per chunk: well over a second in all
    checkpoint = dst.parent / f".{dst.name}.asup-ckpt.json"

    first = subprocess.Popen([*common, "--fault", slow], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            assert first.poll() is None, f"sync ended before it could be killed: {first.communicate()}"
            assert time.monotonic() < deadline, "no checkpoint appeared"
            if checkpoint.exists() and json.loads(checkpoint.read_bytes())["committed_cursor"] > 0:
                break
            time.sleep(0.005)
        os.kill(first.pid, signal.SIGKILL)
    finally:
        if first.poll() is None:
            first.kill()
        first.communicate(timeout=30)
    assert first.returncode == -signal.SIGKILL
    assert not dst.exists(), "a killed transfer never leaves an artifact under the final name"
    state = json.loads(checkpoint.read_bytes())
    assert 0 < state["committed_cursor"] < len(payload)

    resumed = subprocess.run([*common, "--resume", str(checkpoint), "--json"], capture_output=True, timeout=60, check=False)
    assert resumed.returncode == 0, resumed.stdout.decode() + resumed.stderr.decode()
    outcome = json.loads(resumed.stdout)
    assert (outcome["state"], outcome["reason_code"], outcome["committed_cursor"]) == ("completed", None, len(payload))
    assert dst.read_bytes() == payload

    verified = subprocess.run(asup_argv("log", "verify", str(log)), capture_output=True, timeout=60, check=False)
    assert verified.returncode == 0, verified.stdout.decode() + verified.stderr.decode()

    records = list(read_records(log, tolerate_torn_tail=False))
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    torn = sorted(log.parent.glob(f"{log.name}.torn-*"))
    repairs = [r.data for r in records if isinstance(r.data, LogRepaired)]
    assert len(repairs) == len(torn), "a torn tail left by the kill is quarantined and recorded"
    stream = [r for r in records if r.stream == outcome["transfer_id"]]
    killed, session = sessions_of(stream)
    assert not [r for r in killed if isinstance(r.data, Transition) and r.data.to_state in (State.COMPLETED, State.FAILED_CLOSED)]
    intent = session[0].data
    assert isinstance(intent, IntentRecorded) and intent.resume
    moves = [(r.data.trigger, r.data.to_state) for r in session if isinstance(r.data, Transition)]
    assert moves[:2] == [(Trigger.RESUME_REQUESTED, State.CAPABILITY_CHECK), (Trigger.RESUME_APPLIED, State.SYNCING)]
    assert moves[-1] == (Trigger.CHECKSUM_VALIDATED, State.COMPLETED)
    written = [r.data for r in session if isinstance(r.data, ChunkWritten)]
    assert written[0].offset == state["committed_cursor"], "the resumed process starts at the checkpoint's cursor"
    assert written[-1].offset + written[-1].length == len(payload)
