"""The reading verbs on a `nats://` URL, in real processes against a real server: each prints
on the URL what it prints on the same log as a file (bar the log's name), exits the same,
and every error is one line naming the URL."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from events.jetstream.bridge import bridge
from events.jetstream.client import Connection
from events.jetstream.log import JetStreamLog
from events.jetstream.url import parse
from events.log_ref import write_snapshot
from tests.cli import asup_argv
from tests.reliability.crashloop import report

pytestmark = pytest.mark.nats

# every verb that reads a log, with the options that change what it prints
READING = [
    ["log", "verify"],
    ["log", "verify", "--json"],
    ["log", "stats"],
    ["log", "stats", "--json"],
    ["log", "cat"],
    ["log", "cat", "--json"],
    ["log", "cat", "--stream", "retry_exhausted-7", "--type", "transition"],
    ["status"],
    ["status", "--json"],
    ["status", "--until", "100", "--state", "failed_closed"],
    ["trace"],
    ["trace", "--transfer", "success-7"],
    ["escalate"],
    ["escalate", "--json"],
    ["replay"],
    ["replay", "--json"],
    ["replay", "--transfer", "retry_exhausted-7", "--until", "200"],
]
VERBS = (["log", "verify"], ["log", "stats"], ["log", "cat"], ["log", "repair"], ["status"], ["trace"], ["escalate"], ["replay"])
READERS = tuple(verb for verb in VERBS if verb[-1] != "repair")


def asup(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`asup ARGS` in a real process; never a traceback, never the snapshot's temp name."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "NO_COLOR")}
    result = subprocess.run(asup_argv(*args), cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)
    assert "Traceback" not in result.stderr, result.stderr
    assert "asup-snapshot" not in result.stdout + result.stderr, result.stdout + result.stderr
    return result


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture(scope="session")
def scenarios_jsonl(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A log of real transfers, every scenario's (written once: its bytes go to each stream)."""
    folder = tmp_path_factory.mktemp("scenarios")
    result = asup("scenario", "run", "all", "--log", "scenarios.jsonl", "--root", "root", cwd=folder)
    assert result.returncode == 0, result.stderr
    return folder / "scenarios.jsonl"


def to_stream(url: str, jsonl: Path) -> None:
    with JetStreamLog.open(url, create=True, header=False) as log:
        assert log.import_lines(jsonl.read_bytes().splitlines()) > 0


