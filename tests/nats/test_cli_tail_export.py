"""`asup tail` on a nats:// log, `asup log export` and `asup log import`, in real processes
against a real server: a follower sees another process's appends within a second and
prints what the file follower prints for the same records; export, import and export
again give back the same bytes; an interrupted import resumes; every refusal is one line
with its exit code, and an unreachable or vanished server is exit 4."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from events.jetstream.log import JetStreamLog
from events.jsonl_log import JsonlLog
from events.store import Pending
from events.testing import transition
from tests.cli import asup_argv, run_asup
from tests.reliability.crashloop import report

pytestmark = pytest.mark.nats

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "logs"
LATENCY_BOUND = 1.0  # seconds from an acknowledged append to its line on the follower's stdout


def make_log(path: Path, events: int, streams: int = 3) -> None:
    with JsonlLog.open(path) as log:
        log.append_batch([Pending(f"s{i % streams}", transition(f"e{i}", i)) for i in range(events)])


def append(url: str, stream: str, tag: str) -> None:
    with JetStreamLog.open(url) as log:
        log.append(stream, [transition(tag, 1)])


def one_line_error(done: subprocess.CompletedProcess[str], code: int, says: str) -> None:
    assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
    assert says in done.stderr, done.stderr
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


class Follower:
    """`asup tail ... -f` in its own process, its JSON lines read as they arrive."""

    def __init__(self, *args: str, cwd: Path) -> None:
        self.proc = subprocess.Popen(asup_argv("tail", *args, "-f", "--json"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=cwd)
        self._buffer = b""
        self.lines: list[bytes] = []

    def read(self, want: int, seconds: float = 20.0) -> list[bytes]:
        """Lines until `want` arrived in all (or the time ran out)."""
        assert self.proc.stdout is not None
        deadline = time.monotonic() + seconds
        while len(self.lines) < want and time.monotonic() < deadline:
            ready, _, _ = select.select([self.proc.stdout], [], [], 0.05)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 1 << 16)
                if not chunk:
                    break
                self._buffer += chunk
                *complete, self._buffer = self._buffer.split(b"\n")
                self.lines += complete
        return self.lines

    def stop(self) -> tuple[int, bytes]:
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=20)
        return self.proc.returncode, err


@pytest.fixture
def stream_url(nats_server: Any, request: pytest.FixtureRequest) -> str:
    """A stream of this test's own on the shared server."""
    name = re.sub(r"[^A-Za-z0-9_-]", "_", request.node.name)
    return f"{nats_server.url}/{name[:48]}-{hashlib.sha256(name.encode()).hexdigest()[:8]}"


def test_tail_f_on_a_url_sees_appends_within_a_second_and_prints_what_the_file_follower_prints(tmp_path: Path, stream_url: str) -> None:
    make_log(tmp_path / "seed.jsonl", 12)
    assert run_asup("log", "import", "seed.jsonl", stream_url, cwd=tmp_path).returncode == 0
    by_transfer = Follower(stream_url, "--transfer", "s1", "--since", "1", cwd=tmp_path)
    by_type = Follower(stream_url, "--type", "transition", "--since", "1", cwd=tmp_path)
    try:
        assert len(by_transfer.read(4)) == 4 and len(by_type.read(12)) == 12
        append(stream_url, "s1", "warm-up")  # the consumer is up once this one arrives
        assert len(by_transfer.read(5)) == 5 and len(by_type.read(13)) == 13
        latencies = []
        for n in range(10):
            append(stream_url, "s2", f"other-{n}")  # filtered out by --transfer s1
            started = time.monotonic()
            append(stream_url, "s1", f"live-{n}")
            acked = time.monotonic()
            assert len(by_transfer.read(6 + n, seconds=5)) == 6 + n
            latencies.append(time.monotonic() - acked)
            assert time.monotonic() - started < 5
        assert len(by_type.read(13 + 20)) == 13 + 20
    finally:
        _, err = by_transfer.stop()
        by_type.stop()
    print(f"tail -f on a URL: append-to-stdout latency max {max(latencies) * 1000:.1f} ms, median {sorted(latencies)[5] * 1000:.1f} ms")
    assert max(latencies) < LATENCY_BOUND
    assert b"Traceback" not in err
    url_lines = {"transfer": by_transfer.lines, "type": by_type.lines}

    # the same records, exported, through the file follower: the same output
    assert run_asup("log", "export", stream_url, "copy.jsonl", cwd=tmp_path).returncode == 0
    for name, args in (("transfer", ["--transfer", "s1"]), ("type", ["--type", "transition"])):
        on_file = Follower("copy.jsonl", *args, "--since", "1", "--poll", cwd=tmp_path)
        try:
            got = on_file.read(len(url_lines[name]) + 1, seconds=3)  # one more than expected: nothing extra arrives
        finally:
            on_file.stop()
        assert got == url_lines[name], name


