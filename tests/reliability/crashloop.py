"""The crash-loop harness: real writer processes SIGKILLed at random, Jepsen-style checks.

Writers are forked from the test process, which has already imported asup, so a writer
costs a fork, not an interpreter start. Each writer appends seeded random batches to one
log and reports every acknowledged batch over its own pipe, one line per ack (under
PIPE_BUF, so a line arrives whole or not at all). The parent knows each writer's seed, so
after the kill it regenerates what the writer meant to append and checks the log against
the acks: every acknowledged event present exactly once at its acked position with its
payload, a writer's unacknowledged events absent or a prefix of its batch in flight, the
log verifying, and every quarantine file named by a `log_repaired` record.

ASUP_CRASH_ITERATIONS sets every loop's iteration count; ASUP_SOAK=1 (`make soak`) raises
each to at least SOAK_ITERATIONS; ASUP_CRASH_SEED changes the seeds. A failure names the
iteration and the ASUP_CRASH_SEED that reproduces it.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import re
import select
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

import msgspec

from events.chain import ChainState, Position
from events.digest import digest_bytes
from events.jsonl_log import JsonlLog
from events.payloads import LogRepaired, Transition
from events.record import HEADER_STREAM, Record
from events.scan import Scanner
from events.store import Pending
from events.testing import transition

SEED = int(os.environ.get("ASUP_CRASH_SEED", "20260528"))
SOAK_ITERATIONS = 1000
STREAMS = 5  # few, so concurrent writers keep extending the same streams' chains
MAX_BATCH = 16
READY_TIMEOUT = 30.0  # a writer may wait for the lock behind others on a loaded machine

FORK = multiprocessing.get_context("fork")
AckLine = tuple[int, list[tuple[int, str, int]]]
_TAG = re.compile(rb'"transfer_id":"([^"]+)"')

RAN: list[str] = []  # one line per finished loop; tests/reliability/conftest.py prints them


def iterations(default: int) -> int:
    """A loop's iteration count: ASUP_CRASH_ITERATIONS, else at least SOAK_ITERATIONS under ASUP_SOAK=1."""
    explicit = os.environ.get("ASUP_CRASH_ITERATIONS")
    if explicit:
        return int(explicit)
    return max(default, SOAK_ITERATIONS) if os.environ.get("ASUP_SOAK") == "1" else default


def report(name: str, counts: Counter[str]) -> None:
    """Record what a loop ran, for the end-of-session summary (and for a failing run's output)."""
    summary = ", ".join(f"{key} {value}" for key, value in counts.items())
    RAN.append(f"{name}: {summary} (ASUP_CRASH_SEED={SEED})")
    print(RAN[-1])


# --- what a writer appends -----------------------------------------------------------


def make_batch(rng: random.Random, prefix: str, number: int) -> list[Pending]:
    """Batch `number` of the writer `prefix`: its events' transfer ids are `PREFIX-bNUMBER-J`."""
    size = rng.randint(1, MAX_BATCH)
    return [Pending(f"t-{rng.randrange(STREAMS)}", transition(f"{prefix}-b{number}-{j}", j)) for j in range(size)]


def writer_of(tag: str) -> str:
    return tag.split("-", 1)[0]


def encode_ack(number: int, positions: list[Position]) -> bytes:
    line = msgspec.json.encode([number, [[p.seq, p.stream, p.sv] for p in positions]]) + b"\n"
    assert len(line) <= select.PIPE_BUF, "an ack line must be one atomic pipe write"
    return line


def append_until_killed(path: Path, seed: int, prefix: str, go_fd: int, ack_fd: int) -> None:
    """A writer: open the log (durability batch: an append returns after its fsync), then
    (given a `go_fd`, once the parent writes to it) append until killed."""
    rng = random.Random(seed)
    log = JsonlLog.open(path)
    os.write(ack_fd, b"ready\n")
    if go_fd >= 0:
        os.read(go_fd, 1)
    number = 0
    while True:
        positions = log.append_batch(make_batch(rng, prefix, number))
        os.write(ack_fd, encode_ack(number, positions))
        number += 1


# --- the parent's side of a child ------------------------------------------------------


