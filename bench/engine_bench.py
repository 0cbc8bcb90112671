"""Engine benchmarks: transitions/s (Machine vs lever, events appended), transfers/s for
1,000 small artifacts, MB/s for a large artifact next to a raw copy + BLAKE3 of the same
file, and memory per 1,000 transfers in flight. Prints the machine first.

    python bench/engine_bench.py [--quick] [--size-mb 1024] [--dir /tmp] [--json]
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import anyio
import orjson
from blake3 import blake3

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, summary_lines

from engine.adapter import SyncAdapter
from engine.appender import DirectAppender
from engine.faults import FaultyTarget, parse_plan
from engine.intent import DEFAULT_CHUNK, build_intent
from engine.machine import TransferModel, make_dispatcher
from engine.runner import Job, run_jobs
from engine.stores import DirectoryStore
from events.clock import StepClock
from events.jsonl_log import JsonlLog
from events.payloads import Transition
from events.store import Pending
from events.vocabulary import Durability, Mode, State, Trigger

CLASS = "conformance_fixture_bundle"


def transitions_per_second(work: Path, n: int, lever: bool, durability: Durability) -> float:
    dispatcher = make_dispatcher(lever)
    model = TransferModel("bench")
    dispatcher.add(model)
    log_path = work / f"transitions-{lever}-{durability}.jsonl"
    with JsonlLog.open(log_path, durability=durability, clock=StepClock()) as log:
        model.state = State.SYNCING.value
        batch: list[Pending] = []
        start = time.perf_counter()
        for i in range(n):
            step = dispatcher.fire(model, Trigger.CHUNK_COMMITTED)
            event = Transition(
                transfer_id="bench",
                from_state=step.from_state,
                trigger=step.trigger,
                to_state=step.to_state,
                attempt=0,
                committed_cursor=i,
                mode=Mode.HARDENED,
                artifact_class=CLASS,
                seed=7,
            )
            batch.append(Pending("bench", event))
            if len(batch) == 1000:
                log.append_batch(batch)
                batch = []
        if batch:
            log.append_batch(batch)
        elapsed = time.perf_counter() - start
    log_path.unlink()
    return n / elapsed


def small_transfers(work: Path, count: int, lever: bool) -> tuple[float, int]:
    root = work / f"small-{lever}"
    (root / "src").mkdir(parents=True)
    (root / "dst").mkdir()
    for i in range(count):
        (root / "src" / f"a{i}.bin").write_bytes(random.Random(i).randbytes(4096))
    source, target = DirectoryStore(root / "src"), DirectoryStore(root / "dst")
    jobs = [
        Job(build_intent(source, f"a{i}.bin", f"a{i}.bin", artifact_class=CLASS, mode=Mode.STRICT, seed=i, chunk_size=4096), source, target)
        for i in range(count)
    ]
    with JsonlLog.open(root / "log.jsonl") as log:
        start = time.perf_counter()
        results = anyio.run(lambda: run_jobs(jobs, log, limit=64, lever=lever, clock_for=lambda _t: StepClock()))
        elapsed = time.perf_counter() - start
        events = log.last_position()[0]
    assert all(r.state is State.COMPLETED for r in results)
    shutil.rmtree(root)
    return count / elapsed, events


def raw_copy_and_hash(src: Path, dst: Path) -> float:
    start = time.perf_counter()
    hasher = blake3()
    with src.open("rb") as fin, dst.open("wb") as fout:
        while block := fin.read(1 << 20):
            hasher.update(block)
            fout.write(block)
        fout.flush()
        os.fsync(fout.fileno())
    hasher.hexdigest()
    return time.perf_counter() - start


def large_transfer(work: Path, size_mb: int) -> dict[str, float]:
    src_dir, dst_dir = work / "big-src", work / "big-dst"
    src_dir.mkdir()
    dst_dir.mkdir()
    src = src_dir / "big.bin"
    rng = random.Random(1)
    with src.open("wb") as fh:
        block = rng.randbytes(1 << 20)
        for i in range(size_mb):
            fh.write(block[i % 256 :] + block[: i % 256])
    raw = min(raw_copy_and_hash(src, work / f"raw-{i}.bin") for i in range(2))
    source, target = DirectoryStore(src_dir), DirectoryStore(dst_dir)
    intent = build_intent(source, "big.bin", "big.bin", artifact_class=CLASS, mode=Mode.HARDENED, seed=1, chunk_size=DEFAULT_CHUNK)

    async def one() -> float:
        with JsonlLog.open(work / "big-log.jsonl") as log:
            adapter = SyncAdapter(
                appender=DirectAppender(log),
                source=source,
                target=FaultyTarget(target, parse_plan(""), DEFAULT_CHUNK),
                dispatcher=make_dispatcher(True),
            )
            start = time.perf_counter()
            result = await adapter.run(intent)
            assert result.state is State.COMPLETED
            return time.perf_counter() - start

    asup = anyio.run(one)
    mb = size_mb
    return {"size_mb": mb, "raw_s": raw, "raw_mb_s": mb / raw, "asup_s": asup, "asup_mb_s": mb / asup, "ratio": asup / raw}


def memory_in_flight(work: Path, count: int) -> float:
    """KiB of Python heap per transfer while `count` transfers wait in backoff at once."""
    root = work / "flight"
    (root / "src").mkdir(parents=True)
    (root / "dst").mkdir()
    for i in range(count):
        (root / "src" / f"a{i}.bin").write_bytes(b"x" * 4096)
    source, target = DirectoryStore(root / "src"), DirectoryStore(root / "dst")
    plan = parse_plan("interruption@0")
    jobs = [
        Job(
            build_intent(source, f"a{i}.bin", f"a{i}.bin", artifact_class=CLASS, mode=Mode.HARDENED, seed=i, chunk_size=4096),
            source,
            FaultyTarget(target, plan, 4096),
        )
        for i in range(count)
    ]
    in_flight: list[int] = []

    async def sleep(_seconds: float) -> None:
        in_flight.append(tracemalloc.get_traced_memory()[0])
        await anyio.sleep(0.5 if len(in_flight) < count else 0)

    with JsonlLog.open(root / "log.jsonl", durability=Durability.NONE) as log:
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        anyio.run(lambda: run_jobs(jobs, log, limit=count, sleep=sleep))
        tracemalloc.stop()
    return (max(in_flight) - base) / count / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds")
    parser.add_argument("--size-mb", type=int, default=1024, help="large artifact size (MB)")
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    n, count, size_mb = (20_000, 200, 64) if args.quick else (100_000, 1000, args.size_mb)
    work = Path(tempfile.mkdtemp(prefix="asup-engine-bench-", dir=args.dir))
    report: dict[str, Any] = {"machine": describe(work)}
    try:
        report["transitions_per_s"] = {
            f"{'lever' if lever else 'machine'}/{d}": transitions_per_second(work, n, lever, d)
            for lever in (False, True)
            for d in (Durability.NONE, Durability.BATCH)
        }
        report["small_transfers"] = {}
        for lever in (False, True):
            rate, events = small_transfers(work, count, lever)
            report["small_transfers"]["lever" if lever else "machine"] = {"count": count, "transfers_per_s": rate, "events": events}
        report["large_transfer"] = large_transfer(work, size_mb)
        report["memory_kib_per_transfer_in_flight"] = memory_in_flight(work, count)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        report["figures"] = figures(report)
        sys.stdout.buffer.write(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))
        return
    _print(report)


TRANSITIONS_FLOOR = 20_000  # transitions/s through the transitions.Machine, batch durability
LARGE_RATIO_FLOOR = 1.5  # a large transfer may take at most this times a raw copy + BLAKE3


def figures(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The shared "figures" contract (bench/results.py): one run each, so `runs` holds one value."""
    out = []
    for key, rate in report["transitions_per_s"].items():
        dispatcher, durability = key.split("/")
        floors = [{"min": TRANSITIONS_FLOOR}] if dispatcher == "machine" and durability == Durability.BATCH else []
        note = "fire + Transition event + append_batch of 1,000, one stream; lever: the compiled dispatcher"
        out.append(_figure("engine", f"transitions through the {dispatcher}, durability {durability}", "transitions/s", rate, floors, note))
    for key, row in report["small_transfers"].items():
        name = f"{row['count']:,} transfers of 4 KiB, 64 at once ({key})"
        out.append(_figure("engine", name, "transfers/s", row["transfers_per_s"], [], f"{row['events']:,} events, run_jobs over one log"))
    big = report["large_transfer"]
    out.append(
        {
            **_figure(
                "engine",
                f"one {big['size_mb']:,} MB transfer, hardened",
                "s",
                big["asup_s"],
                [],
                "in-process adapter; raw: read, BLAKE3, write, fsync",
            ),
            "higher_is_better": False,
            "peers": {"raw copy+BLAKE3": {"value": big["raw_s"], "runs": [big["raw_s"]]}},
            "floors": [{"peer": "raw copy+BLAKE3", "min_ratio": round(1 / LARGE_RATIO_FLOOR, 3)}],
        }
    )
    memory = report["memory_kib_per_transfer_in_flight"]
    note = "tracemalloc, Python heap, while every transfer waits in its retry backoff"
    out.append({**_figure("memory", "per transfer in flight", "KiB", memory, [], note), "higher_is_better": False})
    return out


