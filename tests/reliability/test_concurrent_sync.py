"""Four `asup sync` processes on one log at once all complete.

Real `asup` processes, started together in one directory, each moving its own file and
each appending to the default log (artifacts/logs/transfers.jsonl). Each chunk is slowed
so the transfers overlap: the log's lock is held per batch, so they interleave, and none
of them sees `log_locked`.
"""

from __future__ import annotations

import itertools
import json
import random
import subprocess
from pathlib import Path

from tests.cli import asup_argv, run_asup

PROCESSES = 4
CHUNK = 4096
CHUNKS = 12  # each slowed by 50 ms: over half a second of appends per transfer


def _start(tmp_path: Path, number: int) -> subprocess.Popen[str]:
    source = tmp_path / "src" / f"a{number}.bin"
    source.write_bytes(random.Random(number).randbytes(CHUNKS * CHUNK))
    slow = ",".join(f"slow@{i}" for i in range(CHUNKS))
    argv = asup_argv(
        "sync",
        str(source),
        str(tmp_path / "dst" / source.name),
        *("--artifact-class", "conformance_fixture_bundle", "--mode", "hardened", "--seed", str(number)),
        *("--chunk-size", str(CHUNK), "--fault", slow, "--json"),
    )
    return subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_four_asup_sync_processes_on_one_log_all_complete(tmp_path: Path) -> None:
    """All exit 0 with their target written; the log verifies; `asup status` shows each transfer completed."""
    (tmp_path / "src").mkdir()
    processes = [_start(tmp_path, number) for number in range(PROCESSES)]
    results = []
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, f"exit {process.returncode}: {out}{err}"
        assert "Traceback" not in err, err
        results.append(json.loads(out))
    for number in range(PROCESSES):
        name = f"a{number}.bin"
        assert (tmp_path / "dst" / name).read_bytes() == (tmp_path / "src" / name).read_bytes()

    log = "artifacts/logs/transfers.jsonl"
    verify = run_asup("log", "verify", log, cwd=tmp_path)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    status = run_asup("status", log, "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stdout + status.stderr
    transfers = json.loads(status.stdout)["transfers"]["transfers"]
    assert {t["transfer_id"]: t["state"] for t in transfers} == {r["transfer_id"]: "completed" for r in results}
    assert len(transfers) == PROCESSES

    spans = sorted((t["first_seq"], t["last_seq"]) for t in transfers)
    overlapping = any(later[0] <= earlier[1] for earlier, later in itertools.pairwise(spans))
    assert overlapping, f"the transfers ran one after another, not at once: {spans}"
