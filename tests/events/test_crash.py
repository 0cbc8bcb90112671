"""Crash safety of the JSONL log: SIGKILL a writer mid-append, reopen, check every ack.

A forked child appends seeded random batches (durability batch) and reports each
acknowledged batch's positions over a pipe (one line per ack, under PIPE_BUF, so a line
is written whole or not at all). The parent kills it at a seeded random moment, reopens
the log (repairing a torn tail) and checks the Jepsen-style invariants: every acked event
present exactly once at its acked position with its payload, unacked ones absent or a
prefix of the in-flight batch, the log verifying. One log is appended to across all
iterations, so every reopen also trusts (or rebuilds) the head index the previous one saved.

ASUP_CRASH_ITERATIONS and ASUP_CRASH_SEED override the defaults; a failure names the
iteration and its seed.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import select
import signal
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import msgspec

from events.chain import ChainState, Position
from events.digest import digest_bytes
from events.head_record import head_path
from events.jsonl_log import JsonlLog
from events.payloads import LogRepaired, Transition
from events.record import HEADER_STREAM, Record
from events.scan import Scanner
from events.store import Pending
from events.testing import transition

ITERATIONS = int(os.environ.get("ASUP_CRASH_ITERATIONS", "300"))
SEED = int(os.environ.get("ASUP_CRASH_SEED", "20260528"))
RETRY_ITERATIONS = 45
STREAMS = 5
MAX_BATCH = 16
MAX_KILL_DELAY = 0.008  # seconds after the child reports it opened the log
READY_TIMEOUT = 20.0

FORK = multiprocessing.get_context("fork")
AckLine = tuple[int, list[tuple[int, str, int]]]


# --- the child ---------------------------------------------------------------------


def _batch(rng: random.Random, iteration: int, number: int) -> list[Pending]:
    size = rng.randint(1, MAX_BATCH)
    return [Pending(f"t-{rng.randrange(STREAMS)}", transition(f"i{iteration}-b{number}-{j}", j)) for j in range(size)]


def _encode_ack(number: int, positions: list[Position]) -> bytes:
    line = msgspec.json.encode([number, [[p.seq, p.stream, p.sv] for p in positions]]) + b"\n"
    assert len(line) <= select.PIPE_BUF, "an ack line must be one atomic pipe write"
    return line


def _append_until_killed(path: Path, seed: int, iteration: int, ack_fd: int) -> None:
    rng = random.Random(seed)
    log = JsonlLog.open(path)  # durability batch: an append returns after its fsync
    os.write(ack_fd, b"ready\n")
    number = 0
    while True:
        positions = log.append_batch(_batch(rng, iteration, number))
        os.write(ack_fd, _encode_ack(number, positions))
        number += 1


def _append_once_then_wait(path: Path, items: list[Pending], ack_fd: int) -> None:
    log = JsonlLog.open(path)
    os.write(ack_fd, b"ready\n")
    positions = log.append_batch(items)
    os.write(ack_fd, _encode_ack(0, positions))
    while True:  # the ack dies with this process: the parent must retry
        signal.pause()


# --- the parent --------------------------------------------------------------------


class Child:
    """A forked child with the write end of an ack pipe."""

    def __init__(self, target: Callable[..., None], *args: object) -> None:
        read_fd, write_fd = os.pipe()
        self.process = FORK.Process(target=target, args=(*args, write_fd), daemon=True)
        self.process.start()
        os.close(write_fd)
        self._fd = read_fd
        self._buffer = b""

    def wait_for_lines(self, count: int) -> None:
        """Block until `count` complete lines arrived (or fail if the child died first)."""
        deadline = time.monotonic() + READY_TIMEOUT
        while self._buffer.count(b"\n") < count:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "child did not report in time"
            ready, _, _ = select.select([self._fd], [], [], remaining)
            if ready:
                chunk = os.read(self._fd, 1 << 16)
                assert chunk, f"child exited early (exit code {self.process.exitcode})"
                self._buffer += chunk

    def kill(self) -> list[AckLine]:
        """SIGKILL the child and return the acks it reported."""
        assert self.process.pid is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.join()
        assert self.process.exitcode == -signal.SIGKILL, f"child ended on its own (exit code {self.process.exitcode})"
        while chunk := os.read(self._fd, 1 << 16):
            self._buffer += chunk
        os.close(self._fd)
        assert self._buffer.endswith(b"\n") or not self._buffer, "an ack line was torn"
        lines = [line for line in self._buffer.split(b"\n") if line and line != b"ready"]
        return [msgspec.json.decode(line, type=AckLine) for line in lines]


class LogChecker:
    """Verifies a growing log incrementally and remembers every record by seq."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.chain = ChainState()
        self.offset = 0
        self.by_seq: dict[int, Record] = {}
        self.tags: Counter[str] = Counter()

    def scan_new(self) -> list[Record]:
        scanner = Scanner(self.path, self.chain, self.offset)
        new = list(scanner)
        assert scanner.problem is None, scanner.problem
        assert scanner.valid_size == self.path.stat().st_size
        self.offset = scanner.valid_size
        for record in new:
            self.by_seq[record.seq] = record
            if isinstance(record.data, Transition):
                self.tags[record.data.transfer_id] += 1
        duplicates = [tag for tag, count in self.tags.items() if count > 1]
        assert not duplicates, f"events present more than once: {duplicates[:5]}"
        return new

    def check_ack(self, ack: tuple[int, str, int], pending: Pending) -> None:
        seq, stream, sv = ack
        record = self.by_seq.get(seq)
        assert record is not None, f"acked seq {seq} is missing"
        assert (record.stream, record.sv) == (stream, sv) == (pending.stream, sv)
        assert record.data == pending.event, f"seq {seq} holds another payload"

    def full_verify(self) -> None:
        scanner = Scanner(self.path, ChainState())
        records = list(scanner)
        assert scanner.problem is None, scanner.problem
        assert [r.seq for r in records] == list(range(1, len(records) + 1))
        assert [r.h for r in records] == [self.by_seq[r.seq].h for r in records]