def _figure(section: str, name: str, unit: str, value: float, floors: list[dict[str, Any]], note: str) -> dict[str, Any]:
    return {
        "section": section,
        "name": name,
        "unit": unit,
        "higher_is_better": True,
        "value": value,
        "runs": [value],
        "peers": {},
        "floors": floors,
        "note": note,
    }


def _print(report: dict[str, Any]) -> None:
    for line in summary_lines(report["machine"]):
        print(line)
    print("\n== engine ==")
    for key, rate in report["transitions_per_s"].items():
        floor = ""
        if key.startswith("machine"):
            floor = f" (floor {TRANSITIONS_FLOOR:,}/s: {'PASS' if rate >= TRANSITIONS_FLOOR else 'FAIL'})"
        print(f"transitions/s {key:>14}: {rate:>12,.0f}{floor}")
    for key, row in report["small_transfers"].items():
        print(f"small transfers {key:>8}: {row['transfers_per_s']:>8,.0f}/s ({row['count']} x 4 KiB, {row['events']} events)")
    big = report["large_transfer"]
    verdict = "PASS" if big["ratio"] <= LARGE_RATIO_FLOOR else "FAIL"
    print(
        f"large transfer {big['size_mb']} MB: asup {big['asup_mb_s']:,.0f} MB/s, raw copy+BLAKE3 {big['raw_mb_s']:,.0f} MB/s, "
        f"ratio {big['ratio']:.2f}x (floor <= {LARGE_RATIO_FLOOR}x: {verdict})"
    )
    print(f"memory per transfer in flight: {report['memory_kib_per_transfer_in_flight']:.1f} KiB (tracemalloc, Python heap)")


if __name__ == "__main__":
    main()
