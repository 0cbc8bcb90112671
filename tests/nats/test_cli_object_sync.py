"""`asup sync`, `resume` and `sync-batch` to a JetStream object-store target
(`nats://HOST:PORT/BUCKET#NAME`), through real processes and a real server (2.9 and 2.15):
the published object reads back (with nats-py's object store client) as the source's bytes,
the intent records the URL, `asup status` calls the transfer's KV lease held while the sync
runs and stale once its SIGKILLed holder's TTL ran out, and the printed `asup resume`
reopens the bucket from the recorded URL and completes it. A server lost mid-transfer, an
unreachable one and a malformed URL are each one line (exit 4, 4 and 2), never a traceback."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import nats
import pytest

from engine.liveness import Liveness, check
from events.jetstream.bridge import bridge
from tests.cli import asup_argv, asup_untraced, seeded_file
from tests.nats.servers import NatsServer, free_port
from tests.nats.test_object_store import read_object
from tests.reliability.crashloop import report

pytestmark = pytest.mark.nats

CHUNK = 65536
CHUNKS = 40
TTL = 2  # seconds: the lease bucket's, so a dead holder's lease expires within the test
CLASS = ["--artifact-class", "conformance_fixture_bundle", "--mode", "hardened"]
STALE_BOUND = 20.0  # seconds from the SIGKILL until status calls the lease stale (the server expires entries on its own clock)



def _source(path: Path, chunks: int = 4, seed: int = 1) -> Path:
    return seeded_file(path, chunks * CHUNK, seed)


def _records(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_bytes().splitlines()] if log.exists() else []


def _count(log: Path, what: str, transfer: str | None = None) -> int:
    return sum(r["type"] == what and transfer in (None, r["stream"]) for r in _records(log))


def _wait_for(log: Path, what: str, process: subprocess.Popen[str], count: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if _count(log, what) >= count:
            return
        assert process.poll() is None, f"asup ended before {count} {what} records"
        time.sleep(0.05)
    pytest.fail(f"no {count} {what} records within 60 s")


def _rows(log: Path | str) -> dict[str, dict[str, Any]]:
    status = asup_untraced("status", str(log), "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    return {row["transfer_id"]: row for row in json.loads(status.stdout)["transfers"]["transfers"]}


def _object(server: str, bucket: str, name: str) -> bytes:
    return read_object(f"{server}/{bucket}", name)


def _objects(server: str, bucket: str) -> list[str]:
    async def names() -> list[str]:
        nc = await nats.connect(server)
        try:
            return sorted(info.name for info in await (await nc.jetstream().object_store(bucket)).list())
        finally:
            await nc.close()

    return bridge().call(names(), 30)


def _lapsed(target_path: str, bound: float) -> None:
    """Wait until nobody holds the lease of `target_path` (what `asup resume` asks first)."""
    deadline = time.monotonic() + bound
    while check(target_path).liveness is not Liveness.STALE:
        assert time.monotonic() < deadline, f"the lease of {target_path} did not lapse within {bound} s"
        time.sleep(0.2)


def _slow_sync(source: Path, target: str, log: str, transfer_id: str) -> subprocess.Popen[str]:
    slow = ",".join(f"slow@{i}" for i in range(CHUNKS))  # about 50 ms a chunk
    argv = asup_argv("sync", str(source), target, *CLASS, "--log", log, "--fault", slow, "--transfer-id", transfer_id)
    argv += ["--chunk-size", str(CHUNK)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sync_to_a_bucket_publishes_the_source_and_records_the_url(nats_server: NatsServer, tmp_path: Path) -> None:
    """A file and a bundle: objects nats-py reads back as the source's bytes (a bundle's
    members and its manifest), nothing else listed; the intent records the target URL;
    a sync to a name already published with those bytes completes without writing."""
    target = f"{nats_server.url}/ART#dir/a.bin"
    log = tmp_path / "log.jsonl"
    source = _source(tmp_path / "src" / "a.bin", chunks=5)
    done = asup_untraced("sync", str(source), target, *CLASS, "--log", str(log), "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    transfer = json.loads(done.stdout)["transfer_id"]
    assert _object(nats_server.url, "ART", "dir/a.bin") == source.read_bytes()
    intent = next(r["data"]["intent"] for r in _records(log) if r["type"] == "intent_recorded")
    assert (intent["target"], intent["target_path"]) == ("dir/a.bin", target)
    row = _rows(log)[transfer]
    assert (row["state"], row["target_path"], row["liveness"]) == ("completed", target, None)

    bundle = tmp_path / "src" / "b"
    for name, chunks in (("x.bin", 2), ("sub/y.bin", 1)):
        _source(bundle / name, chunks=chunks, seed=chunks)
    done = asup_untraced("sync", str(bundle), f"{nats_server.url}/ART#b.out", *CLASS, "--log", str(log))
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("x.bin", "sub/y.bin"):
        assert _object(nats_server.url, "ART", f"b.out/{name}") == (bundle / name).read_bytes()
    assert _objects(nats_server.url, "ART") == ["b.out", "b.out/sub/y.bin", "b.out/x.bin", "dir/a.bin"]  # no checkpoint, no chunk record

    again = asup_untraced("sync", str(source), target, *CLASS, "--log", str(log), "--transfer-id", "t-again")
    assert again.returncode == 0 and again.stdout.startswith("completed t-again"), again.stdout + again.stderr
    assert _count(log, "chunk_written", "t-again") == 0


def test_status_calls_the_lease_held_then_stale_after_a_kill_and_resume_completes(nats_server: NatsServer, tmp_path: Path) -> None:
    """While the sync runs its KV lease is held; SIGKILLed, the lease outlives it by at
    most its TTL (`?lease_ttl=2`), then status calls the transfer stale, naming the lease,
    and the resume it prints reopens the bucket from the recorded URL and completes it."""
    target = f"{nats_server.url}/KILL?lease_ttl={TTL}#a.bin"
    log = tmp_path / "log.jsonl"
    source = _source(tmp_path / "src" / "a.bin", chunks=CHUNKS)
    process = _slow_sync(source, target, str(log), "t-kill")
    try:
        _wait_for(log, "checkpoint_written", process, count=3)
        row = _rows(log)["t-kill"]
        assert (row["state"], row["liveness"], row["target_path"]) == ("syncing", "held", target)
        assert process.poll() is None, "the sync ended before status saw it running"
    finally:
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=60)
    killed = time.monotonic()
    while (liveness := _rows(log)["t-kill"]["liveness"]) == "held" and time.monotonic() - killed < STALE_BOUND:
        time.sleep(0.2)
    stale_after = time.monotonic() - killed
    assert liveness == "stale", f"still {liveness} {stale_after:.1f} s after the kill"

    plain = asup_untraced("status", str(log))
    row_line = next(line for line in plain.stdout.splitlines() if line.startswith("t-kill "))
    assert "syncing (stale)" in row_line and target in row_line
    resume = shlex.join(["asup", "resume", "t-kill", "--log", str(log)])
    lease_line = next(line for line in plain.stdout.splitlines() if line.startswith("no live lease asup-leases/obj.KILL."))
    assert lease_line.endswith(resume) and "stopped renewing it" in lease_line, plain.stdout

    resumed = asup_untraced(*shlex.split(resume)[1:])
    assert resumed.returncode == 0 and resumed.stdout.startswith("completed t-kill"), resumed.stdout + resumed.stderr
    assert _object(nats_server.url, "KILL", "a.bin") == source.read_bytes()
    assert _count(log, "checkpoint_read", "t-kill") == 1  # continued from the bucket's checkpoint, not from 0
    assert _rows(log)["t-kill"]["state"] == "completed"
    report("asup sync to a bucket SIGKILLed", Counter({"held while running": 1, f"stale within {stale_after:.1f} s": 1, "resumed": 1}))


def test_sigint_suspends_and_the_printed_resume_completes_on_a_url_log(nats_server: NatsServer, tmp_path: Path) -> None:
    """Log and target both on the server: SIGINT suspends at a chunk boundary (exit 130, the
    lease released: not held), the printed resume completes from the bucket's checkpoint."""
    log = f"{nats_server.url}/SIGLOG"
    target = f"{nats_server.url}/SIG#a.bin"
    source = _source(tmp_path / "src" / "a.bin", chunks=CHUNKS)
    process = _slow_sync(source, target, log, "t-sig")
    deadline = time.monotonic() + 60
    while len(asup_untraced("log", "cat", log, "--type", "checkpoint_written").stdout.splitlines()) < 3:
        assert process.poll() is None and time.monotonic() < deadline, "no checkpoints while the sync ran"
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, out + err
    resume = err.strip().split("; resume: ")[1]
    assert resume == shlex.join(["asup", "resume", "t-sig", "--log", log])
    row = _rows(log)["t-sig"]
    assert (row["state"], row["suspended"], row["liveness"]) == ("syncing", True, None)
    resumed = asup_untraced(*shlex.split(resume)[1:])
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert _object(nats_server.url, "SIG", "a.bin") == source.read_bytes()
    assert _rows(log)["t-sig"]["state"] == "completed"