def _child_main(target: Callable[..., None], args: tuple[object, ...], fd: int) -> None:
    try:
        target(*args, fd)
    except BaseException as exc:  # the parent reports it: a writer must die by SIGKILL only
        os.write(fd, b"error " + repr(exc).encode(errors="replace")[:2000].replace(b"\n", b" ") + b"\n")
        raise


class Child:
    """A forked child given the write end of a pipe as its last argument."""

    def __init__(self, target: Callable[..., None], *args: object) -> None:
        read_fd, write_fd = os.pipe()
        self.process = FORK.Process(target=_child_main, args=(target, args, write_fd), daemon=True)
        self.process.start()
        os.close(write_fd)
        self._fd = read_fd
        self._buffer = b""

    def wait_for_lines(self, count: int) -> None:
        """Block until `count` complete lines arrived (or fail if the child died first)."""
        deadline = time.monotonic() + READY_TIMEOUT
        while self._buffer.count(b"\n") < count:
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"child did not report in time: {self._buffer[-300:]!r}"
            ready, _, _ = select.select([self._fd], [], [], remaining)
            if ready:
                chunk = os.read(self._fd, 1 << 16)
                assert chunk, f"child exited early (exit code {self.process.exitcode}): {self._buffer[-2000:]!r}"
                self._buffer += chunk

    def kill(self) -> list[bytes]:
        """SIGKILL the child; every line it reported (a torn last line fails the test)."""
        assert self.process.pid is not None
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.join()
        lines = self._lines()  # first: a child that failed says why
        assert self.process.exitcode == -signal.SIGKILL, f"child ended on its own (exit code {self.process.exitcode})"
        return lines

    def reap(self) -> tuple[int, list[bytes]]:
        """Wait for a child that ends by itself (by returning, or SIGKILLing itself); its exit code and lines."""
        self.process.join(READY_TIMEOUT)
        assert self.process.exitcode is not None, "child did not end in time"
        return self.process.exitcode, self._lines()

    def _lines(self) -> list[bytes]:
        while chunk := os.read(self._fd, 1 << 16):
            self._buffer += chunk
        os.close(self._fd)
        errors = [line for line in self._buffer.split(b"\n") if line.startswith(b"error ")]
        assert not errors, f"child failed: {errors[0].decode(errors='replace')}"
        assert self._buffer.endswith(b"\n") or not self._buffer, "a pipe line was torn"
        return [line for line in self._buffer.split(b"\n") if line]


class Writer:
    """A writer process (`append_until_killed`) and, once killed, the acks it reported."""

    def __init__(self, path: Path, seed: int, prefix: str, *, gated: bool = False) -> None:
        """`gated`: the writer waits after opening until `go()`."""
        assert "-" not in prefix, "writer_of() splits a tag at its first '-'"
        self.seed = seed
        self.prefix = prefix
        go_read, self._go = os.pipe() if gated else (-1, -1)
        self.child = Child(append_until_killed, path, seed, prefix, go_read)
        if gated:
            os.close(go_read)
        self.acks: list[AckLine] = []

    def go(self) -> None:
        os.write(self._go, b"g")
        os.close(self._go)
        self._go = -1

    def kill(self) -> Writer:
        lines = self.child.kill()
        if self._go >= 0:
            os.close(self._go)
            self._go = -1
        self.acks = [msgspec.json.decode(line, type=AckLine) for line in lines if line != b"ready"]
        return self

    def batches(self) -> list[list[Pending]]:
        """What it appended or was appending: each acked batch and the one in flight."""
        rng = random.Random(self.seed)
        return [make_batch(rng, self.prefix, number) for number in range(len(self.acks) + 1)]

    def acked_tags(self) -> set[str]:
        return {_tag(item) for batch in self.batches()[: len(self.acks)] for item in batch}


def _tag(item: Pending) -> str:
    assert isinstance(item.event, Transition)
    return item.event.transfer_id


# --- checking the log ------------------------------------------------------------------


