"""Verifying or reading a ~100 MB log streams it: peak RSS grows by far less than the file.

The log is built once per module (durability none, big batches). Each measurement runs in
a fresh interpreter that reports its resident set after imports and its high-water mark
after the full pass (/proc/self/status), so the pytest process's own memory is not counted.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from events.jsonl_log import JsonlLog
from events.payloads import Transition
from events.store import Pending
from events.vocabulary import Durability, State, Trigger

LOG_BYTES = 100 << 20
STREAMS = 2_000  # transfers of ~50 transitions each
BATCH = 2_000
PAD = "x" * 560  # a long replay command: ~1 KB per record
MAX_GROWTH = 64 << 20

pytestmark = pytest.mark.slow  # still part of `make test` (nothing deselects slow)

CHILD = """
import sys
import msgspec
from pathlib import Path
from events.chain import ChainState
from events.scan import Scanner, read_records

def status(key):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key):
                return int(line.split()[1]) * 1024

path, mode = Path(sys.argv[1]), sys.argv[2]
baseline = status("VmRSS:")
problem = None
if mode == "verify":
    scanner = Scanner(path, ChainState())
    records = sum(1 for _ in scanner)
    problem = None if scanner.problem is None else scanner.problem.message
else:
    records = sum(1 for _ in read_records(path, tolerate_torn_tail=False))
print(msgspec.json.encode({"baseline": baseline, "peak": status("VmHWM:"), "records": records, "problem": problem}).decode())
"""


class Measurement(msgspec.Struct):
    baseline: int
    peak: int
    records: int
    problem: str | None


def _event(n: int) -> Transition:
    return Transition(
        transfer_id=f"t-{n % STREAMS}",
        from_state=State.SYNCING,
        trigger=Trigger.CHUNK_COMMITTED,
        to_state=State.SYNCING,
        attempt=1,
        committed_cursor=n,
        replay_command=PAD,
    )


@pytest.fixture(scope="module")
def big_log(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A ~100 MB verifying log and its record count."""
    path = tmp_path_factory.mktemp("big") / "big.jsonl"
    with JsonlLog.open(path, durability=Durability.NONE) as log:
        n = 0
        while path.stat().st_size < LOG_BYTES:
            log.append_batch([Pending(f"t-{(n + k) % STREAMS}", _event(n + k)) for k in range(BATCH)])
            n += BATCH
    return path, n + 1


def _measure(path: Path, mode: str) -> Measurement:
    run = subprocess.run([sys.executable, "-c", CHILD, str(path), mode], capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stderr
    return msgspec.json.decode(run.stdout, type=Measurement)


def test_full_verify_memory_is_bounded(big_log: tuple[Path, int]) -> None:
    """A Scanner over the whole ~100 MB log verifies it with peak RSS growth under 64 MB."""
    path, records = big_log
    assert path.stat().st_size >= LOG_BYTES
    result = _measure(path, "verify")
    assert result.problem is None
    assert result.records == records
    growth = result.peak - result.baseline
    assert growth < MAX_GROWTH, f"verify grew RSS by {growth >> 20} MB for a {path.stat().st_size >> 20} MB log"


def test_read_records_memory_is_bounded(big_log: tuple[Path, int]) -> None:
    """read_records streams the whole ~100 MB log with peak RSS growth under 64 MB."""
    path, records = big_log
    result = _measure(path, "read")
    assert result.records == records
    growth = result.peak - result.baseline
    assert growth < MAX_GROWTH, f"read_records grew RSS by {growth >> 20} MB"