def test_a_server_lost_mid_transfer_is_one_line_exit_4_and_the_resume_completes(nats_server: NatsServer, tmp_path: Path) -> None:
    """The log is a file, so the failure is recorded (io_failed, resumable); the process
    says so in one line naming the bucket's URL and the resume, exit 4."""
    bucket = f"{nats_server.url}/GONE?timeout=1&lease_ttl={TTL}"
    log = tmp_path / "log.jsonl"
    source = _source(tmp_path / "src" / "a.bin", chunks=CHUNKS)
    process = _slow_sync(source, f"{bucket}#a.bin", str(log), "t-gone")
    _wait_for(log, "checkpoint_written", process, count=2)
    nats_server.stop()
    stopped = time.monotonic()
    out, err = process.communicate(timeout=60)
    ended_after = time.monotonic() - stopped
    assert process.returncode == 4, out + err
    assert "Traceback" not in out + err and out == ""
    resume = shlex.join(["asup", "resume", "t-gone", "--log", str(log)])
    assert err.splitlines() == [err.strip()] and err.startswith(f"asup: {bucket}: log_unreachable: cannot reach the server"), err
    then = f"once the server is back and the transfer's lease has lapsed (a TTL after its last renewal): {resume}"
    assert err.strip().endswith(f"the transfer failed closed (io_failed, recorded in {log}); {then}"), err
    row = _rows(log)["t-gone"]
    assert (row["state"], row["reason_code"]) == ("failed_closed", "io_failed")
    nats_server.start()
    early = asup_untraced(*shlex.split(resume)[1:])  # within the TTL the lease its holder could not release still lives
    if early.returncode != 0:
        assert early.returncode == 1 and "it lapses a TTL after its holder stops renewing it" in early.stderr, early.stderr
        assert _count(log, "intent_recorded", "t-gone") == 1  # refused, nothing recorded
        _lapsed(f"{bucket}#a.bin", STALE_BOUND)
    resumed = early if early.returncode == 0 else asup_untraced(*shlex.split(resume)[1:])
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert _object(nats_server.url, "GONE", "a.bin") == source.read_bytes()
    refused = int(early.returncode != 0)
    counts = Counter({f"exit 4 within {ended_after:.1f} s": 1, "resume refused until the lease lapsed": refused, "resumed once back": 1})
    report("object-store server stopped mid-sync", counts)


