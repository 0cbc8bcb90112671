"""Fail-at-N and power-cut loops over the JSONL log's file I/O (RELIABILITY rows 2, 4, 9-12).

A loop first runs its step (an append batch, a repairing open, the head record save, the
writer index save, the creation of a log) once through a counting `FaultyFS` to learn the
K calls it makes; then, for N = 1..K, runs it again from the same files with call N
failing: EIO and ENOSPC, once and for good, and, where call N is a write, a short write
followed by ENOSPC. The code may raise only `AsupError` (anything else is a failure of the
run). Then the log is reopened through the real OS (which repairs a torn tail) and checked
as Jepsen checks a history: it verifies; every acknowledged event is present exactly once
and in order; nothing else is there but events of the batches that failed, each whole or
absent (a prefix when the fault was persistent, as the writer could then not cut it back).

The power-cut loops cut the power at seeded random calls of a run of batches (durability
batch) and at every call of a repairing open, in each cut mode, with the names not yet
fsynced into their directory lost or kept (kept: what a killed process leaves), and check
the same, and that what a repair quarantined holds nothing acknowledged.

Every run of a loop is tried; the failures are reported together, one line each.
"""

from __future__ import annotations

import errno
import random
import shutil
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from events import head_record
from events.digest import digest_bytes
from events.errors import AsupError
from events.jsonl_log import HEADER_START, JsonlLog
from events.payloads import LogRepaired, Transition
from events.record import Record
from events.scan import read_records
from events.segments import verify_log
from events.store import Pending
from events.testing import FaultyFS, PowerCut, transition
from events.testing.faulty_fs import CUT_MODES, MUTATING_OPS, Call, CutMode
from events.vocabulary import Durability
from tests.reliability.crashloop import report

LOG = "log.jsonl"
TORN = b'{"v":1,"seq":6,"stream":"a","sv":4,"type":"transition","da'  # a crash cut this line short
BATCH = 3


# --- histories ------------------------------------------------------------------------------


@dataclass
class History:
    """What the code under test told its caller."""

    acked: list[str] = field(default_factory=list)  # tags of events whose append returned
    failed: list[list[str]] = field(default_factory=list)  # tags of batches whose append raised
    errors: list[AsupError] = field(default_factory=list)
    close_errors: list[AsupError] = field(default_factory=list)
    marks: list[tuple[int | None, int]] = field(default_factory=list)  # (the head record's seq, the log's) after the step


def _tags(label: str, size: int = BATCH) -> list[str]:
    return [f"{label}-{k}" for k in range(size)]


def _pending(batch: list[str]) -> list[Pending]:
    return [Pending("ab"[k % 2], transition(tag)) for k, tag in enumerate(batch)]


def _attempt(log: JsonlLog, history: History, batch: list[str], step: AbstractContextManager[None] | None = None) -> None:
    try:
        with step or nullcontext():
            positions = log.append_batch(_pending(batch))
    except AsupError as exc:
        history.failed.append(batch)
        history.errors.append(exc)
        return
    assert len(positions) == len(batch)
    history.acked += batch


def _close(log: JsonlLog, history: History) -> None:
    try:
        log.close()
    except AsupError as exc:
        history.close_errors.append(exc)


# --- faults and steps -------------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """Call `n` of the step (`op` on `name`) fails with `error` (None: a short write, then
    ENOSPC); `write` is its number among the step's writes."""

    n: int
    op: str
    name: str
    error: int | None
    persistent: bool = False
    write: int = 0

    def arm(self, fs: FaultyFS) -> None:
        if self.error is None:
            fs.short_write_at(self.write)
        else:
            fs.fail_at(self.n, self.error, persistent=self.persistent)

    def __str__(self) -> str:
        what = "short write + ENOSPC" if self.error is None else errno.errorcode[self.error]
        return f"call {self.n} ({self.op} {self.name}) {what}{' for good' if self.persistent else ''}"


def faults(calls: list[Call]) -> Iterator[Fault]:
    """Every fault a loop tries for a step that made `calls`."""
    writes = 0
    for n, call in enumerate(calls, 1):
        errors = [errno.EIO, errno.ENOSPC] if call.op in MUTATING_OPS | {"close"} else [errno.EIO]
        for error in errors:
            yield Fault(n, call.op, call.name, error)
            yield Fault(n, call.op, call.name, error, persistent=True)
        if call.op == "write":
            writes += 1
            yield Fault(n, call.op, call.name, None, write=writes)


class Step:
    """The part of a scenario under test: `with step():` arms the fault as it starts, and
    records the counted calls it makes."""

    def __init__(self, fs: FaultyFS, fault: Fault | None) -> None:
        self.fs = fs
        self.fault = fault
        self.calls: list[Call] = []
        self.entered = 0

    @contextmanager
    def __call__(self) -> Iterator[None]:
        self.entered += 1
        if self.fault is not None:
            self.fault.arm(self.fs)
        start = len(self.fs.trace)
        try:
            yield
        finally:
            self.calls = [c for c in self.fs.trace[start:] if c.n]


