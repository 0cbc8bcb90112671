"""Regenerate the golden outputs: `python -m tests.golden.regen [--logs]`.

Without `--logs` only `expected/` is rewritten, from the committed logs: review the diff,
commit it with the change that caused it, and say why. `--logs` first re-records the
scenario and demo logs, re-runs the readiness drill into `root/` and derives the damaged
logs; do that only when the recorded meaning is meant to change.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from events.record import SCHEMA_VERSION
from tests.golden.cases import CASES, DEMO, EXPECTED, HERE, SCENARIOS, SEED, asup, copy_inputs, redigest, run_case

CACHE_SUFFIXES = (".lock", ".head.json")


def record_logs(work: Path) -> None:
    """Run the real commands that write the golden inputs, then copy them in."""
    for argv in (
        ["scenario", "run", "all", "--seed", SEED, "--log", SCENARIOS],
        ["log", "demo", DEMO, "--seed", SEED],
        ["readiness", "--root", "root"],
    ):
        result = asup(argv, work)
        if result.returncode != 0:
            sys.exit(f"asup {' '.join(argv)} exited {result.returncode}: {result.stderr}")
    shutil.copytree(HERE / "logs" / "v1", work / "logs" / "v1")  # recorded by an older asup: kept as it was
    for name in ("logs", "root"):
        shutil.rmtree(HERE / name, ignore_errors=True)
        shutil.copytree(work / name, HERE / name, ignore=lambda _d, names: [n for n in names if n.endswith(CACHE_SUFFIXES)])
    derive_damaged(HERE / SCENARIOS)


def derive_damaged(scenarios: Path) -> None:
    """Four damaged copies: a flipped bit, a torn tail, and two digest-valid edits of the
    last record (an extra field, a newer schema version)."""
    lines = scenarios.read_bytes().splitlines(keepends=True)
    logs = scenarios.parent
    flipped = bytearray(lines[99])
    flipped[60] ^= 0x01
    (logs / "bitflip.jsonl").write_bytes(b"".join([*lines[:99], bytes(flipped), *lines[100:]]))
    (logs / "torn.jsonl").write_bytes(b"".join(lines) + lines[-1][:150])
    last = lines[-1]
    extra = last.replace(b'"data":{', b'"data":{"note":"added by a newer asup",', 1)
    (logs / "extra_field.jsonl").write_bytes(b"".join([*lines[:-1], redigest(extra)]))
    current = b'"v":%d,' % SCHEMA_VERSION
    newer = last.replace(current, b'"v":%d,' % (SCHEMA_VERSION + 1), 1)
    (logs / "newer_v.jsonl").write_bytes(b"".join([*lines[:-1], redigest(newer)]))


def write_expected() -> None:
    with tempfile.TemporaryDirectory(prefix="asup-golden-") as tmp:
        work = copy_inputs(Path(tmp))
        EXPECTED.mkdir(exist_ok=True)
        for stale in EXPECTED.glob("*.txt"):
            stale.unlink()
        for name in CASES:
            (EXPECTED / f"{name}.txt").write_text(run_case(name, work))
            print(f"wrote expected/{name}.txt")


def main() -> None:
    if "--logs" in sys.argv[1:]:
        with tempfile.TemporaryDirectory(prefix="asup-golden-logs-") as tmp:
            work = Path(tmp)
            (work / "logs").mkdir()
            record_logs(work)
    write_expected()


if __name__ == "__main__":
    main()