def test_without_f_a_url_tails_as_a_file_does(tmp_path: Path, stream_url: str) -> None:
    make_log(tmp_path / "a.jsonl", 40)
    assert run_asup("log", "import", "a.jsonl", stream_url, cwd=tmp_path).returncode == 0
    for args in ([], ["-n", "3"], ["-n", "0"], ["--since", "30"], ["--transfer", "s1", "-n", "2"], ["--type", "log_created", "-n", "5"]):
        on_url = run_asup("tail", stream_url, "--json", *args, cwd=tmp_path)
        on_file = run_asup("tail", "a.jsonl", "--json", *args, cwd=tmp_path)
        assert on_url.returncode == on_file.returncode == 0, on_url.stderr
        assert on_url.stdout == on_file.stdout


def test_ctrl_c_and_sigterm_end_a_url_follower_as_they_end_a_file_follower(tmp_path: Path, stream_url: str) -> None:
    make_log(tmp_path / "a.jsonl", 5)
    assert run_asup("log", "import", "a.jsonl", stream_url, cwd=tmp_path).returncode == 0
    for sig in (signal.SIGINT, signal.SIGTERM):
        codes = []
        for log in (stream_url, "a.jsonl"):
            follower = Follower(log, cwd=tmp_path)
            assert len(follower.read(6)) == 6
            time.sleep(0.3)
            follower.proc.send_signal(sig)
            _, err = follower.proc.communicate(timeout=20)
            assert b"Traceback" not in err and err.count(b"\n") <= 1, err
            codes.append(follower.proc.returncode)
        assert codes[0] == codes[1] == 130, (sig, codes)


def test_a_signal_at_any_moment_ends_a_follower_in_one_quiet_exit(tmp_path: Path, stream_url: str) -> None:
    """A signal landing while the follower connects, imports or subscribes (Python's own
    handler raised it wherever it landed: swallowed in a weakref callback the command never
    ended, raised in a task it printed an exception-group traceback) ends it with 130 and
    nothing on stderr, for a stream and for a file."""
    make_log(tmp_path / "a.jsonl", 5)
    assert run_asup("log", "import", "a.jsonl", stream_url, cwd=tmp_path).returncode == 0
    outcomes: Counter[str] = Counter()
    for round_ in range(12):
        for log in (stream_url, "a.jsonl"):
            follower = Follower(log, cwd=tmp_path)
            assert len(follower.read(6)) == 6
            time.sleep((0.0, 0.002, 0.01, 0.03)[round_ % 4])  # inside the reader's open, its imports, its subscribe
            follower.proc.send_signal((signal.SIGINT, signal.SIGTERM)[round_ % 2])
            _, err = follower.proc.communicate(timeout=20)
            assert follower.proc.returncode == 130, (log, round_, err)
            assert err == b"", err
            outcomes["stream" if log == stream_url else "file"] += 1
    report("tail -f signalled at once, while opening, importing or subscribing: ended quietly with 130", outcomes)


