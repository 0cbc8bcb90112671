"""How cost grows with the log: the same work at 10^4, 10^5, 10^6 (and 10^7) events.

Per size, each step runs in a fresh child process so its peak RSS is its own (os.wait4):
  append  - the log written by streaming: mixed scenario transfers (every built-in scenario,
            renamed copy after copy) in batches of 1,000 events, fsync per batch; never held
            in memory;
  verify  - `asup log verify LOG` (the real CLI, one process);
  status  - `asup status LOG --json` (all projections a status shows);
  replay  - `asup replay LOG --json` (re-execution with the lever on).
Time per event should stay flat as the log grows (linear cost); verify and replay memory
should stay flat; status holds one row per transfer, so its memory grows with transfers
(stated per transfer), not with events per transfer.

    python bench/scaling_bench.py                 # 10^4, 10^5, 10^6
    python bench/scaling_bench.py --large         # also 10^7 (~6 GB of log; checks free disk first)
    python bench/scaling_bench.py --quick         # 10^4, 10^5
    python bench/scaling_bench.py --json          # the figures document
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, summary_lines

BYTES_PER_EVENT = 700  # a little over the measured mean line, for the free-disk check
BATCH = 1_000
ASUP = Path(sys.executable).with_name("asup")

# Runs in the child: imports the bench's scenario templates, streams the log to disk.
WRITER = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from projection_bench import scenario_streams, _renamed
from events.clock import StepClock
from events.jsonl_log import JsonlLog
from events.store import Pending
from events.vocabulary import Durability
path, events = Path(sys.argv[1]), int(sys.argv[2])
templates = scenario_streams(path.parent / "work")
written, copy, batch = 0, 0, []
with JsonlLog.open(path, durability=Durability.BATCH, clock=StepClock()) as log:
    while written < events:
        for original, template in templates:
            stream = f"t-{copy:08d}"
            batch.extend(Pending(stream, _renamed(e, original, stream)) for e in template)
            copy += 1
            if len(batch) >= int(sys.argv[4]):
                log.append_batch(batch)
                written += len(batch)
                batch = []
    if batch:
        log.append_batch(batch)
        written += len(batch)
print(written, copy)
"""


def _run(argv: list[str]) -> tuple[float, int, str]:
    """One child in a fresh interpreter of our own, so RUSAGE_CHILDREN holds that child alone."""
    probe = (
        "import json, resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "p = subprocess.run(sys.argv[1:], capture_output=True)\n"
        "e = time.perf_counter() - t\n"
        "r = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024\n"
        "print(json.dumps({'rc': p.returncode, 's': e, 'rss': r, 'out': p.stdout.decode()[-2000:], 'err': p.stderr.decode()[-400:]}))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, check=True)
    row = json.loads(done.stdout)
    if row["rc"] != 0:
        raise SystemExit(f"scaling_bench: {Path(argv[0]).name} {' '.join(argv[1:3])} exited {row['rc']}: {row['err'].strip()}")
    return float(row["s"]), int(row["rss"]), str(row["out"])


def measure_size(work: Path, events: int) -> dict[str, Any]:
    log = work / f"scale-{events}.jsonl"
    here = str(Path(__file__).resolve().parent)
    seconds, rss, out = _run([sys.executable, "-c", WRITER, str(log), str(events), here, str(BATCH)])
    written, transfers = (int(x) for x in out.split())
    row: dict[str, Any] = {"events": written, "transfers": transfers, "log_bytes": log.stat().st_size}
    row["append"] = {"s": seconds, "rss": rss}
    steps = {
        "verify": [str(ASUP), "log", "verify", str(log), "--jobs", "1"],
        "status": [str(ASUP), "status", str(log), "--json"],
        "replay": [str(ASUP), "replay", str(log), "--json"],
    }
    for name, argv in steps.items():
        _progress(f"{written:,} events: {name}")
        seconds, rss, _ = _run(argv)
        row[name] = {"s": seconds, "rss": rss}
    shutil.rmtree(work / "work", ignore_errors=True)
    log.unlink()
    for side in work.glob(f"{log.name}*"):  # the fold's side files, if any
        side.unlink() if side.is_file() else shutil.rmtree(side, ignore_errors=True)
    return row


def _progress(message: str) -> None:
    print(f"[scaling_bench] {message}", file=sys.stderr, flush=True)


STEPS = ("append", "verify", "status", "replay")


def figures(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for step in STEPS:
        per_event = [row[step]["s"] / row["events"] * 1e6 for row in rows]
        for row, us in zip(rows, per_event, strict=True):
            out.append({
                "section": "scaling", "name": f"{step}, {row['events']:,} events", "unit": "us/event",
                "higher_is_better": False, "value": us, "runs": [us], "peers": {}, "floors": [],
                "note": f"peak RSS {row[step]['rss'] / 2**20:.0f} MiB; {row['transfers']:,} transfers",
            })
        big = [row for row in rows if row["events"] >= 100_000]  # start-up dominates below this
        if len(big) < 2:
            continue  # one size compared with itself would be a check that cannot fail
        growth = (big[-1][step]["s"] / big[-1]["events"]) / (big[0][step]["s"] / big[0]["events"])
        out.append({
            "section": "scaling", "name": f"{step}: time per event at {big[-1]['events']:,} / at {big[0]['events']:,}",
            "unit": "x", "higher_is_better": False, "value": growth, "runs": [growth], "peers": {}, "floors": [{"max": 1.5}],
            "note": "linear cost keeps this near 1 (start-up is paid once, so small logs cost more per event)",
        })
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10^4 and 10^5 only")
    parser.add_argument("--large", action="store_true", help="also 10^7 events (streaming; needs ~7 GB free)")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = [10**4, 10**5] if args.quick else [10**4, 10**5, 10**6] + ([10**7] if args.large else [])
    work = Path(tempfile.mkdtemp(prefix="asup-scaling-bench-", dir=args.dir))
    report: dict[str, Any] = {"machine": describe(work), "rows": []}
    try:
        for events in sizes:
            free = shutil.disk_usage(work).free
            if free < events * BYTES_PER_EVENT * 1.2:
                _progress(f"skipping {events:,} events: {free / 2**30:.1f} GiB free, ~{events * BYTES_PER_EVENT / 2**30:.1f} GiB needed")
                continue
            _progress(f"{events:,} events: append")
            report["rows"].append(measure_size(work, events))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["figures"] = figures(report["rows"]) if report["rows"] else []
    if args.json:
        print(json.dumps(report, indent=2))
        return
    _print(report)


def _print(report: dict[str, Any]) -> None:
    for line in summary_lines(report["machine"]):
        print(line)
    print("\n== scaling: time per event (us) and peak RSS (MiB), each step in a fresh process ==")
    print(f"{'events':>12} {'transfers':>10} {'log MB':>8}  " + "  ".join(f"{s:>17}" for s in STEPS))
    for row in report["rows"]:
        cells = "  ".join(f"{row[s]['s'] / row['events'] * 1e6:7.2f} {row[s]['rss'] / 2**20:6.0f} MiB" for s in STEPS)
        print(f"{row['events']:>12,} {row['transfers']:>10,} {row['log_bytes'] / 1e6:>8.0f}  {cells}")


if __name__ == "__main__":
    main()