def test_an_unreachable_bucket_is_exit_4_in_one_line_and_records_no_transfer(tmp_path: Path) -> None:
    bucket = f"nats://127.0.0.1:{free_port(set())}/NOBODY?timeout=1"  # a closed loopback port
    log = tmp_path / "log.jsonl"
    done = asup_untraced("sync", str(_source(tmp_path / "a.bin")), f"{bucket}#a.bin", *CLASS, "--log", str(log))
    assert done.returncode == 4, done.stdout + done.stderr
    assert done.stderr.splitlines() == [done.stderr.strip()] and done.stderr.startswith(f"asup: {bucket}: log_unreachable: "), done.stderr
    assert [r["type"] for r in _records(log)] in ([], ["log_created"])  # the log may be made; nothing of the transfer


BAD_URLS = [
    ("nats://127.0.0.1:4222/B", "not an object-store target: write nats://HOST:PORT/BUCKET#NAME"),
    ("nats://127.0.0.1:4222/B.C#a", "not an object store URL: bucket name 'B.C'"),
    ("nats://127.0.0.1:99999/B#a", "not an object store URL: server '127.0.0.1:99999'"),
    ("nats://127.0.0.1:4222/B?lease_ttl=soon#a", "not an object store URL: lease_ttl='soon': a number of seconds from 1 to 3600"),
    ("nats://127.0.0.1:4222/B?ttl=2#a", "not an object store URL: unknown option 'ttl': the options are replicas, timeout and lease_ttl"),
    ("nats://127.0.0.1:4222/B#../a", "not an object-store target: artifact path '../a' must be relative"),
    # a typo of the scheme is refused, never taken for a local path and written to
    ("nats:/127.0.0.1:4222/B#a", "not an object store URL: a URL starts with nats:// (two slashes, lower case)"),
    ("NATS://127.0.0.1:4222/B#a", "not an object store URL: a URL starts with nats:// (two slashes, lower case)"),
]


