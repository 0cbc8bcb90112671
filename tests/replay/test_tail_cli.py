"""`asup tail` as a Unix user expects it: the last 10 records, `-n N` read from the end (each
record's digest and the chain within the window checked), filters and paths validated,
`-F` following a log by name across its creation and replacement."""

from __future__ import annotations

import json
import os
import select
import subprocess
import time
from pathlib import Path

import pytest

from events.jsonl_log import JsonlLog, drop_side_files
from events.store import Pending
from events.testing import transition
from tests.cli import asup_argv, run_asup


def make_log(path: Path, events: int, streams: int = 3) -> None:
    with JsonlLog.open(path) as log:
        log.append_batch([Pending(f"s{i % streams}", transition(f"e{i}", i)) for i in range(events)])


def seqs(stdout: str) -> list[int]:
    return [json.loads(line)["seq"] for line in stdout.splitlines()]


def test_the_last_ten_records_by_default_and_n_from_the_end(tmp_path: Path) -> None:
    make_log(tmp_path / "a.jsonl", 40)
    assert seqs(run_asup("tail", "a.jsonl", cwd=tmp_path).stdout) == list(range(32, 42))
    assert seqs(run_asup("tail", "a.jsonl", "-n", "3", cwd=tmp_path).stdout) == [39, 40, 41]
    assert seqs(run_asup("tail", "a.jsonl", "-n", "0", cwd=tmp_path).stdout) == []
    assert seqs(run_asup("tail", "a.jsonl", "--since", "30", cwd=tmp_path).stdout) == list(range(30, 42))
    assert seqs(run_asup("tail", "a.jsonl", "--transfer", "s1", "-n", "2", cwd=tmp_path).stdout) == [36, 39]


def test_n_reads_from_the_end_so_damage_far_before_it_is_not_read(tmp_path: Path) -> None:
    """A window of the last records is read: the flipped byte in record 5 of 3,000 is outside it
    (a full read names it), so `-n 1` answers from the end of the file."""
    path = tmp_path / "a.jsonl"
    make_log(path, 3000)
    lines = path.read_bytes().split(b"\n")
    lines[4] = lines[4].replace(b'"e3"', b'"e9"')
    path.write_bytes(b"\n".join(lines))
    assert seqs(run_asup("tail", "a.jsonl", "-n", "1", cwd=tmp_path).stdout) == [3001]
    whole = run_asup("tail", "a.jsonl", "--since", "1", cwd=tmp_path)
    assert whole.returncode == 1 and "a.jsonl:5: corrupt_record" in whole.stderr


@pytest.mark.parametrize("damage", ["flip", "swap"])
def test_damage_inside_the_window_is_refused(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "a.jsonl"
    make_log(path, 40)
    lines = path.read_bytes().split(b"\n")
    if damage == "flip":
        lines[-4] = lines[-4].replace(b'"syncing"', b'"Syncing"', 1)
    else:
        lines[-4], lines[-5] = lines[-5], lines[-4]
    path.write_bytes(b"\n".join(lines))
    done = run_asup("tail", "a.jsonl", cwd=tmp_path)
    assert done.returncode == 1, done.stdout
    assert done.stderr.startswith("asup: a.jsonl") and done.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["missing.jsonl"], "no such log"),
        (["."], "a directory, not a log"),
        (["a.jsonl", "-n", "-2"], "'-n'"),
        (["a.jsonl", "--type", "transtion"], "is not an event type"),
        (["a.jsonl", "-f", "--reason", "retry_exhaust"], "is not a reason code"),
    ],
)
def test_bad_input_is_one_line_and_exit_2_without_waiting(tmp_path: Path, args: list[str], says: str) -> None:
    make_log(tmp_path / "a.jsonl", 3)
    done = run_asup("tail", *args, cwd=tmp_path)  # -f with a bad filter must not wait: run_asup times out at 60 s
    assert done.returncode == 2
    assert says in done.stderr and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr


def read_until(proc: subprocess.Popen[bytes], want: int, seconds: float = 20.0) -> list[int]:
    """Seqs printed by `proc` until `want` lines arrived (or the time ran out)."""
    assert proc.stdout is not None
    got: list[int] = []
    buffer = b""
    deadline = time.monotonic() + seconds
    while len(got) < want and time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            buffer += os.read(proc.stdout.fileno(), 1 << 16)
            *complete, buffer = buffer.split(b"\n")
            got += [json.loads(line)["seq"] for line in complete]
    return got


def test_follow_by_name_waits_for_the_log_and_reads_a_replaced_one_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "live.jsonl"
    proc = subprocess.Popen(asup_argv("tail", str(path), "-F", "--poll"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        time.sleep(0.5)
        make_log(path, 4)
        assert read_until(proc, 5) == [1, 2, 3, 4, 5]
        path.rename(tmp_path / "old.jsonl")
        drop_side_files(path)  # the moved log's head record would (rightly) refuse a new log here
        make_log(path, 2)
        assert read_until(proc, 3) == [1, 2, 3]
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert b"was replaced: following the new file from its start" in err or b"shrank" in err


def test_follow_without_f_by_name_ends_on_a_replaced_log_with_the_hint(tmp_path: Path) -> None:
    path = tmp_path / "live.jsonl"
    make_log(path, 20)
    proc = subprocess.Popen(asup_argv("tail", str(path), "-f", "--poll"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        assert len(read_until(proc, 10)) == 10
        path.write_bytes(path.read_bytes()[:200])  # cut in place, below what was read
        _, err = proc.communicate(timeout=20)
    finally:
        proc.kill() if proc.poll() is None else None
    assert proc.returncode == 1 and b"shrank" in err and b"-F" in err


def test_a_log_shorter_than_n_prints_every_record(tmp_path: Path) -> None:
    make_log(tmp_path / "a.jsonl", 5)
    assert seqs(run_asup("tail", "a.jsonl", cwd=tmp_path).stdout) == [1, 2, 3, 4, 5, 6]
    assert seqs(run_asup("tail", "a.jsonl", "-n", "7", "--transfer", "s1", cwd=tmp_path).stdout) == [3, 6]
