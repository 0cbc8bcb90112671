"""`asup resume TRANSFER_ID`: what it refuses and what it leaves alone, each through a real
process (the signal tests in test_signals.py resume suspended transfers to completion)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import anyio

from engine.adapter import SyncAdapter
from engine.appender import DirectAppender
from engine.intent import build_intent
from engine.machine import make_dispatcher
from engine.stop import StopRequest
from engine.stores import DirectoryStore
from events.jsonl_log import JsonlLog
from events.vocabulary import Mode
from tests.cli import run_asup

CLASS = ["--artifact-class", "conformance_fixture_bundle", "--mode"]


def _source(tmp_path: Path) -> Path:
    source = tmp_path / "src" / "a.bin"
    source.parent.mkdir(parents=True, exist_ok=True)
    source.write_bytes(random.Random(9).randbytes(5 * 4096 + 7))
    return source


def test_a_completed_transfer_is_left_alone_and_nothing_is_recorded(tmp_path: Path) -> None:
    """Exit 0 saying it is completed; the log's bytes do not change, plain or --json."""
    source = _source(tmp_path)
    done = run_asup("sync", str(source), "dst/a.bin", *CLASS, "hardened", "--log", "log.jsonl", "--transfer-id", "t-1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    before = (tmp_path / "log.jsonl").read_bytes()
    again = run_asup("resume", "t-1", "--log", "log.jsonl", cwd=tmp_path)
    assert (again.returncode, again.stdout, again.stderr) == (0, "t-1: already completed; nothing to resume (log log.jsonl)\n", "")
    as_json = run_asup("resume", "t-1", "--log", "log.jsonl", "--json", cwd=tmp_path)
    assert as_json.returncode == 0
    assert {k: v for k, v in json.loads(as_json.stdout).items() if k != "schema"} == {
        "transfer_id": "t-1",
        "state": "completed",
        "resumed": False,
        "log": "log.jsonl",
    }
    assert (tmp_path / "log.jsonl").read_bytes() == before


def test_an_unknown_transfer_or_a_missing_log_is_a_usage_error_naming_the_log(tmp_path: Path) -> None:
    """Exit 2, one line naming the log; nothing is created."""
    source = _source(tmp_path)
    assert run_asup("sync", str(source), "dst/a.bin", *CLASS, "hardened", "--log", "log.jsonl", cwd=tmp_path).returncode == 0
    before = (tmp_path / "log.jsonl").read_bytes()
    unknown = run_asup("resume", "t-nope", "--log", "log.jsonl", cwd=tmp_path)
    assert unknown.returncode == 2
    assert unknown.stderr == "asup: log.jsonl: usage: no transfer 't-nope' in this log (asup status lists them)\n"
    assert (tmp_path / "log.jsonl").read_bytes() == before
    missing = run_asup("resume", "t-nope", "--log", "none.jsonl", cwd=tmp_path)
    assert missing.returncode == 2 and missing.stderr.startswith("asup: none.jsonl: log_not_found")
    assert not (tmp_path / "none.jsonl").exists()


def test_a_failed_transfer_is_not_resumed(tmp_path: Path) -> None:
    """A transfer that failed closed is for triage: exit 2 naming the reason and the triage command; nothing recorded."""
    source = _source(tmp_path)
    argv = ["sync", str(source), "dst/a.bin", *CLASS, "strict", "--log", "log.jsonl", "--transfer-id", "t-f", "--fault", "interruption@0"]
    assert run_asup(*argv, cwd=tmp_path).returncode == 1
    before = (tmp_path / "log.jsonl").read_bytes()
    refused = run_asup("resume", "t-f", "--log", "log.jsonl", cwd=tmp_path)
    assert refused.returncode == 2
    assert "failed closed (retry_exhausted): nothing to resume; see asup triage log.jsonl" in refused.stderr
    assert (tmp_path / "log.jsonl").read_bytes() == before


def test_an_intent_without_paths_is_a_usage_error_saying_which(tmp_path: Path) -> None:
    """A library caller's intent records no paths: exit 2 naming the missing fields and the sync --resume way; nothing recorded."""
    source = _source(tmp_path)
    store = DirectoryStore(source.parent)
    intent = build_intent(store, "a.bin", "a.bin", artifact_class="conformance_fixture_bundle", mode=Mode.HARDENED, seed=1, chunk_size=4096)
    stop = StopRequest()
    stop.request("SIGINT")
    (tmp_path / "dst").mkdir()
    with JsonlLog.open(tmp_path / "log.jsonl") as log:
        adapter = SyncAdapter(
            appender=DirectAppender(log), source=store, target=DirectoryStore(tmp_path / "dst"), dispatcher=make_dispatcher(True), stop=stop
        )
        assert anyio.run(adapter.run, intent, None).suspended
    before = (tmp_path / "log.jsonl").read_bytes()
    refused = run_asup("resume", intent.transfer_id, "--log", "log.jsonl", cwd=tmp_path)
    assert refused.returncode == 2
    assert "records no source_path or target_path" in refused.stderr and "asup sync SRC DST --resume CHECKPOINT" in refused.stderr
    assert len(refused.stderr.splitlines()) == 1
    assert (tmp_path / "log.jsonl").read_bytes() == before


def test_the_help_has_an_example(tmp_path: Path) -> None:
    """`asup resume --help` shows how it is called."""
    shown = run_asup("resume", "--help", cwd=tmp_path)
    assert shown.returncode == 0 and "Example: asup resume" in shown.stdout
