"""A transfer rerun under the same id (a new session in the same stream) is judged by its
latest session: a rerun that completes no longer carries the earlier failure's reason."""

from __future__ import annotations

import json
import os
from pathlib import Path

from typer.testing import CliRunner

from runbook.cli import app

RUNNER = CliRunner()


def _sync(tmp_path: Path, log: Path, *extra: str) -> int:
    argv = ["sync", str(tmp_path / "src.bin"), str(tmp_path / "dst" / "out.bin"), "--log", str(log)]
    argv += ["--artifact-class", "conformance_fixture_bundle", "--mode", "hardened", "--max-attempts", "1", "--chunk-size", "4096", *extra]
    return RUNNER.invoke(app, argv).exit_code


def _status(log: Path) -> dict[str, object]:
    result = RUNNER.invoke(app, ["status", str(log), "--json"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    (row,) = document["transfers"]["transfers"]
    assert isinstance(row, dict)
    return row


def test_a_completed_rerun_does_not_keep_the_failed_sessions_reason(tmp_path: Path) -> None:
    """Session 1 fails closed (retry_exhausted); session 2, same transfer id, completes: the
    status row says completed with no reason code, over 2 sessions."""
    (tmp_path / "src.bin").write_bytes(os.urandom(20_000))
    (tmp_path / "dst").mkdir()
    log = tmp_path / "x.jsonl"
    assert _sync(tmp_path, log, "--fault", "interruption@0,interruption@0") == 1
    failed = _status(log)
    assert (failed["state"], failed["reason_code"], failed["sessions"]) == ("failed_closed", "retry_exhausted", 1)
    assert _sync(tmp_path, log) == 0
    rerun = _status(log)
    assert (rerun["transfer_id"], rerun["state"], rerun["reason_code"], rerun["sessions"]) == (failed["transfer_id"], "completed", None, 2)
    assert rerun["verified_digest"] is not None


def test_escalation_keeps_the_incident_and_says_a_rerun_recovered_it(tmp_path: Path) -> None:
    """The retry_exhausted incident still fires P2 after a completed rerun (the log holds it),
    and its detail and evidence name the seq at which a later session completed the transfer."""
    (tmp_path / "src.bin").write_bytes(os.urandom(20_000))
    (tmp_path / "dst").mkdir()
    log = tmp_path / "x.jsonl"
    assert _sync(tmp_path, log, "--fault", "interruption@0,interruption@0") == 1
    before = json.loads(RUNNER.invoke(app, ["escalate", str(log), "--json"]).stdout)
    (rule,) = before["rules"]
    assert "later session" not in rule["detail"] and "completed_later_at_seq" not in rule["evidence"][0]
    assert _sync(tmp_path, log) == 0
    after = json.loads(RUNNER.invoke(app, ["escalate", str(log), "--json"]).stdout)
    (rule,) = after["rules"]
    last = _status(log)["last_seq"]
    assert (after["level"], rule["rule"]) == ("P2", "failed_closed_retry_exhausted")
    assert rule["evidence"][0]["completed_later_at_seq"] == last
    assert rule["detail"].endswith(f"(a later session completed it, seq {last})")