class Logs:
    """The same log twice: on a stream (`url`) and as the file exported from it (`file`)."""

    def __init__(self, url: str, file: Path) -> None:
        self.url, self.file = url, file

    def same(self, *args: str, cwd: Path, after: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
        """Run `asup ARGS LOG AFTER` on both; assert equal output and exit, the name aside."""
        on_url = asup(*args, self.url, *after, cwd=cwd)
        on_file = asup(*args, str(self.file), *after, cwd=cwd)
        shown = f"asup {' '.join(args)} LOG {' '.join(after)}"
        assert on_url.returncode == on_file.returncode, (shown, on_url.stderr, on_file.stderr)
        assert on_url.stdout.replace(self.url, "LOG") == on_file.stdout.replace(str(self.file), "LOG"), shown
        assert on_url.stderr.replace(self.url, "LOG") == on_file.stderr.replace(str(self.file), "LOG"), shown
        return on_url


@pytest.fixture
def logs(nats_server: Any, scenarios_jsonl: Path, tmp_path: Path) -> Logs:
    url = f"{nats_server.url}/scenarios"
    to_stream(url, scenarios_jsonl)
    exported = tmp_path / "exported.jsonl"
    write_snapshot(parse(url), exported)
    assert exported.read_bytes() == scenarios_jsonl.read_bytes()
    return Logs(url, exported)


def test_every_reading_verb_prints_on_a_url_what_it_prints_on_the_file(logs: Logs, tmp_path: Path) -> None:
    """verify, stats, cat, status, trace, escalate and replay, human and --json: the same
    output and exit code on the stream and on its export, the log's name aside."""
    exits: dict[str, int] = {}
    for verb in READING:
        split = 2 if verb[0] == "log" else 1  # the log goes right after the verb, options after it
        result = logs.same(*verb[:split], cwd=tmp_path, after=tuple(verb[split:]))
        exits[" ".join(verb)] = result.returncode
        if "--json" in verb and verb[-1] == "--json" and verb[:2] != ["log", "cat"]:
            document = json.loads(result.stdout)
            assert logs.url in (document.get("log"), *document.get("logs", ())), verb
    assert exits["log verify"] == 0 and exits["replay"] == 0 and exits["escalate"] == 1  # the scenarios fail closed: P1
    report("reading verbs on a nats:// URL", Counter({"command lines compared with the file": len(READING)}))


def test_trace_to_a_file_and_replay_trace_are_the_same_bytes(logs: Logs, tmp_path: Path) -> None:
    """`-o` / `--trace` write the same trace from the stream as from the file."""
    for verb, flag in (("trace", "-o"), ("replay", "--trace")):
        for name, log in (("url", logs.url), ("file", str(logs.file))):
            result = asup(verb, log, flag, f"{verb}-{name}.jsonl", cwd=tmp_path)
            assert result.returncode == 0, result.stderr
        assert (tmp_path / f"{verb}-url.jsonl").read_bytes() == (tmp_path / f"{verb}-file.jsonl").read_bytes()


def test_diff_takes_a_url_on_either_side(logs: Logs, nats_server: Any, tmp_path: Path) -> None:
    """URL against file, file against URL, URL against URL: same streams; a stream holding
    another log differs from it exactly as the two files do."""
    for a, b in ((logs.url, str(logs.file)), (str(logs.file), logs.url), (logs.url, logs.url)):
        result = asup("diff", a, b, cwd=tmp_path)
        assert result.returncode == 0 and result.stdout.startswith("summary: same "), result.stdout + result.stderr
    document = json.loads(asup("diff", logs.url, str(logs.file), "--json", cwd=tmp_path).stdout)
    assert (document["a"], document["b"]) == (logs.url, str(logs.file))
    other = tmp_path / "other"
    other.mkdir()
    assert asup("scenario", "run", "success", "--log", "ok.jsonl", "--root", "root", cwd=other).returncode == 0
    other_url = f"{nats_server.url}/other"
    to_stream(other_url, other / "ok.jsonl")
    on_urls = asup("diff", logs.url, other_url, cwd=tmp_path)
    on_files = asup("diff", str(logs.file), str(other / "ok.jsonl"), cwd=tmp_path)
    assert on_urls.returncode == on_files.returncode == 1
    assert on_urls.stdout == on_files.stdout


def test_triage_of_a_url_is_triage_of_the_file(nats_server: Any, tmp_path: Path) -> None:
    """A retry_exhausted log on a stream: the same failures, steps and commands, which name the URL."""
    source = tmp_path / "source"
    source.mkdir()
    assert asup("scenario", "run", "retry_exhausted", "--log", "re.jsonl", "--root", "root", cwd=source).returncode == 0
    url = f"{nats_server.url}/triaged"
    to_stream(url, source / "re.jsonl")
    outputs = {}
    for name, log in (("url", url), ("file", str(source / "re.jsonl"))):
        where = tmp_path / name
        where.mkdir()
        human = asup("triage", log, "--root", "root", cwd=where)
        machine = asup("triage", log, "--root", "root", "--json", cwd=where)
        assert human.returncode == machine.returncode == 0, human.stderr
        outputs[name] = (human.stdout.replace(log, "LOG"), machine.stdout.replace(log, "LOG"))
        document = json.loads(machine.stdout)
        assert document["target"] == log
        assert f"asup replay {log} --transfer retry_exhausted-7" in [s["command"] for s in document["steps"]]
    assert outputs["url"] == outputs["file"]


def publish_raw(url: str, subject_tail: str, data: bytes) -> int:
    """Publish `data` on the log's subjects as another tool could: the stream sequence it got."""
    parsed = parse(url)
    conn = Connection(parsed)
    bridge().call(conn.connect(), 10)
    try:
        ack = bridge().call(conn.publish(f"asup.{parsed.stream}.{subject_tail}", data, {}), 10)
    finally:
        bridge().call(conn.nc.close(), 10)
    return int(ack["seq"])


def test_a_corrupt_message_is_damage_at_its_seq(logs: Logs, tmp_path: Path) -> None:
    """A message that is no record, published on an asup subject: verify exits 1 naming the
    URL and the seq, after what it verified; every reader exits 1 on it with the same line."""
    records = len(logs.file.read_bytes().splitlines())
    seq = publish_raw(logs.url, "intruder", b'{"not": "a record"}')
    assert seq == records + 1
    where = f"{logs.url}:{seq}: corrupt_record"
    human = asup("log", "verify", logs.url, cwd=tmp_path)
    assert human.returncode == 1 and human.stderr == ""
    first, problem = human.stdout.splitlines()[:2]
    assert first == f"{logs.url}: DAMAGED — {records} records, 18 streams, last seq {records}"
    assert problem.startswith(f"  first problem: {where}") and f"(seq {seq})" in problem
    document = json.loads(asup("log", "verify", logs.url, "--json", cwd=tmp_path).stdout)
    assert document["ok"] is False and document["records"] == records and document["last_seq"] == records
    assert document["problem"]["line"] == seq and document["problem"]["kind"] == "corrupt"
    assert document["problem"]["message"].startswith(where)
    for verb in (["log", "stats"], ["log", "cat"], ["trace"], ["diff", str(logs.file)]):
        result = asup(*verb, logs.url, cwd=tmp_path)
        assert result.returncode == 1 and one_line(result).startswith(f"asup: {where}"), (verb, result.stderr)
    for verb in (["status"], ["replay"], ["escalate"]):  # they report what they read up to it, and the damage
        result = asup(*verb, logs.url, cwd=tmp_path)
        assert result.returncode == 1 and where in result.stdout, (verb, result.stdout, result.stderr)
    assert asup("log", "repair", logs.url, cwd=tmp_path).returncode == 2  # never cut: verify said what is wrong
    report("a corrupt message on a stream", Counter({"readers exit 1 at its seq": 8}))


def test_an_unknown_stream_is_no_such_log(nats_server: Any, tmp_path: Path) -> None:
    """A server without the stream: exit 2, one line "no such log" naming the URL; nothing created."""
    url = f"{nats_server.url}/nothing_here"
    for verb in (*READERS, ["triage"], ["diff", url]):
        result = asup(*verb, url, cwd=tmp_path)
        assert result.returncode == 2, (verb, result.stderr)
        line = one_line(result)
        assert line.startswith(f"asup: {url}: log_not_found: no such log"), (verb, line)
    with pytest.raises(Exception, match="no such log"):
        JetStreamLog.open(url, create=False, reader=True).close()


BAD_URLS = ("nats://x/", "nats://h:1/a.b", "nats://127.0.0.1:0/s", "nats://h:1/s?replicas=nine", "nats:/h:1/s", "NATS://h:1/s")


def test_a_malformed_url_is_one_usage_line(tmp_path: Path) -> None:
    """Refused before any connection: exit 2, one line naming the URL (each verb meets one
    of the malformed URLs; diff on either side, triage too)."""
    cases = [(verb, BAD_URLS[n % len(BAD_URLS)]) for n, verb in enumerate(VERBS)]
    cases += [(["diff", "x.jsonl"], BAD_URLS[0]), (["triage"], BAD_URLS[1])]
    for verb, bad in cases:
        result = asup(*verb, bad, cwd=tmp_path)
        assert result.returncode == 2 and one_line(result).startswith(f"asup: {bad}: usage: not a log URL"), (verb, result.stderr)
    result = asup("diff", BAD_URLS[2], "x.jsonl", cwd=tmp_path)
    assert result.returncode == 2 and one_line(result).startswith(f"asup: {BAD_URLS[2]}: usage: not a log URL")
    report("malformed nats:// URLs", Counter({"command lines refused": len(cases) + 1}))


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_server_is_exit_4_within_the_timeout(tmp_path: Path) -> None:
    """Nothing listening: exit 4, one line naming the URL, within about the URL's timeout
    (process start-up aside), for every reading verb."""
    url = f"nats://127.0.0.1:{closed_port()}/s?timeout=1"
    started = time.monotonic()
    assert asup("log", "verify", "missing.jsonl", cwd=tmp_path).returncode == 2
    start_up = time.monotonic() - started  # what any asup process costs on this machine now
    slowest = 0.0
    for verb in (*READERS, ["triage"]):
        started = time.monotonic()
        result = asup(*verb, url, cwd=tmp_path, timeout=30)
        slowest = max(slowest, time.monotonic() - started)
        assert result.returncode == 4, (verb, result.stderr)
        assert one_line(result).startswith(f"asup: {url}: log_unreachable"), (verb, result.stderr)
    result = asup("diff", str(tmp_path / "missing.jsonl"), url, cwd=tmp_path)
    assert result.returncode == 2 and "no such log file" in one_line(result)  # a's error first, as for two files
    report("an unreachable nats:// URL", Counter({"commands exit 4": 8}))
    assert slowest < start_up + 3.0, f"an unreachable URL took {slowest:.1f}s (a process {start_up:.1f}s)"


def test_a_missing_file_keeps_its_errors(tmp_path: Path) -> None:
    """Neither a file nor a URL: today's one line, exit 2."""
    for verb in (*VERBS, ["diff", "missing.jsonl"]):
        result = asup(*verb, "missing.jsonl", cwd=tmp_path)
        assert result.returncode == 2 and one_line(result) == "asup: missing.jsonl: log_not_found: no such log file", (verb, result.stderr)


def test_repair_of_a_url_is_a_usage_error(logs: Logs, tmp_path: Path) -> None:
    """A JetStream log is never cut: one usage line naming `asup log verify URL`, and the stream is untouched."""
    before = logs.file.read_bytes()
    for extra in ((), ("--force-tail",), ("--json",)):
        result = asup("log", "repair", logs.url, *extra, cwd=tmp_path)
        assert result.returncode == 2
        assert one_line(result) == (
            f"asup: {logs.url}: usage: a JetStream log is never cut: nothing to repair; asup log verify {logs.url} says what is wrong"
        )
    again = tmp_path / "again.jsonl"
    write_snapshot(parse(logs.url), again)
    assert again.read_bytes() == before


def test_help_says_a_url_is_taken_and_keeps_its_example(tmp_path: Path) -> None:
    for verb in (*READERS, ["diff"], ["triage"]):
        result = asup(*verb, "--help", cwd=tmp_path)
        flat = " ".join(result.stdout.replace("│", " ").split())
        assert result.returncode == 0 and "nats://HOST:PORT/STREAM" in flat and "Example: asup " in flat, verb
