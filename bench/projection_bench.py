"""Projection and durability benchmarks: fold throughput (transfers + metrics together,
and all projections) over a large log of mixed scenario transfers; sidecar encode and
decode MB/s on a 64 MB pack next to raw pyeclib on the same bytes. Prints the machine.

    python bench/projection_bench.py [--quick] [--events 500000] [--pack-mb 64] [--json]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
import msgspec
import orjson
from pyeclib.ec_iface import ECDriver

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, summary_lines

from engine import durability
from engine.appender import DirectAppender
from engine.machine import make_dispatcher
from engine.scenarios import SCENARIOS, run_scenario
from engine.sidecar_write import write_sidecar
from events.clock import StepClock
from events.jsonl_log import JsonlLog
from events.memory_log import MemoryLog
from events.observations import CheckpointRead, IntentRecorded
from events.payloads import Event, Transition
from events.store import Pending
from events.vocabulary import Durability
from projections.audit import Audit
from projections.base import Projection
from projections.fold import fold_log
from projections.metrics import Metrics
from projections.traces import Traces
from projections.transfers import Transfers
from projections.violations import Violations


def scenario_streams(work: Path) -> list[tuple[str, list[Event]]]:
    """One run of every built-in scenario: each stream's events, as templates."""
    log = MemoryLog("bench", clock=StepClock())

    async def run() -> None:
        appender, dispatcher = DirectAppender(log), make_dispatcher(True)
        for scenario in SCENARIOS:
            where = work / "scenarios" / scenario.name
            await run_scenario(scenario, where, appender, dispatcher, seed=1, clock=StepClock)

    anyio.run(run)
    streams: dict[str, list[Event]] = {}
    for record in log.read():
        if record.stream != "$log":
            streams.setdefault(record.stream, []).append(record.data)
    return list(streams.items())


def build_log(path: Path, templates: list[tuple[str, list[Event]]], events: int) -> int:
    written = 0
    copy = 0
    with JsonlLog.open(path, durability=Durability.NONE, clock=StepClock()) as log:
        while written < events:
            for original, template in templates:
                stream = f"t-{copy:07d}"
                items = [Pending(stream, _renamed(e, original, stream)) for e in template]
                log.append_batch(items)
                written += len(items)
                copy += 1
    return written


def _renamed(event: Event, original: str, stream: str) -> Event:
    """The template's transfer id replaced by the copy's, wherever the template named it
    (a checkpoint of another transfer keeps naming that other transfer)."""
    if isinstance(event, Transition | CheckpointRead) and event.transfer_id == original:
        return msgspec.structs.replace(event, transfer_id=stream)
    if isinstance(event, IntentRecorded) and event.intent.transfer_id == original:
        return msgspec.structs.replace(event, intent=msgspec.structs.replace(event.intent, transfer_id=stream))
    return event


def fold_rate(path: Path, projections: list[Projection[Any]], repeats: int) -> float:
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        result = fold_log(path, projections)
        elapsed = time.perf_counter() - start
        best = max(best, result.seq / elapsed)
    return best


def sidecar_rates(work: Path, mb: int) -> dict[str, float]:
    pack = work / "pack.bin"
    pack.write_bytes(os.urandom(mb << 20))
    data = pack.read_bytes()
    driver = ECDriver(k=8, m=4, ec_type="isa_l_rs_vand")
    start = time.perf_counter()
    fragments = driver.encode(data)
    raw_encode = time.perf_counter() - start
    start = time.perf_counter()
    driver.decode(fragments[4:])
    raw_decode = time.perf_counter() - start
    manifest = durability.sidecar_path(pack)
    start = time.perf_counter()
    write_sidecar(manifest, durability.encode(pack))
    ours_encode = time.perf_counter() - start
    start = time.perf_counter()
    durability.decode(durability.read_sidecar(manifest), list(range(4, 12)))
    ours_decode = time.perf_counter() - start
    return {
        "pack_mb": mb,
        "raw_encode_mb_s": mb / raw_encode,
        "raw_decode_mb_s": mb / raw_decode,
        "sidecar_encode_mb_s": mb / ours_encode,
        "sidecar_decode_mb_s": mb / ours_decode,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--events", type=int, default=500_000)
    parser.add_argument("--pack-mb", type=int, default=64)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    events, mb, repeats = (50_000, 16, 1) if args.quick else (args.events, args.pack_mb, 3)
    work = Path(tempfile.mkdtemp(prefix="asup-projection-bench-", dir=args.dir))
    report: dict[str, Any] = {"machine": describe(work)}
    try:
        log = work / "mixed.jsonl"
        report["log_events"] = build_log(log, scenario_streams(work), events)
        report["log_mb"] = log.stat().st_size / 1e6
        report["fold_events_per_s"] = {
            "transfers+metrics": fold_rate(log, [Transfers(), Metrics()], repeats),
            "all (transfers, audit, metrics, violations, traces)": fold_rate(
                log, [Transfers(), Audit(), Metrics(), Violations(), Traces()], repeats
            ),
        }
        report["sidecar"] = sidecar_rates(work, mb)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        sys.stdout.buffer.write(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))
        return
    for line in summary_lines(report["machine"]):
        print(line)
    print("\n== projections ==")
    print(f"log: {report['log_events']:,} events, {report['log_mb']:.0f} MB (mixed scenario transfers)")
    for name, rate in report["fold_events_per_s"].items():
        verdict = ("PASS" if rate >= 200_000 else "FAIL") if name.startswith("transfers+metrics") else ""
        print(f"fold {name}: {rate:,.0f} events/s (verify + decode + fold){' (target >= 200,000: ' + verdict + ')' if verdict else ''}")
    s = report["sidecar"]
    print(
        f"sidecar {s['pack_mb']} MB: encode {s['sidecar_encode_mb_s']:.0f} MB/s (raw pyeclib {s['raw_encode_mb_s']:.0f}), "
        f"decode {s['sidecar_decode_mb_s']:.0f} MB/s (raw pyeclib {s['raw_decode_mb_s']:.0f})"
    )


if __name__ == "__main__":
    main()
