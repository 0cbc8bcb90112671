"""A repair killed part-way: the next opener finishes it, and nothing acknowledged is lost.

Each iteration appends an acknowledged batch, then leaves what a crashed writer would
beyond it: part of a line, a run of NULs, or both. Then one to three repairers, forked
children running `asup log repair` in-process or opening the log (which repairs), are
SIGKILLed at random moments: before the repair, after the torn bytes were quarantined but
before the cut, after the cut but before the `log_repaired` record, or after it. The next
opener must finish the job: the torn bytes in exactly one quarantine file, exactly one
`log_repaired` record naming it, the acked bytes untouched, the log verifying.

The second test does the same deterministically: a repairer whose file system SIGKILLs its
process before its Nth write, fsync, truncate, link, rename or unlink, for every N the
repair makes.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from events.fs import OsFileSystem, PathArg
from events.jsonl_log import JsonlLog
from events.segments import verify_log
from events.store import Pending
from events.testing import transition
from runbook.log_commands import app as log_app
from tests.reliability.crashloop import SEED, Child, LogChecker, iterations, quarantined, report

pytestmark = pytest.mark.crash

ITERATIONS = iterations(150)
ITERATIONS_PER_LOG = 100  # then a new log, so the checks stay cheap
FIRST_WINDOW = 0.005  # seconds: a first guess at how long a repair takes


class KillWindow:
    """How long after a repairer starts to kill it: adapted so about one kill in five lands
    after the repair finished, the rest spread over the repair (and the open before it)."""

    def __init__(self) -> None:
        self.seconds = FIRST_WINDOW

    def draw(self, rng: random.Random) -> float:
        return rng.uniform(0, self.seconds)

    def observe(self, lines: list[bytes]) -> None:
        finished = b"done" in lines
        self.seconds *= 0.9 if finished else 1.025  # balances at P(finished) = 0.19


# --- the repairers -------------------------------------------------------------------------


def _repair_then_wait(path: Path, how: str, fd: int) -> None:
    os.write(fd, b"ready\n")
    if how == "cli":
        result = CliRunner().invoke(log_app, ["repair", str(path)])
        assert result.exit_code == 0, result.output
    else:
        JsonlLog.open(path).close()
    os.write(fd, b"done\n")
    while True:  # the parent kills it either way
        signal.pause()


class KillAt(OsFileSystem):
    """The real file system, except that its process SIGKILLs itself before its `n`th change
    to the disk, after saying which change over `report_fd`."""

    def __init__(self, n: int, report_fd: int) -> None:
        self.n = n
        self.report_fd = report_fd
        self.changes = 0

    def _change(self, *what: object) -> None:
        if self.changes == self.n:
            os.write(self.report_fd, f"killed before {' '.join(map(str, what))}\n".encode())
            os.kill(os.getpid(), signal.SIGKILL)
        self.changes += 1

    def open(self, path: PathArg, flags: int, mode: int = 0o644, *, dir_fd: int | None = None) -> int:
        if flags & os.O_CREAT:
            self._change("create", path)
        return super().open(path, flags, mode, dir_fd=dir_fd)

    def write(self, fd: int, data: bytes | memoryview) -> int:
        self._change("write", len(data), "bytes")
        return super().write(fd, data)

    def fsync(self, fd: int) -> None:
        self._change("fsync")
        super().fsync(fd)

    def ftruncate(self, fd: int, size: int) -> None:
        self._change("ftruncate", size)
        super().ftruncate(fd, size)

    def link(self, src: PathArg, dst: PathArg, *, src_dir_fd: int | None = None, dst_dir_fd: int | None = None) -> None:
        self._change("link", src, dst)
        super().link(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

    def replace(self, src: PathArg, dst: PathArg, *, src_dir_fd: int | None = None, dst_dir_fd: int | None = None) -> None:
        self._change("rename", src, dst)
        super().replace(src, dst, src_dir_fd=src_dir_fd, dst_dir_fd=dst_dir_fd)

    def unlink(self, path: PathArg, *, dir_fd: int | None = None) -> None:
        self._change("unlink", path)
        super().unlink(path, dir_fd=dir_fd)


def _repair_killed_at(path: Path, n: int, fd: int) -> None:
    JsonlLog.open(path, fs=KillAt(n, fd)).close()
    os.write(fd, b"done\n")


# --- the log and its torn tail ---------------------------------------------------------------


class TornLog:
    """A log with acknowledged records and, after them, a crashed writer's torn bytes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        JsonlLog.open(path).close()
        self.checker = LogChecker(path)
        self.checker.scan_new()
        self.acked_size = path.stat().st_size
        self.torn = b""

    def append_acked(self, rng: random.Random, tag: str) -> bytes:
        """An acknowledged batch; returns its bytes."""
        items = [Pending(f"t-{rng.randrange(3)}", transition(f"{tag}-{j}", j)) for j in range(rng.randint(1, 5))]
        start = self.path.stat().st_size
        with JsonlLog.open(self.path) as log:
            positions = log.append_batch(items)
        self.checker.scan_new()
        for position, pending in zip(positions, items, strict=True):
            self.checker.check_ack((position.seq, position.stream, position.sv), pending)
        self.acked_size = self.path.stat().st_size
        with self.path.open("rb") as fh:
            fh.seek(start)
            return fh.read()

    def tear(self, rng: random.Random, acked: bytes) -> str:
        """Append what a writer killed mid-batch leaves: part of a line, NULs, or both.

        The line is the batch's last one as the next, never acknowledged, batch would write it
        (another transfer id), so a quarantine file holding an acked event is still caught."""
        like = acked.splitlines()[-1].replace(b'"transfer_id":"', b'"transfer_id":"u')
        kind = rng.choice(("partial", "zeros", "partial+zeros"))
        partial = like[: rng.randrange(1, len(like) - 1)] if "partial" in kind else b""
        zeros = b"\0" * rng.randint(1, 700) if "zeros" in kind else b""
        self.torn = partial + zeros
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, self.torn)
        finally:
            os.close(fd)
        return kind

    def state(self, before: set[str]) -> str:
        """How far the killed repairs got."""
        size = self.path.stat().st_size
        with self.path.open("rb") as fh:
            fh.seek(self.acked_size)
            tail = fh.read()
        added = quarantined(self.path) - before
        if tail == self.torn:
            return "quarantined, not cut" if added else "not started"
        if size == self.acked_size:
            assert added, "the torn bytes were cut before they were quarantined"
            return "cut, not recorded"
        return "recorded"

    def check_finished(self, before: set[str], acked_bytes: bytes, context: str) -> None:
        """The repair is complete: one quarantine file with the torn bytes, one log_repaired naming it, acked bytes kept."""
        with JsonlLog.open(self.path) as log:
            assert log.repaired is None or log.repaired.offset == self.acked_size, context
            last = log.last_position()
        repairs_before = set(self.checker.repairs)
        self.checker.scan_new()
        with self.path.open("rb") as fh:
            fh.seek(self.acked_size - len(acked_bytes))
            assert fh.read(len(acked_bytes)) == acked_bytes, f"{context}: the acknowledged batch's bytes changed"
        added = quarantined(self.path) - before
        assert len(added) == 1, f"{context}: one torn tail, quarantined as {sorted(added)}"
        (name,) = added
        assert (self.path.parent / name).read_bytes() == self.torn, context
        assert set(self.checker.repairs) - repairs_before == {name}, f"{context}: one log_repaired record for {name}"
        repaired = self.checker.repairs[name]
        assert (repaired.offset, repaired.length) == (self.acked_size, len(self.torn)), context
        self.checker.check_quarantines(set(self.checker.tags))
        verified = verify_log(self.path)
        assert verified.problem is None, f"{context}: {verified.problem}"
        assert (verified.last_seq, verified.last_h) == last == (self.checker.chain.last_seq, self.checker.chain.last_h), context
        self.acked_size = self.path.stat().st_size