class LogChecker:
    """Verifies a growing log incrementally; remembers every record by seq and every repair."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.chain = ChainState()
        self.offset = 0
        self.by_seq: dict[int, Record] = {}
        self.tags: Counter[str] = Counter()
        self.repairs: dict[str, LogRepaired] = {}  # by quarantine file name

    def scan_new(self) -> list[Record]:
        """The records appended since the last call, verified (digests, seqs, per-stream chains)."""
        scanner = Scanner(self.path, self.chain, self.offset)
        new = list(scanner)
        assert scanner.problem is None, scanner.problem
        assert scanner.valid_size == self.path.stat().st_size, "the file ends past its last valid record"
        self.offset = scanner.valid_size
        for record in new:
            self._remember(record)
        duplicates = [tag for tag, count in self.tags.items() if count > 1]
        assert not duplicates, f"events present more than once: {duplicates[:5]}"
        return new

    def _remember(self, record: Record) -> None:
        self.by_seq[record.seq] = record
        if isinstance(record.data, Transition):
            self.tags[record.data.transfer_id] += 1
        elif isinstance(record.data, LogRepaired):
            assert record.stream == HEADER_STREAM
            assert record.data.quarantine not in self.repairs, f"two log_repaired records name {record.data.quarantine}"
            self.repairs[record.data.quarantine] = record.data

    def check_ack(self, ack: tuple[int, str, int], pending: Pending) -> None:
        seq, stream, sv = ack
        record = self.by_seq.get(seq)
        assert record is not None, f"acked seq {seq} is missing"
        assert (record.stream, record.sv) == (stream, sv) == (pending.stream, sv)
        assert record.data == pending.event, f"seq {seq} holds another payload"

    def check_writer(self, writer: Writer, written: list[Transition], context: str) -> int:
        """The writer's acks against the log; `written` is its events in log order. Returns the events it had acked."""
        batches = writer.batches()
        assert [number for number, _ in writer.acks] == list(range(len(writer.acks))), context
        for number, positions in writer.acks:
            assert len(positions) == len(batches[number]), context
            for ack, pending in zip(positions, batches[number], strict=True):
                self.check_ack(ack, pending)
        expected = [item.event for batch in batches for item in batch]
        acked = sum(len(batches[number]) for number, _ in writer.acks)
        assert acked <= len(written) <= len(expected), f"{context}: writer {writer.prefix}"
        assert written == expected[: len(written)], f"{context}: writer {writer.prefix}'s events out of order or never appended"
        return acked

    def check_quarantines(self, acked: set[str]) -> None:
        """Every quarantine file is named by one log_repaired record, holds what it says, and no acked event;
        every log_repaired names a file that is there."""
        files = quarantined(self.path)
        unnamed = files - set(self.repairs)
        assert not unnamed, f"quarantine files no log_repaired record names: {sorted(unnamed)}"
        for name, repaired in self.repairs.items():
            assert name in files, f"log_repaired names {name}, which is not there"
            torn = (self.path.parent / name).read_bytes()
            assert (len(torn), digest_bytes(torn)) == (repaired.length, repaired.torn_digest), (
                f"{name} holds {len(torn)} bytes; its log_repaired record says {repaired.length} ({repaired.reason})"
            )
            tags = {match.decode() for match in _TAG.findall(torn)}
            assert not tags & acked, f"{name} holds acknowledged events: {sorted(tags & acked)[:5]}"
            assert len({writer_of(tag) for tag in tags}) <= 1, f"{name} holds the batches of several writers: {sorted(tags)[:5]}"

    def full_verify(self) -> None:
        """The incremental scans trust the prefix they checked: recheck it whole."""
        scanner = Scanner(self.path, ChainState())
        records = list(scanner)
        assert scanner.problem is None, scanner.problem
        assert [r.seq for r in records] == list(range(1, len(records) + 1))
        assert [r.h for r in records] == [self.by_seq[r.seq].h for r in records]


def quarantined(path: Path) -> set[str]:
    """The quarantine files beside the log (`LOG.torn-<offset>[.n]`; a killed writer's `.tmp` files are not)."""
    return {p.name for p in path.parent.glob(f"{path.name}.torn-*") if not p.name.endswith(".tmp")}


def written_by(records: Iterable[Record]) -> dict[str, list[Transition]]:
    """Transition events by the writer that appended them, in log order."""
    found: dict[str, list[Transition]] = {}
    for record in records:
        if isinstance(record.data, Transition):
            found.setdefault(writer_of(record.data.transfer_id), []).append(record.data)
    return found
