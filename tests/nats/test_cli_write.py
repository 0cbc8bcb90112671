"""The writing commands (sync, sync-batch, resume, scenario run) on a `nats://` log, through
real processes and a real server: the same records as a JSONL file (the exported stream
folds to the same status; scenario runs are byte for byte the same), the same output bar
the log's name, the same signals behaviour, two writers at once, and one line (never a
traceback) for a bad URL, an unreachable server or one that goes away mid-transfer."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3

from events.errors import AsupError, ErrorCode
from events.jetstream.log import JetStreamLog
from events.jetstream.url import parse
from events.log_ref import write_snapshot
from tests.cli import asup_argv, asup_untraced, seeded_file
from tests.nats.servers import NatsServer, free_port

pytestmark = pytest.mark.nats

CHUNK = 65536
CHUNKS = 40
CLASS = ["--artifact-class", "conformance_fixture_bundle", "--mode", "hardened"]
UNREACHABLE_BOUND = 10.0  # seconds for a process (interpreter start included) to give up on a closed port at ?timeout=1



def _source(path: Path, chunks: int = 4, seed: int = 1) -> Path:
    return seeded_file(path, chunks * CHUNK, seed)


def _b3(path: Path) -> str:
    return blake3(path.read_bytes()).hexdigest()


def _snapshot(url: str, out: Path) -> Path:
    write_snapshot(parse(url), out)
    return out


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def _stored(url: str) -> list[dict[str, Any]]:
    """The stream's records now ([] while it does not exist yet)."""
    try:
        with JetStreamLog.open(url, create=False, reader=True) as log:
            return [json.loads(line) for line in log.verified_lines()]
    except AsupError as exc:
        if exc.code is ErrorCode.LOG_NOT_FOUND:
            return []
        raise