Scenario = Callable[[Path, FaultyFS, Step], History]
Check = Callable[[Path, History, Fault], None]
OnPaths = Callable[[Path], bool] | None  # which calls a loop counts and faults (None: all)


# --- the checker -------------------------------------------------------------------------------


def check_log(path: Path, history: History, *, prefix_ok: bool) -> list[Record]:
    """Reopen through the real OS, verify, and hold the records to the history."""
    with JsonlLog.open(path):  # repairs a torn tail, refuses anything worse
        pass
    verified = verify_log(path)
    assert verified.problem is None, verified.problem
    records = list(read_records(path, tolerate_torn_tail=False))
    found = [r.data.transfer_id for r in records if isinstance(r.data, Transition)]
    twice = [tag for tag, times in Counter(found).items() if times > 1]
    assert not twice, f"present more than once: {twice}"
    acked = set(history.acked)
    assert [tag for tag in found if tag in acked] == history.acked, f"acknowledged events missing or out of order: {found}"
    for batch in history.failed:
        present = [tag for tag in batch if tag in found]
        allowed = [batch[:k] for k in range(len(batch) + 1)] if prefix_ok else [[], batch]
        assert present in allowed, f"a failed batch is partly present: {present} of {batch}"
    failed = {tag for batch in history.failed for tag in batch}
    assert set(found) <= acked | failed, f"events nobody appended: {sorted(set(found) - acked - failed)}"
    return records


def _one_line(exc: BaseException) -> str:
    lines = str(exc).splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def _common(path: Path, history: History, fault: Fault) -> None:
    check_log(path, history, prefix_ok=fault.persistent)


def log_in(tmp_path: Path, label: str, template: Path | None = None) -> Path:
    """The log's path in a new directory `label/logs` (a copy of `template`'s when given),
    so every run's directory has the same name in the trace."""
    directory = tmp_path / label / "logs"
    if template is None:
        directory.mkdir(parents=True)
    else:
        shutil.copytree(template.parent, directory)
    return directory / LOG


def run_loop(tmp_path: Path, setup: Callable[[Path], History], scenario: Scenario, check: Check = _common, paths: OnPaths = None) -> int:
    """Run `scenario` once counting, then under every fault; returns how many runs it made."""
    template = log_in(tmp_path, "template")
    before = setup(template)
    counting = _run_once(log_in(tmp_path, "count", template), before, scenario, None, paths)
    assert counting.calls, "the step made no calls: the loop would test nothing"
    failures: list[str] = []
    runs = list(faults(counting.calls))
    for index, fault in enumerate(runs):
        try:
            step = _run_once(log_in(tmp_path, f"run-{index}", template), before, scenario, fault, paths, check)
            assert step.fs.faults >= 1, "the fault never fired: the step's calls differ from the counting run's"
        except Exception as exc:  # an AssertionError, or an exception other than AsupError that the code let out
            failures.append(f"{fault}: {_one_line(exc)}")
        shutil.rmtree(tmp_path / f"run-{index}", ignore_errors=True)
    assert not failures, f"{len(failures)} of {len(runs)} runs failed:\n" + "\n".join(failures)
    return len(runs)


def _run_once(path: Path, before: History, scenario: Scenario, fault: Fault | None, paths: OnPaths, check: Check = _common) -> Step:
    fs = FaultyFS(paths=paths)
    step = Step(fs, fault)
    try:
        history = scenario(path, fs, step)
    finally:
        fs.close_all()
    assert step.entered == 1, "the scenario never reached its step"
    merged = History(before.acked + history.acked, history.failed, history.errors, history.close_errors, history.marks)
    check(path, merged, fault or Fault(0, "", "", errno.EIO))
    return step


# --- setups ---------------------------------------------------------------------------------------


def _new(path: Path) -> History:
    return History()


def _with_batches(path: Path) -> History:
    history = History()
    with JsonlLog.open(path) as log:
        for label in ("old", "older"):
            _attempt(log, history, _tags(label))
    return history


def _with_torn_tail(path: Path) -> History:
    history = _with_batches(path)
    with path.open("ab") as fh:
        fh.write(TORN)
    return history


# --- (a) an append batch --------------------------------------------------------------------------


def _append_scenario(durability: Durability) -> Scenario:
    def scenario(path: Path, fs: FaultyFS, step: Step) -> History:
        history = History()
        log = JsonlLog.open(path, fs=fs, durability=durability)
        _attempt(log, history, _tags("before"))
        _attempt(log, history, _tags("doomed"), step())
        _attempt(log, history, _tags("after"))  # a fenced writer refuses it; a healthy one takes it
        _close(log, history)
        return history

    return scenario


