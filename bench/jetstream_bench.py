"""Benchmark of the JetStream log next to the JSONL log, in the same run: appends in
batches of 100 and 1,000 (100 streams, the log bench's seeded ~320 B events), and tail
latency (append returned -> a follower in another process has the record) with p50/p99,
four writer processes sharing one log (their total rate and contention retries),
on a single node of each server (Debian's 2.9: per-message publishes; 2.15: atomic
batches) and on an R3 stream of a 3-node loopback cluster. Servers are started here on free
loopback ports with temp stores and stopped after.

    python bench/jetstream_bench.py [--events 20000] [--tail-events 300] [--json]

JSONL appends use durability batch (one fsync per batch); a JetStream append is
acknowledged once a quorum of the stream's replicas stored it (each server fsyncs on its
own schedule), so the two are not the same durability: both are printed as they are.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # the harness that starts servers lives with the tests
from log_bench import make_workload
from machine import describe, summary_lines
from tail_bench import run_mode as jsonl_tail

from events.clock import StepClock
from events.jetstream.log import JetStreamLog
from events.jsonl_log import JsonlLog
from events.store import LogStore
from projections.base import percentile
from tests.nats.servers import NatsCluster, NatsServer, NatsUnavailable, probe

READER = """
import sys, time, json, anyio
from events.jetstream.log import JetStreamLog
url, count, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
seen = {}
async def main():
    log = JetStreamLog.open(url, reader=True)
    open(out + ".ready", "w").write("ready")
    async for record in log.follow():
        if record.stream == "bench":
            seen[record.seq] = time.monotonic_ns()
            if len(seen) == count:
                return
anyio.run(main)
open(out, "w").write(json.dumps(seen))
"""

WRITER = """
import sys, time, json, random
from events.jetstream.log import JetStreamLog
from events.payloads import Transition
from events.vocabulary import State, Trigger
url, count, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
acks, sent = {}, {}
rng = random.Random(1)
with JetStreamLog.open(url) as log:
    for i in range(count):
        event = Transition(transfer_id="bench", from_state=State.SYNCING, trigger=Trigger.CHUNK_COMMITTED,
                           to_state=State.SYNCING, attempt=0, committed_cursor=i)
        started = time.monotonic_ns()
        seq = log.append("bench", [event])[0].seq
        acks[seq], sent[seq] = time.monotonic_ns(), started
        time.sleep(rng.uniform(0.002, 0.006))
open(out, "w").write(json.dumps({"acks": acks, "sent": sent}))
"""


SHARED_WRITER = """
import sys, time, json
sys.path[:0] = sys.argv[6:]
from log_bench import make_workload
from events.clock import StepClock
from events.jetstream.log import JetStreamLog
url, events, batch, seed, go = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
work = make_workload(100, seed=seed).batches(events, batch)
with JetStreamLog.open(url, clock=StepClock()) as log:
    while time.time() < go:
        time.sleep(0.001)
    started = time.perf_counter()
    for items in work:
        log.append_batch(items)
    print(json.dumps({"seconds": time.perf_counter() - started, "contention": log.contention_retries, "transient": log.transient_retries}))
