"""Replay throughput on a large log of mixed scenario transfers: verify only, and replay by
re-execution with the lever on and off (events/s over the whole log), with peak memory.
Floors: re-executed with the lever on >= 50,000 events/s, every transfer reproduced;
verify-only >= 250,000 events/s. Each rate is the median of `--repeats` runs, interleaved
(verify, lever on, lever off, verify, ...); the peak heap comes from one extra traced pass.

    python bench/replay_bench.py [--events 500000] [--repeats 3] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
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


def replay_rate(log: Path, events: int, lever: bool) -> tuple[float, bool]:
    start = time.perf_counter()
    report, _ = replay_log(log, lever=lever, want_trace=False)
    return events / (time.perf_counter() - start), report.reproduced


def replay_peak_mib(log: Path, lever: bool) -> float:
    """Peak Python heap of one traced pass (tracemalloc slows it, so it is never timed)."""
    tracemalloc.start()
    try:
        replay_log(log, lever=lever, want_trace=False)
        return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def measure(log: Path, events: int, repeats: int) -> dict[str, Any]:
    verify: list[float] = []
    rates: dict[bool, list[float]] = {True: [], False: []}
    reproduced = True
    for i in range(repeats):
        _progress(f"round {i + 1}/{repeats}")
        verify.append(verify_rate(log))
        for lever in (True, False):
            rate, ok = replay_rate(log, events, lever)
            rates[lever].append(rate)
            reproduced = reproduced and ok
    report: dict[str, Any] = {"verify_events_per_s": statistics.median(verify), "verify_runs": verify, "reproduced": reproduced}
    for lever in (True, False):
        report[f"replay_lever_{'on' if lever else 'off'}"] = {
            "events_per_s": statistics.median(rates[lever]),
            "runs": rates[lever],
            "peak_mib_tracemalloc": replay_peak_mib(log, lever),
            "reproduced": reproduced,
        }
    return report


def figures(report: dict[str, Any]) -> list[dict[str, Any]]:
    events = f"{report['events']:,} events of mixed scenario transfers"
    on, off = report["replay_lever_on"], report["replay_lever_off"]
    return [
        {"section": "replay", "name": f"re-execution, lever on ({events})", "unit": "events/s", "higher_is_better": True,
         "value": on["events_per_s"], "runs": on["runs"], "peers": {}, "floors": [{"min": 50_000}],
         "note": f"peak heap {on['peak_mib_tracemalloc']:.0f} MiB (tracemalloc)"},
        {"section": "replay", "name": "transfers reproduced (share)", "unit": "x", "higher_is_better": True,
         "value": 1.0 if report["reproduced"] else 0.0, "runs": [], "peers": {}, "floors": [{"min": 1.0}]},
        {"section": "replay", "name": f"re-execution, lever off ({events})", "unit": "events/s", "higher_is_better": True,
         "value": off["events_per_s"], "runs": off["runs"], "peers": {}, "floors": [],
         "note": f"peak heap {off['peak_mib_tracemalloc']:.0f} MiB (tracemalloc)"},
        {"section": "replay", "name": f"verify only ({events})", "unit": "events/s", "higher_is_better": True,
         "value": report["verify_events_per_s"], "runs": report["verify_runs"], "peers": {}, "floors": [{"min": 250_000}]},
    ]


def _progress(message: str) -> None:
    print(f"[replay_bench] {message}", file=sys.stderr, flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--repeats", type=int, default=3, help="runs per rate; the median is reported")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    events = 50_000 if args.quick else args.events
    repeats = 1 if args.quick else args.repeats
    work = Path(tempfile.mkdtemp(prefix="asup-replay-bench-", dir=args.dir))
    report: dict[str, Any] = {"machine": describe(work)}
    try:
        log = work / "mixed.jsonl"
        report["events"] = build_log(log, scenario_streams(work), events)
        report["log_mb"] = log.stat().st_size / 1e6
        report.update(measure(log, report["events"], repeats))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["figures"] = figures(report)
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