def test_an_unreachable_url_is_exit_4_in_one_line_naming_it(tmp_path: Path) -> None:
    url = f"nats://127.0.0.1:{free_port()}/nobody?timeout=1"
    make_log(tmp_path / "a.jsonl", 2)
    for args in (["tail", url], ["tail", url, "-f"], ["log", "export", url, "out.jsonl"], ["log", "import", "a.jsonl", url]):
        started = time.monotonic()
        done = run_asup(*args, cwd=tmp_path)
        one_line_error(done, 4, f"asup: {url}: log_unreachable")
        assert time.monotonic() - started < 1 + 5, args
    assert not (tmp_path / "out.jsonl").exists()


def test_a_follower_whose_server_goes_away_says_so_and_exits_4(tmp_path: Path) -> None:
    make_log(tmp_path / "a.jsonl", 3)
    with own_server(tmp_path / "store") as base:
        url = f"{base}/gone?timeout=2"
        assert run_asup("log", "import", "a.jsonl", url, cwd=tmp_path).returncode == 0
        follower = Follower(url, cwd=tmp_path)
        assert len(follower.read(4)) == 4
        time.sleep(0.3)
    gone = time.monotonic()  # the server is stopped
    _, err = follower.proc.communicate(timeout=30)
    waited = time.monotonic() - gone
    report("tail -f on a nats:// log whose server is stopped (timeout=2)", Counter(exit_4=1, waited_ms=round(waited * 1000)))
    assert follower.proc.returncode == 4, err
    assert err.startswith(f"asup: {url}: log_unreachable".encode()) and err.count(b"\n") == 1 and b"Traceback" not in err
    assert waited < 2 + 4