@pytest.mark.parametrize("durability", [Durability.BATCH, Durability.ALWAYS])
def test_fail_at_n_during_an_append(tmp_path: Path, durability: Durability) -> None:
    report(f"fail-at-N: an append ({durability})", Counter(faulted_runs=run_loop(tmp_path, _with_batches, _append_scenario(durability))))


# --- (b) opening a log with a torn tail (repair) ---------------------------------------------------


def _open_scenario(path: Path, fs: FaultyFS, step: Step) -> History:
    history = History()
    try:
        with step():
            log = JsonlLog.open(path, fs=fs)
    except AsupError as exc:
        history.errors.append(exc)
        return history
    _attempt(log, history, _tags("after"))
    _close(log, history)
    return history


def _check_repaired(path: Path, history: History, fault: Fault) -> None:
    """The torn bytes were kept (in a quarantine file a `log_repaired` record names), never lost."""
    records = check_log(path, history, prefix_ok=fault.persistent)
    repairs = [r.data for r in records if isinstance(r.data, LogRepaired)]
    assert repairs, "no log_repaired record"
    for repair in repairs:
        kept = path.with_name(repair.quarantine)
        assert kept.exists(), f"{repair.quarantine} is named by log_repaired but missing"
        held = kept.read_bytes()
        assert digest_bytes(held) == repair.torn_digest, (
            f"{repair.quarantine} holds {len(held)} bytes, not the {repair.length} bytes its log_repaired ({repair.reason}) names"
        )
    assert any(path.with_name(r.quarantine).read_bytes() == TORN for r in repairs), "the torn bytes were not kept"
    assert len({r.quarantine for r in repairs}) == len(repairs), "one quarantine file recorded twice"


def test_fail_at_n_while_opening_repairs_a_torn_tail(tmp_path: Path) -> None:
    report("fail-at-N: a repairing open", Counter(faulted_runs=run_loop(tmp_path, _with_torn_tail, _open_scenario, _check_repaired)))


# --- (c) the head record saved after a batch, (d) the writer index --------------------------------


def _is_head(path: Path) -> bool:
    """The head record, its temp files, and the directory a save opens to replace it."""
    return path.name.startswith(LOG + ".head.") or path.is_dir()


def _is_index(path: Path) -> bool:
    """The writer index, its temp files, and the directory a save opens to replace it."""
    return path.name.startswith(LOG + ".index.") or path.is_dir()


def _save_scenario(path: Path, fs: FaultyFS, step: Step) -> History:
    history = History()
    log = JsonlLog.open(path, fs=fs)
    _attempt(log, history, _tags("first"))
    _attempt(log, history, _tags("second"), step())
    mark = head_record.load(path)
    history.marks.append((None if mark is None else mark.last_seq, log.last_position()[0]))
    _attempt(log, history, _tags("third"))
    _close(log, history)
    return history


def _check_save_never_failed_an_append(path: Path, history: History, fault: Fault) -> None:
    """Finding 8: the batches were durable, so no append and no close may fail for a side file."""
    assert not history.failed, f"a side-file fault failed an append: {history.errors}"
    assert not history.close_errors, f"a side-file fault failed close(): {history.close_errors}"
    check_log(path, history, prefix_ok=False)


def _check_no_stale_mark(path: Path, history: History, fault: Fault) -> None:
    """DESIGN: a failed save removes the head record, so no stale mark is left behind (a
    persistent fault may fail the removal too)."""
    _check_save_never_failed_an_append(path, history, fault)
    [(mark, last)] = history.marks
    assert mark in (None, last) or fault.persistent, f"a stale head record (seq {mark}) after the batch of seq {last}"


def test_fail_at_n_while_saving_the_head_record_never_fails_an_append(tmp_path: Path) -> None:
    report(
        "fail-at-N: head record saves",
        Counter(faulted_runs=run_loop(tmp_path, _with_batches, _save_scenario, _check_no_stale_mark, paths=_is_head)),
    )


def _close_scenario(path: Path, fs: FaultyFS, step: Step) -> History:
    history = History()
    log = JsonlLog.open(path, fs=fs)
    _attempt(log, history, _tags("first"))
    try:
        with step():
            log.close()
    except AsupError as exc:
        history.close_errors.append(exc)
    return history


def test_fail_at_n_while_saving_the_writer_index_never_fails_close(tmp_path: Path) -> None:
    report(
        "fail-at-N: writer index saves",
        Counter(faulted_runs=run_loop(tmp_path, _with_batches, _close_scenario, _check_save_never_failed_an_append, paths=_is_index)),
    )


# --- (e) creating a new log --------------------------------------------------------------------------


