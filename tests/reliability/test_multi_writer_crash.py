"""Several writer processes on one log, SIGKILLed at random and replaced: nothing acknowledged is lost.

Each round starts WRITERS processes, each with its own `JsonlLog.open` of the same log;
once all have opened, they append seeded random batches at once to a few shared streams
(so every batch has to catch up with the others' appends to extend the chains). At seeded
random moments the parent SIGKILLs one of them and starts a replacement, which opens the
log while the others append (and may find, and repair, the torn tail its predecessor
left, or be killed doing so); at the end of the round it kills the rest. Then it reopens the log and checks every writer's acks (present
exactly once at the acked seq with the payload; unacked events absent or a prefix of the
batch in flight), seqs contiguous and chains unbroken, a clean `verify_log`, at most one
quarantined tail per killed process, each holding one writer's unacknowledged bytes, and a
`log_repaired` record for every quarantine file.

A new log every ROUNDS_PER_LOG rounds keeps each round's reopen and verify cheap.
"""

from __future__ import annotations

import random
import shutil
import time
from collections import Counter
from pathlib import Path

import pytest

from events.jsonl_log import JsonlLog
from events.segments import verify_log
from tests.reliability.crashloop import SEED, LogChecker, Writer, iterations, quarantined, report, written_by

pytestmark = pytest.mark.crash

ROUNDS = iterations(100)
WRITERS = 3
MAX_KILLS = 3  # per round, each followed by a replacement; then the survivors are killed too
ROUNDS_PER_LOG = 25
MAX_KILL_DELAY = 0.010


class Round:
    """One round's writers: WRITERS alive at a time, every one of them SIGKILLed in the end."""

    def __init__(self, path: Path, rng: random.Random, number: int) -> None:
        self.path = path
        self.rng = rng
        self.number = number
        self.started = 0
        self.live: list[Writer] = []
        self.done: list[Writer] = []

    def start(self, gated: bool = False) -> Writer:
        writer = Writer(self.path, self.rng.randrange(1 << 32), f"r{self.number}w{self.started}", gated=gated)
        self.started += 1
        self.live.append(writer)
        return writer

    def kill(self, writer: Writer) -> None:
        self.live.remove(writer)
        self.done.append(writer.kill())

    def run(self, counts: Counter[str]) -> None:
        for _ in range(WRITERS):
            self.start(gated=True)
        for writer in self.live:  # all open before any appends, then all append at once
            writer.child.wait_for_lines(1)
        for writer in self.live:
            writer.go()
        for _ in range(self.rng.randint(1, MAX_KILLS)):
            time.sleep(self.rng.uniform(0, MAX_KILL_DELAY))  # the crash moment
            self.kill(self.rng.choice(self.live))
            self.start()  # opens (and may repair) while the others append; it may die doing so
        time.sleep(self.rng.uniform(0, MAX_KILL_DELAY))
        for writer in list(self.live):
            self.kill(writer)
        counts.update(rounds=1, writers=self.started)


def _check_round(checker: LogChecker, finished: list[Writer], before: set[str], context: str) -> Counter[str]:
    with JsonlLog.open(checker.path) as log:
        last = log.last_position()
    new = checker.scan_new()
    assert last == (checker.chain.last_seq, checker.chain.last_h), context
    written = written_by(new)
    assert set(written) <= {w.prefix for w in finished}, f"{context}: events of writers from another round"
    acked = sum(checker.check_writer(writer, written.get(writer.prefix, []), context) for writer in finished)
    added = quarantined(checker.path) - before
    assert len(added) <= len(finished), f"{context}: more quarantined tails than killed writers: {sorted(added)}"
    checker.check_quarantines({tag for writer in finished for tag in writer.acked_tags()})
    verified = verify_log(checker.path)
    assert verified.problem is None, f"{context}: {verified.problem}"
    assert (verified.last_seq, verified.last_h) == last, context
    return Counter(acked=acked, unacked_kept=sum(map(len, written.values())) - acked, quarantined=len(added))


def test_concurrent_writers_sigkilled_at_random_lose_no_acknowledged_event(tmp_path: Path) -> None:
    """WRITERS processes append to one log; random SIGKILLs and replacements; every ack holds after each round."""
    master = random.Random(SEED + 2)
    counts: Counter[str] = Counter()
    checker: LogChecker | None = None
    for number in range(ROUNDS):
        if number % ROUNDS_PER_LOG == 0:
            if checker is not None:
                checker.full_verify()
                shutil.rmtree(checker.path.parent)  # a soak would otherwise leave gigabytes behind
            path = tmp_path / f"log-{number // ROUNDS_PER_LOG}" / "multi.jsonl"
            path.parent.mkdir()
            JsonlLog.open(path).close()
            checker = LogChecker(path)
            checker.scan_new()
        assert checker is not None
        context = f"round {number} (ASUP_CRASH_SEED={SEED})"
        before = quarantined(checker.path)
        round_ = Round(checker.path, master, number)
        round_.run(counts)
        counts += _check_round(checker, round_.done, before, context)
    assert checker is not None
    checker.full_verify()
    report(f"{WRITERS} concurrent writers SIGKILLed and replaced", counts)
    assert counts["acked"] > ROUNDS * WRITERS, "the writers barely appended: the kill moments are too early"
