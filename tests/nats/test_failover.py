"""Failures survived with real servers: several writer processes on one stream, and an R3
stream on a 3-node loopback cluster whose leader and a follower are SIGKILLed while the
writers append. Nothing acknowledged is lost or duplicated; the log verifies and exports."""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from events.jetstream.log import JetStreamLog
from events.log_ref import write_snapshot
from events.scan import read_records
from events.testing import transition
from tests.nats.servers import NatsCluster, NatsServer
from tests.reliability.crashloop import report

pytestmark = pytest.mark.nats
REPO = Path(__file__).resolve().parents[2]
COUNT = 1_000_000  # the most events per writer in the cluster test: they stop when told
PACE = 0.025  # s after each batch of 10


def _writers(url: str, count: int, n: int, batch: int, pace: float = 0.0, stop: Path | None = None) -> list[subprocess.Popen[str]]:
    tail = [str(pace), str(stop)] if stop is not None else [str(pace)]
    return [
        subprocess.Popen(
            [sys.executable, "-m", "tests.nats.writer_proc", url, f"w{k}", str(count), str(batch), *tail],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for k in range(n)
    ]


def _acknowledged(writers: list[subprocess.Popen[str]]) -> tuple[set[str], str]:
    acked: set[str] = set()
    errors = ""
    for writer in writers:
        out, err = writer.communicate(timeout=180)
        assert writer.returncode == 0, err
        assert "Traceback" not in err
        acked.update(line for line in out.splitlines() if line)
        errors += err
    return acked, errors


def _check_log(url: str, acked: set[str], tmp_path: Path) -> None:
    url = url.replace("timeout=2", "timeout=10")  # a cluster just restarted may take a moment to deliver
    with JetStreamLog.open(url) as log:
        records = list(log.read())
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    counts = Counter(r.id for r in records if r.id.startswith("w"))
    assert acked <= set(counts), f"acknowledged but missing: {sorted(acked - set(counts))[:5]}"
    assert max(counts.values()) == 1, f"stored twice: {[i for i, c in counts.items() if c > 1][:5]}"
    export = tmp_path / "export.jsonl"
    write_snapshot(JetStreamLog.open(url, reader=True).url, export)
    assert [r.h for r in read_records(export, tolerate_torn_tail=False)] == [r.h for r in records]


def test_several_writer_processes_share_one_stream(nats_server: NatsServer, tmp_path: Path) -> None:
    url = f"{nats_server.url}/MANY"
    with JetStreamLog.open(url) as log:
        log.append("setup", [transition("made")])
    acked, _ = _acknowledged(_writers(url, 300, 4, 10))
    assert len(acked) == 4 * 300
    _check_log(url, acked, tmp_path)


def _cluster_url(cluster: NatsCluster, stream: str) -> str:
    hosts = ",".join(node.removeprefix("nats://") for node in cluster.urls.split(","))
    return f"nats://{hosts}/{stream}?replicas=3&timeout=2"


def test_r3_stream_survives_leader_and_follower_kills(nats_cluster: NatsCluster, tmp_path: Path) -> None:
    url = _cluster_url(nats_cluster, "FAILOVER")
    with JetStreamLog.open(url) as log:
        log.append("setup", [transition("made")])
    stop = tmp_path / "stop"
    writers = _writers(url, COUNT, 3, 10, PACE, stop)
    try:
        time.sleep(1.5)  # the writers are appending
        leader = nats_cluster.wait_for_leader("FAILOVER")
        assert all(writer.poll() is None for writer in writers), "a writer ended before the leader's kill"
        nats_cluster.kill(leader)  # mid-batch: a batch in flight loses its leader
        time.sleep(2.0)
        nats_cluster.restart(leader)
        follower = next(i for i in range(3) if i != nats_cluster.wait_for_leader("FAILOVER"))
        assert all(writer.poll() is None for writer in writers), "a writer ended before the follower's kill"
        nats_cluster.kill(follower)
        time.sleep(1.0)
        nats_cluster.restart(follower)
        time.sleep(1.0)  # the writers append through the restarted follower's catch-up
        stop.touch()
        acked, retries = _acknowledged(writers)
    finally:
        stop.touch()
        for writer in writers:  # a failed assertion above must not leave them running past the test
            if writer.poll() is None:
                writer.kill()
            writer.communicate()
    # each writer's acknowledged ids are a prefix of its own: nothing skipped between batches
    for k in range(3):
        mine = sorted(int(i.split("-")[1]) for i in acked if i.startswith(f"w{k}-"))
        assert mine == list(range(len(mine))) and len(mine) >= 100, f"w{k}: {len(mine)} acked"
    # a batch in flight when the leader died was retried by the log, by the writer, or (a
    # reconnect soon enough) simply acknowledged late: any of them, nothing lost or doubled
    report("R3 writers through a leader and a follower kill: batches retried by a writer", Counter(retried=retries.count("retry ")))
    _check_log(url, acked, tmp_path)