def test_repairs_killed_at_random_are_finished_by_the_next_opener(tmp_path: Path) -> None:
    """1-3 repairers SIGKILLed at random moments; the next open completes the repair and keeps every ack."""
    rng = random.Random(SEED + 3)
    counts: Counter[str] = Counter()
    log: TornLog | None = None
    window = KillWindow()
    for iteration in range(ITERATIONS):
        if iteration % ITERATIONS_PER_LOG == 0:
            log = TornLog(tmp_path / f"repair-{iteration // ITERATIONS_PER_LOG}.jsonl")
        assert log is not None
        context = f"iteration {iteration} (ASUP_CRASH_SEED={SEED})"
        acked = log.append_acked(rng, f"k{iteration}")
        before = quarantined(log.path)
        counts[log.tear(rng, acked)] += 1
        for _ in range(rng.choice((1, 1, 1, 2, 3))):
            child = Child(_repair_then_wait, log.path, rng.choice(("open", "cli")))
            child.wait_for_lines(1)
            time.sleep(window.draw(rng))  # the crash moment
            window.observe(child.kill())
            counts[f"killed: {log.state(before)}"] += 1
        log.check_finished(before, acked, context)
        counts["iterations"] += 1
        if iteration % 50 == 49:
            log.checker.full_verify()
    assert log is not None
    log.checker.full_verify()
    report("repairs SIGKILLed at random", counts + Counter(final_window_ms=round(window.seconds * 1000)))
    assert counts["killed: not started"] and counts["killed: recorded"], counts


