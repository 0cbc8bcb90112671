"""A stop request suspends a transfer at a chunk boundary: recorded, still syncing, resumable."""

from __future__ import annotations

import signal
from pathlib import Path

import anyio
import pytest

from engine.adapter import SyncAdapter
from engine.appender import DirectAppender
from engine.machine import make_dispatcher
from engine.redrive import redrive
from engine.runner import Job, run_jobs
from engine.stop import StopRequest, stop_on_signals
from events.clock import StepClock
from events.memory_log import MemoryLog
from events.observations import Suspended
from events.payloads import Transition
from events.record import Record
from events.vocabulary import State
from projections.fold import fold_records
from projections.transfers import Transfers
from tests.engine.conftest import CHUNK, FILE_TARGET, Stores, events_of, faulty, make_intent, no_sleep, stream_records, types_of


class StopAfter(StopRequest):
    """A stop the adapter sees at its `checks`-th look (as if a signal came during that chunk)."""

    def __init__(self, checks: int) -> None:
        super().__init__()
        self.checks = checks

    @property
    def requested(self) -> bool:
        self.checks -= 1
        if self.checks < 0:
            self.request("SIGTERM")
        return bool(self.signal)


def _run(memory_log: MemoryLog, stores: Stores, stop: StopRequest | None, resume_from: str | None = None) -> list[Record]:
    intent = make_intent(stores)
    adapter = SyncAdapter(
        appender=DirectAppender(memory_log),
        source=stores.source,
        target=faulty(stores.target, "", CHUNK),
        dispatcher=make_dispatcher(True),
        clock=StepClock(),
        sleep=no_sleep,
        stop=stop,
    )
    result = anyio.run(adapter.run, intent, resume_from)
    assert result.suspended is (stop is not None)
    return stream_records(memory_log, intent.transfer_id)


def test_a_stop_mid_transfer_records_suspended_after_the_checkpoint_and_stays_syncing(memory_log: MemoryLog, stores: Stores) -> None:
    """Stopped during chunk 2: chunks 0..1 are checkpointed, `suspended` names that checkpoint, no transition follows."""
    records = _run(memory_log, stores, StopAfter(2))
    last = records[-1].data
    assert isinstance(last, Suspended)
    assert (last.signal, last.checkpoint, last.committed_cursor) == ("SIGTERM", f".{FILE_TARGET}.asup-ckpt.json", 2 * CHUNK)
    assert types_of(records)[-2] == "checkpoint_written"  # the chunk in hand was finished and checkpointed first
    transitions = [e for e in events_of(records) if isinstance(e, Transition)]
    assert transitions[-1].to_state is State.SYNCING
    assert not stores.final(FILE_TARGET).exists()


def test_a_suspended_transfer_resumes_to_the_same_bytes_and_replays(memory_log: MemoryLog, stores: Stores) -> None:
    """The lease and handle are released: a resume from the named checkpoint completes byte-identical, and both sessions re-drive."""
    _run(memory_log, stores, StopAfter(3))
    records = _run(memory_log, stores, None, stores.checkpoint(FILE_TARGET))
    assert stores.final(FILE_TARGET).read_bytes() == (stores.source_dir / "artifact.bin").read_bytes()
    recorded = [e for e in events_of(records) if isinstance(e, Transition)]
    assert redrive(events_of(records), make_dispatcher(True)) == recorded
    assert recorded[-1].to_state is State.COMPLETED


def test_a_stop_before_the_first_chunk_is_suspended_with_no_checkpoint(memory_log: MemoryLog, stores: Stores) -> None:
    """A stop already requested when the transfer starts: suspended at 0 with no checkpoint, after the lease and epoch."""
    stop = StopRequest()
    stop.request("SIGINT")
    records = _run(memory_log, stores, stop)
    last = records[-1].data
    assert isinstance(last, Suspended)
    assert (last.signal, last.checkpoint, last.committed_cursor) == ("SIGINT", "", 0)
    assert "checkpoint_written" not in types_of(records)


def test_the_projection_marks_a_suspension_until_the_next_session(memory_log: MemoryLog, stores: Stores) -> None:
    """`TransferView.suspended` and `checkpoint` are set by `suspended` and cleared by the next intent."""
    records = _run(memory_log, stores, StopAfter(1))
    projection = Transfers()
    states = {"transfers": projection.initial()}
    fold_records([projection], states, records)
    view = states["transfers"].transfers[records[0].stream]
    assert (view.state, view.suspended, view.checkpoint) == (State.SYNCING, True, f".{FILE_TARGET}.asup-ckpt.json")
    resumed = _run(memory_log, stores, None, stores.checkpoint(FILE_TARGET))
    fold_records([projection], states, resumed[len(records) :])
    view = states["transfers"].transfers[records[0].stream]
    assert (view.state, view.suspended, view.checkpoint) == (State.COMPLETED, False, "")


def test_the_runner_suspends_running_transfers_and_starts_no_queued_one(tmp_path: Path) -> None:
    """Limit 1, three jobs, a stop during the first: it suspends, the other two never start (nothing recorded)."""
    stores = [Stores(tmp_path / str(i), seed=i) for i in range(3)]
    jobs = [Job(make_intent(s, seed=i), s.source, faulty(s.target, "", CHUNK)) for i, s in enumerate(stores)]
    log = MemoryLog("runner-stop", clock=StepClock())
    results = anyio.run(lambda: run_jobs(jobs, log, limit=1, sleep=no_sleep, stop=StopAfter(2)))
    assert [(r.transfer_id, r.suspended, r.state) for r in results] == [(jobs[0].intent.transfer_id, True, State.SYNCING)]
    assert {r.stream for r in log.read() if r.stream != "$log"} == {jobs[0].intent.transfer_id}


def test_the_first_signal_sets_the_flag_and_the_second_interrupts() -> None:
    """Inside `stop_on_signals`, SIGTERM only sets the request; another signal raises KeyboardInterrupt; handlers are restored."""
    before = signal.getsignal(signal.SIGINT)
    stop = StopRequest()
    with stop_on_signals(stop):
        signal.raise_signal(signal.SIGTERM)
        assert stop.signal == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGINT)
        assert stop.signal == "SIGTERM"  # the first signal names the stop
    assert signal.getsignal(signal.SIGINT) is before
