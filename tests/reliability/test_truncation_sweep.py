"""The log cut at every byte offset of its last records, with and without its head record.

The log holds acknowledged records (its head record, the high-water mark, saved after the
last of them) and then a batch of two records a crashed writer appended after the mark
and never acknowledged (bytes made by a real append to a scratch copy). The file is cut
in place (same inode, as `truncate -s` would) at every offset from the start of the last
two acknowledged records to the end of the unacknowledged ones, and opened:

- with the head record: a cut below the mark is a rollback, refused with `log_rollback`
  naming both sizes, and nothing is written; a cut at or beyond the mark that leaves part
  of a line is a torn tail, repaired (quarantined, cut back, `log_repaired`);
- with the head record deleted: only an incomplete last line is torn (repaired), and
  nothing else is cut;

and after every open that succeeded, no acknowledged record is missing and the log verifies.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from events.errors import AsupError, ErrorCode
from events.jsonl_log import JsonlLog
from events.observations import LeaseChecked
from events.payloads import LogRepaired
from events.segments import verify_log
from events.store import Pending
from events.testing import StepClock
from tests.cli import run_asup
from tests.reliability.crashloop import quarantined, report

ACKED_BATCHES = 4
SWEPT = 2  # records on each side of the mark
# The records are small observations (about 330 bytes): every offset is an open, most of them a repair with its fsyncs.


def head_record(path: Path) -> Path:
    return path.with_name(path.name + ".head.json")


class Sweep:
    """A log and its side files as the last acknowledged batch left them, plus the unacknowledged bytes."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir()
        self.path = directory / "sweep.jsonl"
        with JsonlLog.open(self.path, clock=StepClock()) as log:
            for j in range(ACKED_BATCHES):
                log.append_batch([Pending(f"s-{j % 2}", LeaseChecked(acquired=True, holder=f"a{j}"))])
        self.mark = self.path.stat().st_size
        self.side = {p.name: p.read_bytes() for p in directory.iterdir() if p != self.path}
        assert head_record(self.path).name in self.side, "the appends left no head record"
        self.full = self.path.read_bytes() + self._unacknowledged(directory.parent / "scratch")
        self.starts = [0, *(i + 1 for i, byte in enumerate(self.full) if byte == ord("\n"))]  # where each line begins
        assert self.mark in self.starts
        self.first = self.starts[self.starts.index(self.mark) - SWEPT]

    def _unacknowledged(self, scratch: Path) -> bytes:
        """The bytes the next writer's batch of SWEPT records appends after the mark."""
        scratch.mkdir()
        copy = scratch / self.path.name
        shutil.copyfile(self.path, copy)
        with JsonlLog.open(copy, clock=StepClock(start_ns=1_790_000_000_000_000_000)) as log:
            log.append_batch([Pending(f"s-{j}", LeaseChecked(acquired=True, holder=f"u{j}")) for j in range(SWEPT)])
        return copy.read_bytes()[self.mark :]

    def cut(self, offset: int, with_head: bool) -> None:
        """The log cut at `offset` in place, its side files as the last acked batch left them (or no head record)."""
        for leftover in self.path.parent.iterdir():
            if leftover.name not in {self.path.name, *self.side}:
                leftover.unlink()
        for name, data in self.side.items():
            (self.path.parent / name).write_bytes(data)
        if not with_head:
            head_record(self.path).unlink()
        with self.path.open("r+b") as fh:
            fh.write(self.full[:offset])
            fh.truncate(offset)

    def line_start(self, offset: int) -> int:
        """Where the line holding byte `offset - 1` begins: what a repair cuts back to."""
        return max(start for start in self.starts if start <= offset)


def _open(sweep: Sweep) -> LogRepaired | AsupError | None:
    try:
        with JsonlLog.open(sweep.path) as log:
            return log.repaired
    except AsupError as error:
        return error


def _check_refused(sweep: Sweep, offset: int, outcome: LogRepaired | AsupError | None, context: str) -> None:
    assert isinstance(outcome, AsupError), f"{context}: a cut into acknowledged records was opened ({outcome})"
    assert outcome.code is ErrorCode.LOG_ROLLBACK, f"{context}: {outcome}"
    assert str(offset) in outcome.message and str(sweep.mark) in outcome.message, f"{context}: {outcome}"
    assert sweep.path.read_bytes() == sweep.full[:offset], f"{context}: a refused open wrote the log"
    assert quarantined(sweep.path) == set(), context


def _check_opened(sweep: Sweep, offset: int, with_head: bool, outcome: LogRepaired | AsupError | None, context: str) -> None:
    assert not isinstance(outcome, AsupError), f"{context}: {outcome}"
    start = sweep.line_start(offset)
    data = sweep.path.read_bytes()
    assert data[:start] == sweep.full[:start], f"{context}: a complete record was cut"
    if with_head:
        assert data[: sweep.mark] == sweep.full[: sweep.mark], f"{context}: an acknowledged record is missing"
    if start == offset:
        assert outcome is None, f"{context}: a cut at a line boundary was repaired"
        assert data == sweep.full[:offset], context
    else:
        assert outcome is not None, f"{context}: the incomplete last line was not repaired"
        assert (outcome.offset, outcome.length) == (start, offset - start), context
        assert (sweep.path.parent / outcome.quarantine).read_bytes() == sweep.full[start:offset], context
        assert quarantined(sweep.path) == {outcome.quarantine}, context
        record = msgspec.json.decode(data[start:].split(b"\n", 1)[0])
        assert record["type"] == "log_repaired" and record["data"]["quarantine"] == outcome.quarantine, context
    verified = verify_log(sweep.path)
    assert verified.problem is None, f"{context}: {verified.problem}"
    assert verified.last_seq == sweep.starts.index(start) + (outcome is not None), context


@pytest.mark.parametrize("with_head", [True, False], ids=["head-record", "no-head-record"])
def test_every_cut_of_the_last_records_is_repaired_refused_or_left(memory_dir: Path, with_head: bool) -> None:
    """Beyond the mark: repaired; into acknowledged bytes: refused as a rollback; no head record: only a partial line is torn."""
    sweep = Sweep(memory_dir / "log")
    counts: Counter[str] = Counter()
    for offset in range(sweep.first, len(sweep.full)):
        context = f"cut at byte {offset} (mark {sweep.mark}, {'with' if with_head else 'without'} head record)"
        sweep.cut(offset, with_head)
        outcome = _open(sweep)
        if with_head and offset < sweep.mark:
            _check_refused(sweep, offset, outcome, context)
            counts["refused"] += 1
        else:
            _check_opened(sweep, offset, with_head, outcome, context)
            counts["repaired" if outcome is not None else "clean"] += 1
    report(f"truncation sweep ({'with' if with_head else 'without'} head record)", Counter(offsets=len(sweep.full) - sweep.first) + counts)
    assert counts["repaired"] and counts["clean"]
    assert bool(counts["refused"]) is with_head


def test_asup_log_repair_refuses_a_rollback_without_a_traceback(tmp_path: Path) -> None:
    """`asup log repair` on a log cut below its mark: exit 1, one `log_rollback` line, the file untouched."""
    sweep = Sweep(tmp_path / "log")
    offset = sweep.mark - 5
    sweep.cut(offset, with_head=True)
    result = run_asup("log", "repair", str(sweep.path), cwd=tmp_path)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "log_rollback" in result.stderr and "Traceback" not in result.stderr, result.stderr
    assert sweep.path.read_bytes() == sweep.full[:offset]