def _wait_for(url: str, what: str, process: subprocess.Popen[str], count: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if sum(r["type"] == what for r in _stored(url)) >= count:
            return
        assert process.poll() is None, f"asup ended before {count} {what} records"
        time.sleep(0.05)
    pytest.fail(f"no {count} {what} records within 60 s")


def _shape(records: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What a transfer recorded, without what differs from run to run (times, paths, ids of the log)."""
    return [(r["type"], r["seq"], r["stream"], r["sv"], r["data"].get("trigger"), r["data"].get("to_state")) for r in records[1:]]


def _verify(path: Path) -> None:
    verify = asup_untraced("log", "verify", str(path))
    assert verify.returncode == 0, verify.stdout + verify.stderr


def _status(path: Path) -> list[dict[str, Any]]:
    status = asup_untraced("status", str(path), "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    keep = ("transfer_id", "state", "reason_code", "committed_cursor", "attempt", "events", "suspended")
    rows: list[dict[str, Any]] = json.loads(status.stdout)["transfers"]["transfers"]
    return [{key: row.get(key) for key in keep} for row in rows]


def _slow_sync(source: Path, target: Path, log: str, transfer_id: str) -> subprocess.Popen[str]:
    slow = ",".join(f"slow@{i}" for i in range(CHUNKS))  # about 50 ms a chunk
    argv = asup_argv("sync", str(source), str(target), *CLASS, "--log", log, "--fault", slow, "--transfer-id", transfer_id)
    argv += ["--chunk-size", str(CHUNK)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sync_to_a_url_records_and_prints_what_a_sync_to_a_file_does(nats_server: NatsServer, tmp_path: Path) -> None:
    url = f"{nats_server.url}/SYNC?timeout=5"  # `?` and `&`-free but still quoted: a shell would glob the `?`
    file_log = tmp_path / "file" / "log.jsonl"
    results = {}
    for name, log in (("url", url), ("file", str(file_log))):
        source = _source(tmp_path / name / "src" / "a.bin")
        done = asup_untraced("sync", str(source), str(tmp_path / name / "dst" / "a.bin"), *CLASS, "--log", log, "--transfer-id", "t-same")
        assert done.returncode == 0, done.stdout + done.stderr
        results[name] = done.stdout.replace(shlex.quote(log), "LOG").replace(log, "LOG"), done.stderr
    assert results["url"] == results["file"]
    assert "inspect: asup log cat LOG --stream t-same" in results["url"][0]
    snapshot = _snapshot(url, tmp_path / "snapshot.jsonl")
    _verify(snapshot)
    assert _shape(_records(snapshot)) == _shape(_records(file_log))
    assert _status(snapshot) == _status(file_log)
    assert _status(snapshot)[0]["state"] == "completed"
    as_json = asup_untraced("sync", str(tmp_path / "url" / "src" / "a.bin"), str(tmp_path / "j.bin"), *CLASS, "--log", url, "--json")
    assert as_json.returncode == 0 and json.loads(as_json.stdout)["log"] == url


def test_sync_batch_of_four_at_concurrency_two_on_a_url(nats_server: NatsServer, tmp_path: Path) -> None:
    url = f"{nats_server.url}/BATCH"
    lines = []
    for n in range(4):
        source = _source(tmp_path / "src" / f"a{n}.bin", seed=n)
        lines.append(json.dumps({"source": str(source), "target": str(tmp_path / "dst" / f"a{n}.bin"), "transfer_id": f"t-b{n}"}))
    batch = tmp_path / "b.jsonl"
    batch.write_text("\n".join(lines) + "\n")
    done = asup_untraced("sync-batch", str(batch), *CLASS, "--log", url, "--concurrency", "2", "--json")
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert (result["log"], result["transfers"], result["failed"]) == (url, 4, 0)
    snapshot = _snapshot(url, tmp_path / "snapshot.jsonl")
    _verify(snapshot)
    assert sorted((row["transfer_id"], row["state"]) for row in _status(snapshot)) == [(f"t-b{n}", "completed") for n in range(4)]
    for n in range(4):
        assert _b3(tmp_path / "dst" / f"a{n}.bin") == _b3(tmp_path / "src" / f"a{n}.bin")
    again = asup_untraced("sync-batch", str(batch), *CLASS, "--log", url, "--resume", "--json")  # the stream's fold: all four done
    assert again.returncode == 0, again.stdout + again.stderr
    assert sorted(json.loads(again.stdout)["skipped"]) == [f"t-b{n}" for n in range(4)]


def test_sigint_mid_transfer_suspends_and_the_printed_resume_on_the_url_completes_it(nats_server: NatsServer, tmp_path: Path) -> None:
    url = f"{nats_server.url}/SIG?timeout=5&replicas=1"  # `?` and `&`: the printed command must quote them
    source = _source(tmp_path / "src" / "a.bin", chunks=CHUNKS)
    target = tmp_path / "dst" / "a.bin"
    process = _slow_sync(source, target, url, "t-sig")
    _wait_for(url, "checkpoint_written", process, count=3)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, out + err
    assert "Traceback" not in out + err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("asup: interrupted (SIGINT): t-sig suspended at "), err
    resume = lines[0].split("; resume: ")[1]
    assert resume == shlex.join(["asup", "resume", "t-sig", "--log", url]) == f"asup resume t-sig --log '{url}'"
    assert not target.exists()
    assert _status(_snapshot(url, tmp_path / "mid.jsonl"))[0]["suspended"] is True
    resumed = asup_untraced(*shlex.split(resume)[1:])
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert resumed.stdout.startswith("completed t-sig")
    assert _b3(target) == _b3(source)
    snapshot = _snapshot(url, tmp_path / "snapshot.jsonl")
    _verify(snapshot)
    assert _status(snapshot)[0]["state"] == "completed"


def test_scenario_run_on_a_url_stores_the_file_runs_bytes_and_a_second_run_is_refused(nats_server: NatsServer, tmp_path: Path) -> None:
    url = f"{nats_server.url}/SCEN"
    file_log = tmp_path / "scenarios.jsonl"
    on_file = asup_untraced("scenario", "run", "all", "--log", str(file_log), "--workdir", str(tmp_path / "w1"))
    on_url = asup_untraced("scenario", "run", "all", "--log", url, "--workdir", str(tmp_path / "w2"))
    assert on_file.returncode == 0, on_file.stdout + on_file.stderr
    assert on_url.returncode == 0, on_url.stdout + on_url.stderr
    assert on_url.stdout.replace(url, "LOG") == on_file.stdout.replace(str(file_log), "LOG")
    assert _snapshot(url, tmp_path / "snapshot.jsonl").read_bytes() == file_log.read_bytes()
    held = len(file_log.read_bytes().splitlines())
    again = asup_untraced("scenario", "run", "all", "--log", url)
    assert again.returncode == 2, again.stdout + again.stderr
    expected = f"stream SCEN already holds {held} records: name a new stream; a file would be kept aside as LOG.<n>, a stream cannot be"
    assert again.stderr.splitlines() == [f"asup: {url}: usage: {expected}"]
    assert len(_stored(url)) == held  # nothing recorded


def test_two_syncs_appending_to_one_url_at_once_both_complete_and_the_log_verifies(nats_server: NatsServer, tmp_path: Path) -> None:
    url = f"{nats_server.url}/BOTH"
    processes = []
    for n in range(2):
        source = _source(tmp_path / f"s{n}" / "a.bin", chunks=12, seed=n)
        argv = asup_argv("sync", str(source), str(tmp_path / f"d{n}" / "a.bin"), *CLASS, "--log", url, "--transfer-id", f"t-c{n}")
        processes.append(subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for process in processes:
        out, err = process.communicate(timeout=120)
        assert process.returncode == 0, out + err
        assert "Traceback" not in out + err
    snapshot = _snapshot(url, tmp_path / "snapshot.jsonl")
    _verify(snapshot)
    records = _records(snapshot)
    assert [r["seq"] for r in records] == list(range(1, len(records) + 1))
    assert sum(r["type"] == "log_created" for r in records) == 1
    assert sorted((row["transfer_id"], row["state"]) for row in _status(snapshot)) == [("t-c0", "completed"), ("t-c1", "completed")]


def test_a_server_that_goes_away_mid_transfer_is_one_line_saying_how_to_resume(nats_server: NatsServer, tmp_path: Path) -> None:
    url = f"{nats_server.url}/GONE?timeout=1"
    source = _source(tmp_path / "src" / "a.bin", chunks=CHUNKS)
    target = tmp_path / "dst" / "a.bin"
    process = _slow_sync(source, target, url, "t-gone")
    _wait_for(url, "checkpoint_written", process, count=2)
    nats_server.stop()
    out, err = process.communicate(timeout=60)
    assert "Traceback" not in out + err
    assert process.returncode == 4, out + err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"asup: {url}: log_unreachable: "), err
    resume = shlex.join(["asup", "resume", "t-gone", "--log", url])
    assert lines[0].endswith(f"once it is back: {resume}"), err
    assert not target.exists()
    nats_server.start()
    resumed = asup_untraced(*shlex.split(resume)[1:])
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert _b3(target) == _b3(source)
    _verify(_snapshot(url, tmp_path / "snapshot.jsonl"))


@pytest.mark.parametrize("command", ["sync", "sync-batch", "resume", "scenario"])
def test_an_unreachable_server_is_exit_4_in_one_line_within_its_timeout(tmp_path: Path, command: str) -> None:
    url = f"nats://127.0.0.1:{free_port(set())}/NOBODY?timeout=1"  # a closed loopback port
    source = _source(tmp_path / "a.bin")
    batch = tmp_path / "b.jsonl"
    batch.write_text(json.dumps({"source": str(source), "target": str(tmp_path / "d" / "a.bin")}) + "\n")
    argv = {
        "sync": ["sync", str(source), str(tmp_path / "d" / "a.bin"), *CLASS],
        "sync-batch": ["sync-batch", str(batch), *CLASS],
        "resume": ["resume", "t-x"],
        "scenario": ["scenario", "run", "all"],
    }[command]
    started = time.monotonic()
    done = asup_untraced(*argv, "--log", url, cwd=tmp_path)
    elapsed = time.monotonic() - started
    assert done.returncode == 4, done.stdout + done.stderr
    assert done.stderr.splitlines() == [done.stderr.strip()] and done.stderr.startswith(f"asup: {url}: log_unreachable: "), done.stderr
    assert elapsed < UNREACHABLE_BOUND, elapsed
    assert not (tmp_path / "d" / "a.bin").exists()


@pytest.mark.parametrize("command", ["sync", "sync-batch", "resume", "scenario"])
@pytest.mark.parametrize("bad", ["nats://127.0.0.1:99999/S", "nats://127.0.0.1:4/S?timeout=soon"])
def test_a_bad_url_is_a_usage_error_in_one_line(tmp_path: Path, command: str, bad: str) -> None:
    source = _source(tmp_path / "a.bin")
    argv = {
        "sync": ["sync", str(source), str(tmp_path / "d" / "a.bin"), *CLASS],
        "sync-batch": ["sync-batch", str(tmp_path / "no-batch.jsonl"), *CLASS],
        "resume": ["resume", "t-x"],
        "scenario": ["scenario", "run", "all"],
    }[command]
    done = asup_untraced(*argv, "--log", bad, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"asup: {bad}: usage: not a log URL"), done.stderr


def test_a_batch_whose_server_goes_away_is_one_line_and_its_rerun_with_resume_completes(nats_server: NatsServer, tmp_path: Path) -> None:
    url = f"{nats_server.url}/BGONE?timeout=1"
    lines = []
    for n in range(2):
        source = _source(tmp_path / "src" / f"a{n}.bin", chunks=400, seed=n)  # a batch takes no --fault: big enough to outlast the stop
        target = str(tmp_path / "dst" / f"a{n}.bin")
        lines.append(json.dumps({"source": str(source), "target": target, "transfer_id": f"t-g{n}", "chunk_size": CHUNK}))
    batch = tmp_path / "b.jsonl"
    batch.write_text("\n".join(lines) + "\n")
    argv = asup_argv("sync-batch", str(batch), *CLASS, "--log", url, "--concurrency", "2")
    process = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait_for(url, "checkpoint_written", process, count=2)
    nats_server.stop()
    out, err = process.communicate(timeout=60)
    assert "Traceback" not in out + err
    assert process.returncode == 4, out + err
    assert err.splitlines() == [err.strip()] and err.startswith(f"asup: {url}: log_unreachable: "), err
    assert err.strip().endswith("once it is back: rerun this command with --resume"), err
    nats_server.start()
    again = asup_untraced("sync-batch", str(batch), *CLASS, "--log", url, "--resume", "--json")
    assert again.returncode == 0, again.stdout + again.stderr
    for n in range(2):
        assert _b3(tmp_path / "dst" / f"a{n}.bin") == _b3(tmp_path / "src" / f"a{n}.bin")
    _verify(_snapshot(url, tmp_path / "snapshot.jsonl"))


def test_log_in_asup_toml_may_be_a_url(nats_server: NatsServer, tmp_path: Path) -> None:
    url = f"{nats_server.url}/TOML"
    (tmp_path / "asup.toml").write_text(f'log = "{url}"\n')
    source = _source(tmp_path / "src" / "a.bin")
    done = asup_untraced("sync", str(source), str(tmp_path / "dst" / "a.bin"), *CLASS, "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["log"] == url
    assert not (tmp_path / "artifacts").exists()  # nothing of the default file log
    assert _status(_snapshot(url, tmp_path / "snapshot.jsonl"))[0]["state"] == "completed"
