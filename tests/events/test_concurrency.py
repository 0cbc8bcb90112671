"""Many writer processes per log, one batch at a time under an flock on the file itself; readers alongside.

Every writer here is a real process (forked); the lock is the OS's. Holders are driven
over pipes, so the tests wait on events, not on sleeps.
"""

from __future__ import annotations

import fcntl
import multiprocessing
import multiprocessing.synchronize
import os
import select
import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from events.chain import ChainState
from events.errors import AsupError, ErrorCode, ExitCode
from events.jsonl_log import JsonlLog
from events.lock import is_locked
from events.record import Record
from events.scan import Scanner, read_records
from events.store import Pending
from events.testing import tags, transition
from events.vocabulary import Durability
from tests.cli import asup_argv

FORK = multiprocessing.get_context("fork")
TIMEOUT = 30.0


class Holder:
    """A child process that holds the writer lock (an flock on the log file itself, as a
    writer does for the length of a batch) until told to finish.

    On `finish()` it releases the lock, appends one event tagged `tag` through an open
    JsonlLog and closes it. Before reporting ready it opens and closes other descriptors of
    the log (the fcntl-lock pitfall: closing any fd would drop an fcntl lock).
    """

    def __init__(self, path: Path, tag: str = "holder") -> None:
        self._go_read, self._go_write = os.pipe()
        self._ack_read, ack_write = os.pipe()
        self.process = FORK.Process(target=self._run, args=(path, tag, ack_write), daemon=True)
        self.process.start()
        os.close(ack_write)
        os.close(self._go_read)
        assert _read_line(self._ack_read) == b"ready"

    def _run(self, path: Path, tag: str, ack_fd: int) -> None:
        log = JsonlLog.open(path)
        fd = os.open(path, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.close(os.open(path, os.O_RDONLY))
        with path.open("rb") as fh:
            fh.read()
        os.write(ack_fd, b"ready\n")
        os.read(self._go_read, 1)
        os.close(fd)  # the lock goes with its descriptor
        log.append("holder", [transition(tag)])
        log.close()
        os.write(ack_fd, b"closed\n")

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def finish(self) -> None:
        os.write(self._go_write, b"g")
        assert _read_line(self._ack_read) == b"closed"
        self.process.join(TIMEOUT)
        assert self.process.exitcode == 0
        self._close_pipes()

    def kill(self) -> None:
        os.kill(self.pid, signal.SIGKILL)
        self.process.join(TIMEOUT)
        assert self.process.exitcode == -signal.SIGKILL
        self._close_pipes()

    def _close_pipes(self) -> None:
        os.close(self._go_write)
        os.close(self._ack_read)


def _read_line(fd: int, timeout: float = TIMEOUT) -> bytes:
    """One line from a pipe written by a child in single small writes."""
    ready, _, _ = select.select([fd], [], [], timeout)
    assert ready, "child did not report in time"
    data = os.read(fd, 4096)
    assert data.endswith(b"\n") and data.count(b"\n") == 1, data
    return data[:-1]


def _verified(path: Path) -> list[Record]:
    scanner = Scanner(path, ChainState())
    records = list(scanner)
    assert scanner.problem is None, scanner.problem
    return records


def _new_log(path: Path) -> None:
    with JsonlLog.open(path) as log:
        log.append("setup", [transition("setup")])


def test_writers_in_two_processes_share_one_log(tmp_path: Path) -> None:
    """Two processes hold one log open at once; each batch catches up with the other's: seqs contiguous, chains whole."""
    path = tmp_path / "log.jsonl"
    _new_log(path)
    with JsonlLog.open(path) as mine:
        child = FORK.Process(target=_append_many, args=(path, 0, 3, 2), daemon=True)
        child.start()
        child.join(TIMEOUT)
        assert child.exitcode == 0
        mine.append("main", [transition("main-1")])
        assert mine.last_position()[0] == 2 + 3 * 2 + 1
    assert tags(_verified(path))[-1] == "main-1"


def test_a_held_lock_is_waited_for_then_log_locked(tmp_path: Path) -> None:
    """While another process holds the lock past the timeout, an append fails with log_locked; nothing changes."""
    path = tmp_path / "log.jsonl"
    _new_log(path)
    with JsonlLog.open(path) as log:
        holder = Holder(path)
        before = path.read_bytes()
        started = time.monotonic()
        log._lock_timeout = 0.3
        with pytest.raises(AsupError) as info:
            log.append("blocked", [transition("blocked")])
        assert time.monotonic() - started >= 0.3
        assert info.value.code is ErrorCode.LOG_LOCKED
        assert info.value.exit_code is ExitCode.BUSY
        assert path.read_bytes() == before
        holder.finish()
        log.append("after", [transition("after")])
    assert tags(_verified(path)) == ["setup", "holder", "after"]


def test_cli_repair_exits_busy_while_a_writer_holds_the_lock(tmp_path: Path) -> None:
    """`asup log repair --lock-timeout 0.2` exits 3 (busy) with a log_locked message while another process holds the lock."""
    path = tmp_path / "log.jsonl"
    _new_log(path)
    holder = Holder(path)
    before = path.read_bytes()
    run = subprocess.run(
        asup_argv("log", "repair", str(path), "--lock-timeout", "0.2"), capture_output=True, text=True, timeout=TIMEOUT, check=False
    )
    assert run.returncode == int(ExitCode.BUSY) == 3, run.stderr
    assert "log_locked" in run.stderr
    assert path.read_bytes() == before
    holder.finish()


def test_lock_timeout_expires_with_log_locked(tmp_path: Path) -> None:
    """With lock_timeout, an opener waits that long for a holder that stays, then gets log_locked."""
    path = tmp_path / "log.jsonl"
    _new_log(path)
    holder = Holder(path)
    started = time.monotonic()
    with pytest.raises(AsupError) as info:
        JsonlLog.open(path, lock_timeout=0.3)
    assert time.monotonic() - started >= 0.3
    assert info.value.code is ErrorCode.LOG_LOCKED
    holder.finish()


@pytest.mark.parametrize("alias", ["symlink", "hardlink", "lock file deleted"])
def test_aliases_of_one_log_share_its_lock(tmp_path: Path, alias: str) -> None:
    """Writers through a symlink or hardlink alias, or with a stray LOG.lock deleted, are one log: no duplicate seqs."""
    path = tmp_path / "log.jsonl"
    _new_log(path)
    other = tmp_path / "alias.jsonl"
    if alias == "symlink":
        other.symlink_to(path.name)
    elif alias == "hardlink":
        os.link(path, other)
    else:
        other = path
        path.with_name(path.name + ".lock").write_text("12345\n")
        path.with_name(path.name + ".lock").unlink()
    names = [path, other, path, other]
    _run_writers([(names[w], w, 8, 3) for w in range(4)])
    records = _verified(path)
    assert [r.seq for r in records] == list(range(1, len(records) + 1)) and len(records) == 2 + 4 * 8 * 3
    assert len(set(tags(records))) == len(records) - 1


def _wait_and_append(path: Path, ack_fd: int) -> None:
    with JsonlLog.open(path, lock_timeout=TIMEOUT) as log:
        os.write(ack_fd, b"opened\n")
        log.append("waiter", [transition("waiter")])


def test_waiting_writer_takes_over_when_holder_closes(tmp_path: Path) -> None:
    """A writer with lock_timeout waits while another holds the log, then appends after the holder's last event."""
    path = tmp_path / "log.jsonl"
    _new_log(path)
    holder = Holder(path)
    ack_read, ack_write = os.pipe()
    waiter = FORK.Process(target=_wait_and_append, args=(path, ack_write), daemon=True)
    waiter.start()
    os.close(ack_write)
    blocked, _, _ = select.select([ack_read], [], [], 0.3)
    assert not blocked, "the waiter opened the log while another writer held it"
    holder.finish()
    assert _read_line(ack_read) == b"opened"
    waiter.join(TIMEOUT)
    os.close(ack_read)
    assert waiter.exitcode == 0
    assert tags(_verified(path)) == ["setup", "holder", "waiter"]


def _append_many(path: Path, writer: int, rounds: int, per_batch: int) -> None:
    for r in range(rounds):
        durability = (Durability.BATCH, Durability.NONE, Durability.ALWAYS)[r % 3]
        with JsonlLog.open(path, lock_timeout=TIMEOUT, durability=durability) as log:
            log.append_batch([Pending(f"w{writer}", transition(f"w{writer}-{r}-{k}", k)) for k in range(per_batch)])


def _run_writers(jobs: list[tuple[Path, int, int, int]]) -> None:
    """Run `_append_many(*job)` in a process per job, all at once; each must exit 0."""
    processes = [FORK.Process(target=_append_many, args=job, daemon=True) for job in jobs]
    for process in processes:
        process.start()
    for process in processes:
        process.join(TIMEOUT * 2)
        assert process.exitcode == 0


def test_concurrent_writers_serialise(tmp_path: Path) -> None:
    """N processes x M appends with lock_timeout: every event once, batches contiguous, per-writer order kept."""
    writers, rounds, per_batch = 4, 20, 3
    path = tmp_path / "log.jsonl"  # created by whichever writer gets the lock first
    _run_writers([(path, w, rounds, per_batch) for w in range(writers)])
    records = _verified(path)
    assert path.read_bytes().count(b"\n") == len(records) == 1 + writers * rounds * per_batch
    counts = Counter(tags(records))
    assert set(counts.values()) == {1}
    assert len(counts) == writers * rounds * per_batch
    for w in range(writers):
        mine = [r for r in records if r.stream == f"w{w}"]
        assert tags(mine) == [f"w{w}-{r}-{k}" for r in range(rounds) for k in range(per_batch)]
        for r in range(rounds):
            seqs = [rec.seq for rec in mine[r * per_batch : (r + 1) * per_batch]]
            assert seqs == list(range(seqs[0], seqs[0] + per_batch)), "a batch was interleaved with another writer's"


def _race_append(path: Path, tag: str, result_fd: int) -> None:
    try:
        with JsonlLog.open(path, lock_timeout=TIMEOUT) as log:
            positions = log.append("shared", [transition(tag)], expected_version=0)  # both saw version 0
        os.write(result_fd, msgspec.json.encode(["ok", tag, positions[0].seq]) + b"\n")
    except AsupError as error:
        os.write(result_fd, msgspec.json.encode([str(error.code), tag, 0]) + b"\n")


def test_racing_writers_same_expected_version_one_wins(tmp_path: Path) -> None:
    """Two processes append to one stream, both expecting version 0: one succeeds, the other gets conflict_detected."""
    path = tmp_path / "log.jsonl"
    _new_log(path)
    result_read, result_write = os.pipe()
    racers = [FORK.Process(target=_race_append, args=(path, tag, result_write), daemon=True) for tag in ("left", "right")]
    for racer in racers:
        racer.start()
    os.close(result_write)
    for racer in racers:
        racer.join(TIMEOUT)
        assert racer.exitcode == 0
    results = [msgspec.json.decode(line, type=tuple[str, str, int]) for line in os.read(result_read, 4096).splitlines()]
    os.close(result_read)
    stored = tags(list(read_records(path)))
    assert stored.count("left") + stored.count("right") == 1
    outcomes = sorted(outcome for outcome, _, _ in results)
    assert outcomes == ["conflict_detected", "ok"], f"expected one success and one conflict, got {results} with {stored[1:]} stored"


def test_lock_freed_when_holder_is_killed(tmp_path: Path) -> None:
    """SIGKILL of the process holding the lock frees it: the next writer appends at once and the log verifies."""
    path = tmp_path / "log.jsonl"
    _new_log(path)
    holder = Holder(path)
    assert is_locked(path)
    with pytest.raises(AsupError):
        JsonlLog.open(path, lock_timeout=0.05)
    holder.kill()
    assert not is_locked(path)
    with JsonlLog.open(path, lock_timeout=0) as log:
        log.append("next", [transition("next")])
    assert tags(_verified(path)) == ["setup", "next"]


def test_other_descriptors_do_not_release_the_lock(tmp_path: Path) -> None:
    """The holder opening and closing other fds of the log keeps the lock (flock, not fcntl)."""
    path = tmp_path / "log.jsonl"
    _new_log(path)
    holder = Holder(path)  # it opened and closed other descriptors of the log after taking the lock
    assert is_locked(path)
    with pytest.raises(AsupError) as info:
        JsonlLog.open(path, lock_timeout=0.05)
    assert info.value.code is ErrorCode.LOG_LOCKED
    holder.finish()


def test_same_process_fd_churn_keeps_the_lock(tmp_path: Path) -> None:
    """In the locking process itself, reading the log and closing other fds of it leaves the lock held against the CLI."""
    path = tmp_path / "log.jsonl"
    with JsonlLog.open(path) as log:
        log.append("a", [transition("a1")])
        fd = os.open(path, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)
        list(log.read())
        os.close(os.open(path, os.O_RDWR))
        run = subprocess.run(
            asup_argv("log", "repair", str(path), "--lock-timeout", "0.1"), capture_output=True, text=True, timeout=TIMEOUT, check=False
        )
        assert run.returncode == ExitCode.BUSY, run.stderr
        os.close(fd)
        log.append("a", [transition("a2")])
    assert tags(_verified(path)) == ["a1", "a2"]


# --- readers during writes ---------------------------------------------------------------


class ReaderReport(msgspec.Struct):
    passes: list[tuple[int, str]]  # (records seen, h of the last one) per pass


def _write_burst(path: Path, batches: int, per_batch: int) -> None:
    with JsonlLog.open(path, durability=Durability.NONE) as log:
        for b in range(batches):
            log.append_batch([Pending(f"s{k % 7}", transition(f"b{b}-{k}", k)) for k in range(per_batch)])


def _read_while_writing(path: Path, done: multiprocessing.synchronize.Event, out: Path) -> None:
    passes: list[tuple[int, str]] = []
    finished = False
    while not finished:
        finished = done.is_set()  # one more full pass after the writer is done
        seqs = []
        last = ""
        for record in read_records(path):  # tolerates an append in flight, raises on anything else
            seqs.append(record.seq)
            last = record.h
        assert seqs == list(range(1, len(seqs) + 1))
        assert not passes or len(seqs) >= passes[-1][0], "a reader saw the log shrink"
        passes.append((len(seqs), last))
    out.write_bytes(msgspec.json.encode(ReaderReport(passes)))


def test_readers_never_see_a_partial_line(tmp_path: Path) -> None:
    """Readers scanning during appends see only whole verified records: every pass is a prefix of the final log."""
    path = tmp_path / "log.jsonl"
    _new_log(path)
    done = FORK.Event()
    readers = [FORK.Process(target=_read_while_writing, args=(path, done, tmp_path / f"reader{i}.json"), daemon=True) for i in range(3)]
    for reader in readers:
        reader.start()
    writer = FORK.Process(target=_write_burst, args=(path, 300, 40), daemon=True)
    writer.start()
    writer.join(TIMEOUT)
    done.set()
    assert writer.exitcode == 0
    for reader in readers:
        reader.join(TIMEOUT)
        assert reader.exitcode == 0
    final = _verified(path)
    assert len(final) == 2 + 300 * 40
    intermediate = 0
    for i in range(3):
        report = msgspec.json.decode((tmp_path / f"reader{i}.json").read_bytes(), type=ReaderReport)
        for count, last_h in report.passes:
            assert final[count - 1].h == last_h, "a reader saw a record the final log does not hold there"
            intermediate += 2 < count < len(final)
        assert report.passes[-1][0] == len(final)
    assert intermediate > 0, "no reader overlapped the writer: the test proved nothing"