def test_a_repair_killed_before_each_of_its_disk_changes_is_finished_by_the_next_opener(tmp_path: Path) -> None:
    """SIGKILL before the repair's 1st, 2nd, ... change to the disk; every crash point ends in one complete repair."""
    rng = random.Random(SEED + 4)
    counts: Counter[str] = Counter()
    for n in range(200):
        (tmp_path / f"at-{n}").mkdir()
        log = TornLog(tmp_path / f"at-{n}" / "log.jsonl")
        acked = log.append_acked(rng, f"n{n}")
        before = quarantined(log.path)
        log.tear(rng, acked)
        exit_code, lines = Child(_repair_killed_at, log.path, n).reap()
        completed = b"done" in lines
        assert exit_code == (0 if completed else -signal.SIGKILL), (exit_code, lines)
        counts["completed" if completed else f"killed: {log.state(before)}"] += 1
        log.check_finished(before, acked, f"disk change {n}: {lines[-1].decode()}")
        if completed:
            break
    else:
        raise AssertionError("the repair never completed within 200 disk changes")
    report("repairs SIGKILLed before each disk change", Counter(crash_points=n) + counts)
    for state in ("not started", "quarantined, not cut", "cut, not recorded", "recorded"):
        assert counts[f"killed: {state}"], f"no crash point left the repair {state}: {counts}"


def test_a_quarantine_file_still_linked_to_its_temp_name_is_recorded_once_with_its_bytes(tmp_path: Path) -> None:
    """A repairer killed between linking its quarantine file into place and removing the temp name.

    The quarantine is published by link(temp, LOG.torn-N) then unlink(temp); a SIGKILL in between
    leaves LOG.torn-N with two links. The next opener must still see it as the quarantine of this
    very tail: one quarantine file, one log_repaired record naming it with its length and digest."""
    log = TornLog(tmp_path / "log.jsonl")
    log.append_acked(random.Random(SEED), "k0")
    torn = b'{"type":"transition","v":1,"seq":'
    log.torn = torn
    with log.path.open("ab") as fh:
        fh.write(torn)
    quarantine = log.path.with_name(f"{log.path.name}.torn-{log.acked_size}")
    temp = quarantine.with_name(f"{quarantine.name}.4242-1-0badc0de.tmp")  # events.atomic.temp_name's form
    temp.write_bytes(torn)
    os.link(temp, quarantine)
    with JsonlLog.open(log.path) as opened:
        assert opened.repaired is not None
    log.checker.scan_new()
    log.checker.check_quarantines(set(log.checker.tags))  # each record states its file's length and digest
    assert quarantined(log.path) == {quarantine.name}, "the same torn bytes were quarantined twice"
    assert list(log.checker.repairs) == [quarantine.name]