def _quarantined(path: Path) -> set[str]:
    return {p.name for p in path.parent.glob(f"{path.name}.torn-*")}


def _reopen_and_check_repair(path: Path, checker: LogChecker) -> tuple[LogRepaired | None, list[Record]]:
    """Reopen (which repairs a torn tail), check the repair left one faithful quarantine file; the new records."""
    before = _quarantined(path)
    with JsonlLog.open(path) as log:
        repaired = log.repaired
        last = log.last_position()
    added = _quarantined(path) - before
    new = checker.scan_new()
    assert last == (checker.chain.last_seq, checker.chain.last_h)
    if repaired is None:
        assert added == set()
        return None, new
    assert added == {repaired.quarantine}
    torn = (path.parent / repaired.quarantine).read_bytes()
    assert (len(torn), digest_bytes(torn)) == (repaired.length, repaired.torn_digest)
    assert new, "a repair appends a log_repaired record"
    assert (new[-1].stream, new[-1].data) == (HEADER_STREAM, repaired)
    return repaired, new


def test_sigkill_mid_append_loses_no_acknowledged_event(tmp_path: Path) -> None:
    """SIGKILL at random moments: each acked event is present once at its acked position; the reopened log verifies."""
    path = tmp_path / "crash.jsonl"
    JsonlLog.open(path).close()
    checker = LogChecker(path)
    checker.scan_new()
    master = random.Random(SEED)
    acked_total = 0
    for iteration in range(ITERATIONS):
        seed = master.randrange(1 << 32)
        context = f"iteration {iteration} (seed {seed}, ASUP_CRASH_SEED={SEED})"
        child = Child(_append_until_killed, path, seed, iteration)
        if master.random() < 0.9:  # otherwise kill it while it is still opening the log
            child.wait_for_lines(1)
            time.sleep(master.uniform(0, MAX_KILL_DELAY))  # the crash moment itself, not a synchronisation
        acks = child.kill()
        repaired, new = _reopen_and_check_repair(path, checker)

        rng = random.Random(seed)
        batches = [_batch(rng, iteration, number) for number in range(len(acks) + 1)]
        assert [number for number, _ in acks] == list(range(len(acks))), context
        for number, positions in acks:
            assert len(positions) == len(batches[number]), context
            for ack, pending in zip(positions, batches[number], strict=True):
                checker.check_ack(ack, pending)
        mine = [r.data for r in new if isinstance(r.data, Transition)]
        expected = [item.event for batch in batches for item in batch]
        acked = sum(len(batches[number]) for number, _ in acks)
        assert acked <= len(mine) <= len(expected), context
        assert mine == expected[: len(mine)], f"{context}: the log holds events out of order or never appended"
        if repaired is not None:
            assert len(mine) < len(expected), context
        acked_total += acked
        if iteration % 50 == 49:  # the incremental scans trust the prefix they checked; recheck it whole now and then
            checker.full_verify()
    checker.full_verify()
    assert acked_total > ITERATIONS, "the children barely appended: the kill moments are too early"


