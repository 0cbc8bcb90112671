"""Replay throughput on a large log of mixed scenario transfers: verify only, and replay by
re-execution with the lever on and off (events/s over the whole log), with peak memory.
Floors: re-executed with the lever on >= 50,000 events/s; verify-only >= 250,000 events/s.

    python bench/replay_bench.py [--events 1000000] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, summary_lines
from projection_bench import build_log, scenario_streams

from events.chain import ChainState
from events.scan import Scanner
from replay.reexecute import replay_log


def verify_rate(log: Path) -> float:
    start = time.perf_counter()
    count = sum(1 for _ in Scanner(log, ChainState()))
    return count / (time.perf_counter() - start)


def replay_rate(log: Path, events: int, lever: bool) -> tuple[float, float, bool]:
    """Throughput untraced; peak Python heap from a second, traced pass (tracemalloc slows it)."""
    start = time.perf_counter()
    report, _ = replay_log(log, lever=lever, want_trace=False)
    elapsed = time.perf_counter() - start
    tracemalloc.start()
    replay_log(log, lever=lever, want_trace=False)
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return events / elapsed, peak, report.reproduced


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    events = 50_000 if args.quick else args.events
    work = Path(tempfile.mkdtemp(prefix="asup-replay-bench-", dir=args.dir))
    report: dict[str, Any] = {"machine": describe(work)}
    try:
        log = work / "mixed.jsonl"
        report["events"] = build_log(log, scenario_streams(work), events)
        report["log_mb"] = log.stat().st_size / 1e6
        report["verify_events_per_s"] = verify_rate(log)
        for lever in (True, False):
            rate, peak, reproduced = replay_rate(log, report["events"], lever)
            report[f"replay_lever_{'on' if lever else 'off'}"] = {
                "events_per_s": rate,
                "peak_mib_tracemalloc": peak,
                "reproduced": reproduced,
            }
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for line in summary_lines(report["machine"]):
        print(line)
    print(f"\n== replay ({report['events']:,} events, {report['log_mb']:.0f} MB of mixed scenario transfers) ==")
    verify = report["verify_events_per_s"]
    print(f"verify only: {verify:,.0f} events/s (floor >= 250,000: {'PASS' if verify >= 250_000 else 'FAIL'})")
    for key in ("replay_lever_on", "replay_lever_off"):
        row = report[key]
        floor = f" (floor >= 50,000: {'PASS' if row['events_per_s'] >= 50_000 else 'FAIL'})" if key.endswith("on") else ""
        print(
            f"{key}: {row['events_per_s']:,.0f} events/s, peak {row['peak_mib_tracemalloc']:.0f} MiB (tracemalloc), "
            f"all reproduced: {row['reproduced']}{floor}"
        )


if __name__ == "__main__":
    main()