@pytest.mark.parametrize(("bad", "why"), BAD_URLS, ids=[b for b, _ in BAD_URLS])
def test_a_malformed_target_url_is_a_usage_error_naming_where_it_was_given(tmp_path: Path, bad: str, why: str) -> None:
    """As DST, as an intent file's `target` and as a batch line's: exit 2, one line, nothing recorded."""
    source = _source(tmp_path / "a.bin")
    log = tmp_path / "log.jsonl"
    intent = tmp_path / "intent.json"
    intent.write_text(json.dumps({"target": bad}))
    batch = tmp_path / "b.jsonl"
    intents = [{"source": str(source), "target": str(tmp_path / "ok.bin")}, {"source": str(source), "target": bad}]
    batch.write_text("".join(json.dumps(line) + "\n" for line in intents))
    runs = {
        f"asup: {bad}: usage: DST: {why}": ["sync", str(source), bad],
        f"asup: {intent}: usage: target {bad!r}: {why}": ["sync", str(source), "--intent", str(intent)],
        f"asup: {batch}:2: usage: target {bad!r}: {why}": ["sync-batch", str(batch)],
    }
    for expected, argv in runs.items():
        done = asup_untraced(*argv, *CLASS, "--log", str(log))
        assert done.returncode == 2, done.stdout + done.stderr
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith(expected), done.stderr
        assert not log.exists()
    assert not (tmp_path / "nats:").exists()  # nothing was written where a typo points


def test_a_lease_ttl_the_lease_bucket_does_not_keep_is_refused_before_anything_is_recorded(nats_server: NatsServer, tmp_path: Path) -> None:
    log = tmp_path / "log.jsonl"
    source = _source(tmp_path / "a.bin")
    target = f"{nats_server.url}/TTL?lease_ttl={TTL}#a.bin"
    first = asup_untraced("sync", str(source), target, *CLASS, "--log", str(log), "--transfer-id", "t-1")
    assert first.returncode == 0, first.stdout + first.stderr
    bucket = f"{nats_server.url}/TTL?lease_ttl=5"
    other = asup_untraced("sync", str(source), f"{bucket}#b.bin", *CLASS, "--log", str(log), "--transfer-id", "t-2")
    assert other.returncode == 2, other.stdout + other.stderr
    expected = f"asup: {bucket}: usage: lease_ttl=5, but the lease bucket asup-leases keeps leases {TTL} s"
    assert other.stderr.splitlines() == [other.stderr.strip()] and other.stderr.startswith(expected), other.stderr
    assert _count(log, "intent_recorded", "t-2") == 0
    plain = asup_untraced("sync", str(source), f"{nats_server.url}/TTL#c.bin", *CLASS, "--log", str(log), "--transfer-id", "t-3")
    assert plain.returncode == 0, plain.stdout + plain.stderr  # no lease_ttl: the bucket's own


def test_sync_batch_lines_may_name_buckets_and_resume_continues_from_their_checkpoints(nats_server: NatsServer, tmp_path: Path) -> None:
    """Two lines to one bucket (one store, shared), one to a file; SIGINT suspends them,
    `--resume` continues each from its checkpoint (the bucket's or the file's)."""
    log = tmp_path / "log.jsonl"
    targets = [f"{nats_server.url}/BATCH#a0.bin", f"{nats_server.url}/BATCH#a1.bin", str(tmp_path / "dst" / "a2.bin")]
    lines, sources = [], []
    for n, target in enumerate(targets):
        sources.append(_source(tmp_path / "src" / f"a{n}.bin", chunks=32, seed=n))  # a batch takes no --fault: 512 small chunks to stop in
        lines.append(json.dumps({"source": str(sources[-1]), "target": target, "transfer_id": f"t-b{n}", "chunk_size": 4096}))
    batch = tmp_path / "b.jsonl"
    batch.write_text("\n".join(lines) + "\n")
    process = subprocess.Popen(
        asup_argv("sync-batch", str(batch), *CLASS, "--log", str(log), "--concurrency", "3"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while not all(_count(log, "checkpoint_written", f"t-b{n}") >= 2 for n in range(3)):
        assert process.poll() is None and time.monotonic() < deadline, "the batch did not checkpoint all three"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, out + err
    rows = _rows(log)
    assert {rows[f"t-b{n}"]["target_path"] for n in range(2)} == set(targets[:2])
    again = asup_untraced("sync-batch", str(batch), *CLASS, "--log", str(log), "--resume", "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads(again.stdout)["failed"] == 0
    for n in range(2):
        assert _object(nats_server.url, "BATCH", f"a{n}.bin") == sources[n].read_bytes()
    assert Path(targets[2]).read_bytes() == sources[2].read_bytes()
    assert all(_count(log, "checkpoint_read", f"t-b{n}") == 1 for n in range(3)), "a line ran again from 0"
    skipped = asup_untraced("sync-batch", str(batch), *CLASS, "--log", str(log), "--resume", "--json")
    assert sorted(json.loads(skipped.stdout)["skipped"]) == ["t-b0", "t-b1", "t-b2"]