def test_export_verifies_and_replays_as_the_log_it_came_from(tmp_path: Path, stream_url: str) -> None:
    assert run_asup("log", "demo", "demo.jsonl", cwd=tmp_path).returncode == 0
    assert run_asup("log", "import", "demo.jsonl", stream_url, cwd=tmp_path).returncode == 0
    done = run_asup("log", "export", stream_url, "out.jsonl", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    verified = json.loads(run_asup("log", "verify", "out.jsonl", "--json", cwd=tmp_path).stdout)
    assert verified["ok"] and verified["records"] == summary["records"] and verified["last_seq"] == summary["last_seq"]
    assert summary["last_h"] == json.loads((tmp_path / "demo.jsonl").read_bytes().splitlines()[-1])["h"]
    replays = [run_asup("replay", name, "--json", cwd=tmp_path) for name in ("demo.jsonl", "out.jsonl")]
    assert replays[0].returncode == replays[1].returncode
    assert drop_log(json.loads(replays[0].stdout)) == drop_log(json.loads(replays[1].stdout))
    assert (tmp_path / "out.jsonl").read_bytes() == (tmp_path / "demo.jsonl").read_bytes()


def test_a_file_export_is_a_verified_copy(tmp_path: Path) -> None:
    make_log(tmp_path / "a.jsonl", 30)
    done = run_asup("log", "export", "a.jsonl", "b.jsonl", cwd=tmp_path)
    assert done.returncode == 0 and "31 records, last seq 31" in done.stdout, done.stderr
    assert (tmp_path / "b.jsonl").read_bytes() == (tmp_path / "a.jsonl").read_bytes()
    damaged = (tmp_path / "a.jsonl").read_bytes().replace(b'"e7"', b'"e8"', 1)
    (tmp_path / "bad.jsonl").write_bytes(damaged)
    one_line_error(run_asup("log", "export", "bad.jsonl", "c.jsonl", cwd=tmp_path), 1, "bad.jsonl")
    assert not (tmp_path / "c.jsonl").exists()


@pytest.mark.parametrize("scenario", ["scenarios.jsonl", "demo.jsonl"])
def test_import_then_export_gives_back_the_same_bytes(tmp_path: Path, stream_url: str, scenario: str) -> None:
    shutil.copyfile(GOLDEN / scenario, tmp_path / "in.jsonl")
    done = run_asup("log", "import", "in.jsonl", stream_url, "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = (tmp_path / "in.jsonl").read_bytes().splitlines()
    imported = json.loads(done.stdout)
    assert imported["imported"] == len(lines) and imported["last_seq"] == len(lines)
    assert imported["last_h"] == json.loads(lines[-1])["h"]
    assert run_asup("log", "export", stream_url, "out.jsonl", cwd=tmp_path).returncode == 0
    assert (tmp_path / "out.jsonl").read_bytes() == (tmp_path / "in.jsonl").read_bytes()


def test_an_interrupted_import_resumes_with_only_the_rest(tmp_path: Path, stream_url: str) -> None:
    make_log(tmp_path / "all.jsonl", 2500)
    lines = (tmp_path / "all.jsonl").read_bytes().splitlines(keepends=True)
    (tmp_path / "half.jsonl").write_bytes(b"".join(lines[:1234]))  # what an import cut half-way had stored
    assert json.loads(run_asup("log", "import", "half.jsonl", stream_url, "--json", cwd=tmp_path).stdout)["imported"] == 1234
    done = run_asup("log", "import", "all.jsonl", stream_url, "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["imported"] == len(lines) - 1234
    assert json.loads(run_asup("log", "import", "all.jsonl", stream_url, "--json", cwd=tmp_path).stdout)["imported"] == 0
    assert run_asup("log", "export", stream_url, "out.jsonl", cwd=tmp_path).returncode == 0
    assert (tmp_path / "out.jsonl").read_bytes() == (tmp_path / "all.jsonl").read_bytes()


def test_an_import_killed_mid_way_resumes(tmp_path: Path, stream_url: str) -> None:
    make_log(tmp_path / "all.jsonl", 20000)
    proc = subprocess.Popen(asup_argv("log", "import", "all.jsonl", stream_url), cwd=tmp_path, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    held = 0
    while time.monotonic() < deadline and held == 0 and proc.poll() is None:
        time.sleep(0.05)
        held = stream_last_seq(stream_url)
    proc.kill()
    proc.wait(10)
    held = settled_last_seq(stream_url)
    done = run_asup("log", "import", "all.jsonl", stream_url, "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    imported = json.loads(done.stdout)["imported"]
    report(
        "asup log import SIGKILLed mid-way, then run again", Counter(records=20001, stored_before_the_kill=held, rerun_imported=imported)
    )
    assert 0 < held < 20001 and imported == 20001 - held
    assert run_asup("log", "export", stream_url, "out.jsonl", cwd=tmp_path).returncode == 0
    assert (tmp_path / "out.jsonl").read_bytes() == (tmp_path / "all.jsonl").read_bytes()


def test_export_refuses_an_existing_out_and_never_follows_a_planted_link(tmp_path: Path, stream_url: str) -> None:
    make_log(tmp_path / "a.jsonl", 3)
    assert run_asup("log", "import", "a.jsonl", stream_url, cwd=tmp_path).returncode == 0
    (tmp_path / "there.jsonl").write_bytes(b"keep me\n")
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "target.jsonl")
    for out in ("there.jsonl", "link.jsonl"):
        for source in (stream_url, "a.jsonl"):
            one_line_error(run_asup("log", "export", source, out, cwd=tmp_path), 2, f"asup: {out}: usage: already exists")
    assert (tmp_path / "there.jsonl").read_bytes() == b"keep me\n"
    assert not (tmp_path / "target.jsonl").exists()
    report("asup log export onto a taken name (a file, a symlink; from a URL and a file)", Counter(refused=4, replaced=0, followed=0))


def test_a_failed_export_leaves_no_partial_file(tmp_path: Path, stream_url: str) -> None:
    make_log(tmp_path / "a.jsonl", 3)
    assert run_asup("log", "import", "a.jsonl", stream_url, cwd=tmp_path).returncode == 0
    publish_raw(stream_url, "s0", b'{"not": "a record"}')
    one_line_error(run_asup("log", "export", stream_url, "out.jsonl", cwd=tmp_path), 1, f"asup: {stream_url}:5: corrupt_record")
    assert not (tmp_path / "out.jsonl").exists()


def test_import_refuses_a_damaged_file_and_publishes_nothing(tmp_path: Path, stream_url: str) -> None:
    make_log(tmp_path / "a.jsonl", 10)
    data = (tmp_path / "a.jsonl").read_bytes()
    (tmp_path / "flip.jsonl").write_bytes(data.replace(b'"e5"', b'"e6"', 1))
    (tmp_path / "torn.jsonl").write_bytes(data[:-7])
    for name in ("flip.jsonl", "torn.jsonl"):
        verify = run_asup("log", "verify", name, cwd=tmp_path)
        done = run_asup("log", "import", name, stream_url, cwd=tmp_path)
        one_line_error(done, 1, f"asup: {name}:")
        assert verify.returncode == 1 and done.stderr.removeprefix("asup: ").strip() in verify.stdout
    one_line_error(run_asup("log", "export", stream_url, "out.jsonl", cwd=tmp_path), 2, "log_not_found")


def test_import_refuses_a_stream_holding_another_log(tmp_path: Path, stream_url: str) -> None:
    make_log(tmp_path / "a.jsonl", 5)
    make_log(tmp_path / "b.jsonl", 5, streams=2)
    assert run_asup("log", "import", "a.jsonl", stream_url, cwd=tmp_path).returncode == 0
    one_line_error(run_asup("log", "import", "b.jsonl", stream_url, cwd=tmp_path), 1, "not this log")
    assert run_asup("log", "export", stream_url, "out.jsonl", cwd=tmp_path).returncode == 0
    assert (tmp_path / "out.jsonl").read_bytes() == (tmp_path / "a.jsonl").read_bytes()
    one_line_error(run_asup("log", "import", "a.jsonl", "b.jsonl", cwd=tmp_path), 2, "nats:// URL")


# --- helpers ------------------------------------------------------------------------


def drop_log(report: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in report.items() if key not in ("log", "path")}


def settled_last_seq(url: str) -> int:
    """The stream's last seq once it stops moving: a batch the killed importer sent before it
    died may still be committed by the server after the process is gone (2.12+ atomic batches)."""
    last, since = stream_last_seq(url), time.monotonic()
    while time.monotonic() - since < 1.0:
        time.sleep(0.1)
        now = stream_last_seq(url)
        if now != last:
            last, since = now, time.monotonic()
    return last


def stream_last_seq(url: str) -> int:
    from events.jetstream.bridge import bridge
    from events.jetstream.client import Connection
    from events.jetstream.url import parse

    conn = Connection(parse(url))
    b = bridge()
    b.call(conn.connect(), 10)
    try:
        info = b.call(conn.api(f"STREAM.INFO.{parse(url).stream}"), 10)
    except Exception:
        return 0
    finally:
        b.call(conn.close(), 10)
    return int(info["state"]["last_seq"])


def publish_raw(url: str, stream: str, payload: bytes) -> None:
    """A message no asup writer would publish, under the log's own subjects."""
    from events.jetstream.bridge import bridge
    from events.jetstream.client import Connection
    from events.jetstream.url import parse

    parsed = parse(url)
    conn = Connection(parsed)
    b = bridge()
    b.call(conn.connect(), 10)
    try:
        b.call(conn.publish(parsed.subject(stream), payload, {}), 10)
    finally:
        b.call(conn.close(), 10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_binary() -> str:
    beside = Path(sys.executable).parent / "nats-server"
    found = str(beside) if beside.exists() else shutil.which("nats-server") or "/usr/sbin/nats-server"
    if not Path(found).exists():
        pytest.skip("no nats-server")
    return found


@contextlib.contextmanager
def own_server(store: Path) -> Iterator[str]:
    """A server of this test's own, on 127.0.0.1 and a free port (its URL): stopped when the block ends."""
    port = free_port()
    proc = subprocess.Popen(
        [server_binary(), "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not port_open(port):
            if time.monotonic() > deadline:
                raise RuntimeError("nats-server did not start")
            time.sleep(0.05)
        yield f"nats://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0