"""
WRITERS = 4


def shared_appends(url: str, events: int, batch: int) -> dict[str, Any]:
    """WRITERS processes appending `events` in all to one log at once (each its own 100
    streams, so every race is over the stream's last sequence): total events/s over the
    slowest writer's time, and the retries they counted."""
    with JetStreamLog.open(url):
        pass  # the stream exists before the writers race to append
    go = time.time() + 2.0  # every writer has imported and connected by then
    paths = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]
    argv = [url, str(events // WRITERS), str(batch)]
    procs = [
        subprocess.Popen([sys.executable, "-c", SHARED_WRITER, *argv, str(k + 1), str(go), *paths], stdout=subprocess.PIPE, text=True)
        for k in range(WRITERS)
    ]
    outs = [json.loads(proc.communicate(timeout=600)[0]) for proc in procs]
    return {
        "eps": (events // WRITERS) * WRITERS / max(out["seconds"] for out in outs),
        "contention_retries": sum(out["contention"] for out in outs),
        "transient_retries": sum(out["transient"] for out in outs),
    }


def appends(store: LogStore, events: int, batch: int) -> float:
    """Events per second appending `events` in batches of `batch`."""
    work = make_workload(100, seed=7).batches(events, batch)
    started = time.perf_counter()
    for items in work:
        store.append_batch(items)
    return events / (time.perf_counter() - started)


def js_tail(work: Path, url: str, events: int) -> dict[str, Any]:
    with JetStreamLog.open(url):
        pass  # the stream and its header exist before the reader starts
    seen_file, acks_file = work / "js-seen.json", work / "js-acks.json"
    reader = subprocess.Popen([sys.executable, "-c", READER, url, str(events), str(seen_file)])
    ready = Path(str(seen_file) + ".ready")
    deadline = time.monotonic() + 30
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # the consumer is subscribed
    subprocess.run([sys.executable, "-c", WRITER, url, str(events), str(acks_file)], check=True)
    reader.wait(timeout=60)
    seen, times = json.loads(seen_file.read_text()), json.loads(acks_file.read_text())
    ready.unlink()
    acks, sent = times["acks"], times["sent"]
    # the server delivers to the follower before its acknowledgement reaches the writer, so
    # "append returned -> reader" is often negative; "append began -> reader" bounds commit -> reader
    after_ack = sorted((seen[k] - acks[k]) / 1e6 for k in acks)
    from_start = sorted((seen[k] - sent[k]) / 1e6 for k in sent)
    return {
        "events": len(from_start),
        "p50_ms": percentile(from_start, 50),
        "p99_ms": percentile(from_start, 99),
        "max_ms": from_start[-1],
        "after_ack_p50_ms": percentile(after_ack, 50),
        "after_ack_p99_ms": percentile(after_ack, 99),
    }


def measure_js(name: str, url: str, work: Path, events: int, tail_events: int) -> dict[str, Any]:
    result: dict[str, Any] = {"target": name}
    for batch in (100, 1000):
        with JetStreamLog.open(f"{url}/A{batch}", clock=StepClock()) as log:
            result[f"append_b{batch}_eps"] = appends(log, events, batch)
            result["atomic"] = log.atomic
            result[f"contention_retries_b{batch}"] = log.contention_retries
    result["shared_b100"] = shared_appends(f"{url}/SHARED", events, 100)
    result["tail"] = js_tail(work, f"{url}/TAIL", tail_events)
    print(f"  {name}: done", file=sys.stderr)
    return result


def cluster_url(cluster: NatsCluster) -> str:
    return "nats://" + ",".join(node.removeprefix("nats://") for node in cluster.urls.split(","))


def run(work: Path, events: int, tail_events: int) -> dict[str, Any]:
    report: dict[str, Any] = {"machine": describe(work), "events": events, "rows": []}
    jsonl: dict[str, Any] = {"target": "jsonl (durability batch)"}
    for batch in (100, 1000):
        with JsonlLog.open(work / f"a{batch}.jsonl", clock=StepClock()) as log:
            jsonl[f"append_b{batch}_eps"] = appends(log, events, batch)
    jsonl["tail"] = jsonl_tail(work, tail_events, inotify=True)
    report["rows"].append(jsonl)
    for label in ("2.9", "2.15"):
        try:
            binary = probe(label)
        except NatsUnavailable as exc:
            report["rows"].append({"target": f"nats {label}", "skipped": str(exc)})
            continue
        with NatsServer(binary, work / f"single-{label}") as server:
            report["rows"].append(measure_js(f"nats {binary.version} single node", server.url, work, events, tail_events))
        with NatsCluster(binary, work / f"r3-{label}", n=3) as cluster:
            url = cluster_url(cluster)
            rows = measure_js(f"nats {binary.version} R3 (3 nodes)", url, work, events, tail_events)
            report["rows"].append(rows)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--tail-events", type=int, default=300)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="asup-js-bench-") as tmp:
        report = run(Path(tmp), args.events, args.tail_events)
    if args.json:
        print(json.dumps(report, indent=2))
        return
    for line in summary_lines(report["machine"]):
        print(line)
    print(f"\n== JetStream log vs JSONL log: {args.events} events over 100 streams, 1 writer ==")
    base = report["rows"][0]
    for row in report["rows"]:
        if "skipped" in row:
            print(f"{row['target']:>34}: skipped ({row['skipped']})")
            continue
        ratio = f"{row['append_b1000_eps'] / base['append_b1000_eps']:.2f}x jsonl"
        tail = row["tail"]
        print(
            f"{row['target']:>34}: append b100 {row['append_b100_eps']:>9,.0f} ev/s, b1000 {row['append_b1000_eps']:>9,.0f} ev/s "
            f"({ratio}); tail p50 {tail['p50_ms']:.2f} ms, p99 {tail['p99_ms']:.2f} ms"
            + (
                f" from the append's start (after its ack: p50 {tail['after_ack_p50_ms']:.2f}, p99 {tail['after_ack_p99_ms']:.2f})"
                if "after_ack_p50_ms" in tail
                else " from the append's return"
            )
            + (f"; atomic batches: {row['atomic']}" if "atomic" in row else "")
        )
    print(f"\n== {WRITERS} writer processes on one log, {args.events} events in all, batches of 100 ==")
    for row in report["rows"]:
        if "shared_b100" in row:
            shared = row["shared_b100"]
            print(
                f"{row['target']:>34}: {shared['eps']:>9,.0f} ev/s together = {shared['eps'] / row['append_b100_eps']:.0%} of one writer's "
                f"(target >= 50%); contention retries {shared['contention_retries']:,}, transient {shared['transient_retries']:,}"
            )


if __name__ == "__main__":
    main()
