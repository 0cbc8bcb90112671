"""The checklist and the evidence pack cover nats:// logs given with --log (or asup.toml's
`logs`): the stream is verified and re-driven like a file, its head is sealed in the pack,
and a stream that no longer holds the sealed record at the sealed seq is drift."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from events.jetstream.log import JetStreamLog
from events.jetstream.url import parse
from tests.cli import run_asup
from tests.nats.servers import NatsServer

pytestmark = pytest.mark.nats


def _asup(cwd: Path, *args: str) -> Any:
    done = run_asup(*args, cwd=cwd)
    assert "Traceback" not in done.stderr
    return done


def _logs_item(cwd: Path, root: Path, *args: str) -> dict[str, Any]:
    done = _asup(cwd, "checklist", "--root", str(root), "--json", *args)
    items = {item["id"]: item for item in json.loads(done.stdout)["items"]}
    return dict(items["logs_replayable"])


def test_a_stream_is_covered_and_its_head_sealed(nats_server: NatsServer, tmp_path: Path) -> None:
    url = f"{nats_server.url}/EVIDENCE"
    root = tmp_path / "root"
    ran = _asup(tmp_path, "scenario", "run", "all", "--log", url, "--root", str(root))
    assert ran.returncode in (0, 1), ran.stderr  # scenarios fail closed on purpose: exit 1 is theirs
    item = _logs_item(tmp_path, root, "--log", url)
    ours = [fact for fact in item["evidence"] if fact["path"] == url]
    assert len(ours) == 1 and ours[0]["ok"] and ours[0]["streams"] == ours[0]["reproduced"] > 0
    assert "asup-snapshot" not in json.dumps(item)

    built = _asup(tmp_path, "evidence", "build", "--root", str(root), "--log", url, "--json")
    assert built.returncode == 0, built.stderr
    pack = json.loads(Path(json.loads(built.stdout)["pack"]).read_text())
    with JetStreamLog.open(url, reader=True) as log:
        seq, h = log.head()
    assert {"path": url, "last_seq": seq, "last_h": h} in pack["log_heads"]

    (tmp_path / "asup.toml").write_text(f'logs = ["{url}"]\n')  # the same, from the config file
    assert any(fact["path"] == url for fact in _logs_item(tmp_path, root)["evidence"])


def test_a_rewritten_stream_is_drift(nats_server: NatsServer, tmp_path: Path) -> None:
    url = f"{nats_server.url}/REWRITTEN"
    root = tmp_path / "root"
    _asup(tmp_path, "scenario", "run", "all", "--log", url, "--root", str(root))
    assert _asup(tmp_path, "evidence", "build", "--root", str(root), "--log", url).returncode == 0
    with JetStreamLog.open(url, reader=True) as log:
        log._run(log._conn.api(f"STREAM.DELETE.{parse(url).stream}"))  # an operator's delete: what the pack sealed is gone
    _asup(tmp_path, "scenario", "run", "all", "--log", url + "?timeout=5", "--root", str(tmp_path / "other"), "--seed", "9")
    done = _asup(tmp_path, "checklist", "--root", str(root), "--log", url, "--json")
    items = {item["id"]: item for item in json.loads(done.stdout)["items"]}
    assert items["pack_current"]["status"] == "fail"
    assert url in items["pack_current"]["reason"]


def test_log_takes_urls_only_here(tmp_path: Path) -> None:
    done = _asup(tmp_path, "checklist", "--root", str(tmp_path), "--log", str(tmp_path / "a.jsonl"))
    assert done.returncode == 2
    assert "--log here takes a nats:// URL" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