def _versions(path: Path, streams: list[str]) -> tuple[dict[str, int], int]:
    with JsonlLog.open(path) as log:
        return {s: log.stream_version(s) for s in streams}, path.stat().st_size


def test_retry_after_lost_ack_stores_each_event_once(tmp_path: Path) -> None:
    """A writer killed around its append: retrying the same batch (expected versions, ids) never duplicates an event."""
    path = tmp_path / "retry.jsonl"
    JsonlLog.open(path).close()
    checker = LogChecker(path)
    checker.scan_new()
    rng = random.Random(SEED + 1)
    streams = ["r-0", "r-1"]
    outcomes: Counter[str] = Counter()
    for iteration in range(RETRY_ITERATIONS):
        mode = ("after_ack", "cut", "random")[iteration % 3]
        context = f"iteration {iteration} ({mode}, ASUP_CRASH_SEED={SEED})"
        versions, size_before = _versions(path, streams)
        mark_before = head_path(path).read_bytes()
        items: list[Pending] = []
        for j in range(rng.randint(1, 6)):
            stream = rng.choice(streams)
            explicit = f"retry-{iteration}-{j}" if rng.random() < 0.5 else None
            items.append(Pending(stream, transition(f"r{iteration}-{j}", j), expected_version=versions[stream], id=explicit))
            versions[stream] += 1
        child = Child(_append_once_then_wait, path, items)
        child.wait_for_lines(1 if mode == "random" else 2)
        if mode == "random":
            time.sleep(rng.uniform(0, 0.002))  # the crash moment
        acks = child.kill()
        acked = [Position(*ack) for ack in acks[0][1]] if acks else []
        if mode == "cut":  # the crash came mid-write: it cut the batch's bytes, and the mark never moved past them
            with path.open("r+b") as fh:
                fh.truncate(rng.randrange(size_before, path.stat().st_size))
            head_path(path).write_bytes(mark_before)

        with JsonlLog.open(path) as log:
            opened_size = path.stat().st_size
            retried = log.append_batch(items)
            retried_size = path.stat().st_size
        checker.scan_new()
        for position, pending in zip(retried, items, strict=True):
            checker.check_ack((position.seq, position.stream, position.sv), pending)
            assert isinstance(pending.event, Transition)
            assert checker.tags[pending.event.transfer_id] == 1, context
        for old, new, pending in zip(acked, retried, items, strict=False):
            survived = checker.by_seq.get(old.seq)
            if survived is not None and survived.data == pending.event:
                assert new == old, f"{context}: a retried event that survived the crash must keep its position"
        if mode == "after_ack":
            assert retried == acked, f"{context}: a retry after a lost ack must return the original positions"
            assert retried_size == opened_size, f"{context}: the retry wrote again"
        outcomes["deduped" if retried_size == opened_size else "written"] += 1
    checker.full_verify()
    assert outcomes["deduped"] and outcomes["written"], outcomes
