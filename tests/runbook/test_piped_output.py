"""Output a pipe can use: plain columns, one row per line, never wrapped; a closed pipe ends
the command quietly (exit 141, as a Unix tool killed by SIGPIPE), not with an error line."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from events.jsonl_log import JsonlLog
from events.payloads import Transition
from events.store import Pending
from events.testing import transition
from events.vocabulary import ReasonCode, State, Trigger
from tests.cli import asup_argv, run_asup

LONG_ID = "ledger-" + "x" * 150


def make_log(path: Path) -> None:
    failed = Transition(
        transfer_id=LONG_ID,
        from_state=State.SYNCING,
        trigger=Trigger.RETRY_BUDGET_EXCEEDED,
        to_state=State.FAILED_CLOSED,
        attempt=3,
        committed_cursor=0,
        reason_code=ReasonCode.RETRY_EXHAUSTED,
    )
    with JsonlLog.open(path) as log:
        log.append_batch([Pending("ok-1", transition("ok-1", 0)), Pending(LONG_ID, failed)])


def test_a_piped_status_has_one_line_per_row_so_grep_finds_it(tmp_path: Path) -> None:
    make_log(tmp_path / "a.jsonl")
    done = run_asup("status", "a.jsonl", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    rows = [row for row in done.stdout.splitlines() if LONG_ID in row and "failed_closed" in row]  # not its cause's row
    assert len(rows) == 1 and "failed_closed" in rows[0] and "retry_exhausted" in rows[0]
    assert not any(ch in done.stdout for ch in "│┃━─"), "a table border reached a pipe"
    header = next(row for row in done.stdout.splitlines() if row.startswith("transfer "))
    assert rows[0].index("failed_closed") == header.index("state")  # columns aligned under their header


def test_status_filters_and_refuses_a_filter_that_names_nothing(tmp_path: Path) -> None:
    make_log(tmp_path / "a.jsonl")
    failed = run_asup("status", "a.jsonl", "--state", "failed_closed", cwd=tmp_path).stdout
    assert LONG_ID in failed and "ok-1" not in failed
    assert "ok-1" in run_asup("status", "a.jsonl", "--transfer", "ok-1", cwd=tmp_path).stdout
    assert LONG_ID not in run_asup("status", "a.jsonl", "--reason", "conflict_detected", cwd=tmp_path).stdout
    typo = run_asup("status", "a.jsonl", "--state", "failed", cwd=tmp_path)
    assert typo.returncode == 2 and "is not a state" in typo.stderr


def test_a_closed_pipe_ends_the_command_quietly(tmp_path: Path) -> None:
    path = tmp_path / "big.jsonl"
    with JsonlLog.open(path) as log:
        log.append_batch([Pending(f"s{i % 7}", transition(f"e{i}", i)) for i in range(3000)])  # ~2 MB: more than a pipe holds
    argv = asup_argv("tail", "big.jsonl", "--since", "1")
    with subprocess.Popen(argv, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline().startswith(b'{"type":"log_created"')
        proc.stdout.close()  # what `| head -1` does
        err = proc.stderr.read()
        assert proc.wait(timeout=60) == 141
    assert err == b""


def test_no_color_means_no_escape_codes_at_all(tmp_path: Path) -> None:
    """NO_COLOR used to drop the colours but keep bold and dim."""
    make_log(tmp_path / "a.jsonl")
    env = {**os.environ, "NO_COLOR": "1", "TTY_COMPATIBLE": "1", "COLUMNS": "200"}  # a terminal, so styles would apply
    shown = subprocess.run(asup_argv("status", "a.jsonl"), cwd=tmp_path, env=env, capture_output=True, timeout=60, check=False)
    assert b"\x1b[" not in shown.stdout and b"failed_closed" in shown.stdout
    styled = subprocess.run(
        asup_argv("status", "a.jsonl"), cwd=tmp_path, env={**env, "NO_COLOR": ""}, capture_output=True, timeout=60, check=False
    )
    assert b"\x1b[" in styled.stdout  # the check above can fail: a terminal does get styles
