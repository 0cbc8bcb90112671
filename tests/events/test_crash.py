"""Crash safety of the JSONL log: SIGKILL a writer mid-append, reopen, check every ack.

A forked child appends seeded random batches (durability batch) and reports each
acknowledged batch's positions over a pipe (tests/reliability/crashloop.py). The parent
kills it at a seeded random moment, reopens the log (repairing a torn tail) and checks the
Jepsen-style invariants: every acked event present exactly once at its acked position with
its payload, unacked ones absent or a prefix of the in-flight batch, the log verifying. One
log is appended to across all iterations, so every reopen also trusts (or rebuilds) the
head record the previous one saved. Several writers at once, kills mid-repair and the
truncation sweep are in tests/reliability/.

ASUP_CRASH_ITERATIONS, ASUP_SOAK=1 and ASUP_CRASH_SEED override the defaults; a failure
names the iteration and its seed.
"""

from __future__ import annotations

import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from events.chain import Position
from events.digest import digest_bytes
from events.head_record import head_path
from events.jsonl_log import JsonlLog
from events.payloads import LogRepaired, Transition
from events.record import HEADER_STREAM, Record
from events.store import Pending
from events.testing import transition
from tests.reliability.crashloop import SEED, AckLine, Child, LogChecker, Writer, encode_ack, iterations, quarantined, report, written_by

pytestmark = pytest.mark.crash

ITERATIONS = iterations(300)
RETRY_ITERATIONS = iterations(45)
MAX_KILL_DELAY = 0.008  # seconds after the child reports it opened the log


def _append_once_then_wait(path: Path, items: list[Pending], ack_fd: int) -> None:
    log = JsonlLog.open(path)
    os.write(ack_fd, b"ready\n")
    positions = log.append_batch(items)
    os.write(ack_fd, encode_ack(0, positions))
    while True:  # the ack dies with this process: the parent must retry
        signal.pause()


def _reopen_and_check_repair(path: Path, checker: LogChecker) -> tuple[LogRepaired | None, list[Record]]:
    """Reopen (which repairs a torn tail), check the repair left one faithful quarantine file; the new records."""
    before = quarantined(path)
    with JsonlLog.open(path) as log:
        repaired = log.repaired
        last = log.last_position()
    added = quarantined(path) - before
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
    counts: Counter[str] = Counter()
    for iteration in range(ITERATIONS):
        seed = master.randrange(1 << 32)
        context = f"iteration {iteration} (seed {seed}, ASUP_CRASH_SEED={SEED})"
        writer = Writer(path, seed, f"i{iteration}")
        if master.random() < 0.9:  # otherwise kill it while it is still opening the log
            writer.child.wait_for_lines(1)
            time.sleep(master.uniform(0, MAX_KILL_DELAY))  # the crash moment itself, not a synchronisation
        writer.kill()
        repaired, new = _reopen_and_check_repair(path, checker)
        mine = written_by(new).get(writer.prefix, [])
        acked = checker.check_writer(writer, mine, context)
        if repaired is not None:
            assert len(mine) < sum(map(len, writer.batches())), context
        counts.update(iterations=1, acked=acked, repairs=repaired is not None)
        if iteration % 50 == 49:
            checker.full_verify()
    checker.full_verify()
    checker.check_quarantines(set(checker.tags))
    report("single writer SIGKILLed mid-append", counts)
    assert counts["acked"] > ITERATIONS, "the children barely appended: the kill moments are too early"


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
        acks = [line for line in child.kill() if line != b"ready"]
        acked = [Position(*ack) for ack in msgspec.json.decode(acks[0], type=AckLine)[1]] if acks else []
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
    report("retry after a lost ack", Counter(iterations=RETRY_ITERATIONS) + outcomes)
    assert outcomes["deduped"] and outcomes["written"], outcomes