def _check_created(path: Path, history: History, fault: Fault) -> None:
    """Where the creation failed, nothing half made is left that a reopen cannot take."""
    if path.exists() and path.stat().st_size:
        assert path.read_bytes().startswith(HEADER_START), "a log file without its header"
    check_log(path, history, prefix_ok=fault.persistent)


def test_fail_at_n_while_creating_a_log(tmp_path: Path) -> None:
    report("fail-at-N: creating a log", Counter(faulted_runs=run_loop(tmp_path, _new, _open_scenario, _check_created)))


# --- power cuts -----------------------------------------------------------------------------------------


def _batches(seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    return [_tags(f"p{n}", rng.randint(1, 5)) for n in range(6)]


def _appends(path: Path, fs: FaultyFS, batches: list[list[str]], history: History) -> None:
    log = JsonlLog.open(path, fs=fs, durability=Durability.BATCH)
    for batch in batches:
        history.failed = [batch]  # in flight until it returns
        positions = log.append_batch(_pending(batch))
        assert len(positions) == len(batch)
        history.acked += batch
        history.failed = []
    log.close()


def _check_after_cut(path: Path, history: History) -> None:
    """Every acknowledged batch is there; whatever a repair quarantined holds none of it."""
    check_log(path, history, prefix_ok=True)  # lines of the batch in flight may have reached the disk
    for kept in path.parent.glob(LOG + ".torn-*"):
        data = kept.read_bytes()
        leaked = [tag for tag in history.acked if f'"transfer_id":"{tag}"'.encode() in data]
        assert not leaked, f"{kept.name} holds acknowledged events {leaked}"


def cut_points(calls: list[Call]) -> list[int]:
    """The calls worth cutting the power before: only a call that changes the disk changes
    what a cut leaves, so a cut before any other call is the same as before the next of those."""
    return [n for n, call in enumerate(calls, 1) if call.op in MUTATING_OPS - {"open"} or "O_CREAT" in call.detail]


@pytest.mark.parametrize("names", [True, False], ids=["names-undone", "names-kept"])
@pytest.mark.parametrize("mode", CUT_MODES)
def test_power_cut_at_random_calls_of_appends_loses_nothing_acknowledged(tmp_path: Path, mode: CutMode, names: bool) -> None:
    batches = _batches(seed=11)
    counting = FaultyFS()
    _appends(log_in(tmp_path, "count"), counting, batches, History())
    points = cut_points(counting.trace)
    rng = random.Random(f"{mode}/{names}")
    failures: list[str] = []
    repaired = 0
    for run in range(40):
        n = rng.choice(points)
        path = log_in(tmp_path, f"run-{run}")
        fs = FaultyFS(seed=run)
        fs.cut_at(n, mode, names=names)
        history = History()
        try:
            with pytest.raises(PowerCut):
                _appends(path, fs, batches, history)
            fs.close_all()
            _check_after_cut(path, history)
        except Exception as exc:
            cut = counting.trace[n - 1]
            failures.append(f"cut before call {n} of {len(counting.trace)} ({cut.op} {cut.name}): {_one_line(exc)}")
        finally:
            fs.close_all()
        repaired += any(path.parent.glob(LOG + ".torn-*"))
    assert not failures, f"{len(failures)} of 40 cuts failed:\n" + "\n".join(failures)
    assert repaired or mode == "drop", "no cut left a tail to repair: the loop tested nothing of it"
    report(f"power cut during appends ({mode}, names {'undone' if names else 'kept'})", Counter(cuts=40, tails_repaired=repaired))


@pytest.mark.parametrize("names", [True, False], ids=["names-undone", "names-kept"])
@pytest.mark.parametrize("mode", CUT_MODES)
def test_power_cut_at_every_call_of_a_repair_keeps_the_torn_bytes(tmp_path: Path, mode: CutMode, names: bool) -> None:
    template = log_in(tmp_path, "template")
    before = _with_torn_tail(template)
    counting = FaultyFS()
    JsonlLog.open(log_in(tmp_path, "count", template), fs=counting).close()
    failures: list[str] = []
    points = cut_points(counting.trace)
    for n in points:
        path = log_in(tmp_path, f"run-{n}", template)
        fs = FaultyFS(seed=n)
        fs.cut_at(n, mode, names=names)
        try:
            with pytest.raises(PowerCut):
                JsonlLog.open(path, fs=fs).close()
            fs.close_all()
            _check_repaired(path, before, Fault(n, "", "", errno.EIO))
        except Exception as exc:
            failures.append(f"cut before call {n} ({counting.trace[n - 1].op} {counting.trace[n - 1].name}): {_one_line(exc)}")
        finally:
            fs.close_all()
    assert not failures, f"{len(failures)} of {len(points)} cuts failed:\n" + "\n".join(failures)
    report(f"power cut at every call of a repair ({mode}, names {'undone' if names else 'kept'})", Counter(cuts=len(points)))
