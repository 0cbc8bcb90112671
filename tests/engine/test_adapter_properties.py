"""A hypothesis state machine drives the real adapter on small files with random fault
plans, modes, chunk sizes and dispatchers, and checks the contract's invariants over the
recorded log after every transfer (a crashed session is resumed from its checkpoint)."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import anyio
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test

from engine.adapter import SyncAdapter, TransferResult
from engine.appender import DirectAppender
from engine.faults import FaultPlan, FaultSpec, FaultyTarget, SimulatedCrash
from engine.intent import build_intent
from engine.machine import AdapterMachine, CompiledDispatch, make_dispatcher
from engine.redrive import redrive
from engine.stores import DirectoryStore
from events.clock import StepClock
from events.memory_log import MemoryLog
from events.observations import Intent, IntentRecorded, TargetHashed
from events.payloads import Transition
from events.record import Record
from events.vocabulary import TERMINAL_STATES, Mode, State, Trigger
from tests.engine.conftest import ARTIFACT_CLASS, no_sleep, sessions_of

FAULT_KINDS = ("interruption", "partial_write", "checksum_mismatch", "epoch_drift", "slow", "late_ack", "crash", "stale_metadata")
HARMLESS = {"slow", "stale_metadata"}  # stale_metadata only fires on a resume
MACHINE = AdapterMachine()  # building a transitions.Machine is the slow part: share one
COMPILED = CompiledDispatch()


class AdapterContract(RuleBasedStateMachine):
    """Rules build a transfer (faults, mode, chunk size, size, dispatcher); `transfer` runs and checks it."""

    def __init__(self) -> None:
        super().__init__()
        self._tmp = tempfile.TemporaryDirectory(prefix="asup-props-")
        root = Path(self._tmp.name)
        self.source_dir, self.target_dir = root / "source", root / "target"
        self.source_dir.mkdir()
        self.target_dir.mkdir()
        self.log = MemoryLog("properties", clock=StepClock())
        self.faults: list[FaultSpec] = []
        self.mode = Mode.HARDENED
        self.chunk_size = 4096
        self.size = 3 * 4096 + 17
        self.lever = True
        self.runs = 0

    @rule(faults=st.lists(st.builds(FaultSpec, st.sampled_from(FAULT_KINDS), st.integers(0, 4)), min_size=1, max_size=3))
    def add_faults(self, faults: list[FaultSpec]) -> None:
        self.faults.extend(faults)

    @rule(mode=st.sampled_from(Mode))
    def pick_mode(self, mode: Mode) -> None:
        self.mode = mode

    @rule(chunk_size=st.sampled_from([4096, 5000, 8192]))
    def pick_chunk_size(self, chunk_size: int) -> None:
        self.chunk_size = chunk_size

    @rule(size=st.integers(1, 6 * 4096))
    def pick_size(self, size: int) -> None:
        self.size = size

    @rule(lever=st.booleans())
    def pick_lever(self, lever: bool) -> None:
        self.lever = lever

    @precondition(lambda self: bool(self.faults))
    @rule()
    def transfer(self) -> None:
        number, self.runs = self.runs, self.runs + 1
        name, target_name = f"a{number}.bin", f"a{number}.out"
        data = random.Random(number).randbytes(self.size)
        (self.source_dir / name).write_bytes(data)
        source, target = DirectoryStore(self.source_dir), DirectoryStore(self.target_dir)
        intent = build_intent(
            source, name, target_name, artifact_class=ARTIFACT_CLASS, mode=self.mode, seed=number, chunk_size=self.chunk_size
        )
        plan, self.faults = FaultPlan(self.faults), []
        result: TransferResult | None = None
        resume_from: str | None = None
        pending = list(plan.faults)
        while True:
            faulty = FaultyTarget(target, FaultPlan(pending), self.chunk_size, sleep=lambda _s: None)
            adapter = SyncAdapter(
                appender=DirectAppender(self.log),
                source=source,
                target=faulty,
                dispatcher=make_dispatcher(self.lever),
                clock=StepClock(),
                sleep=no_sleep,
            )
            try:
                result = anyio.run(adapter.run, intent, resume_from)
                break
            except SimulatedCrash:
                pending = list(faulty.pending)
                checkpoint = target.checkpoint_path(target_name)
                if not checkpoint.exists():  # died before its first checkpoint: nothing to resume
                    break
                resume_from = str(checkpoint)
        self.check(intent, plan, result, target, data)

    def check(self, intent: Intent, plan: FaultPlan, result: TransferResult | None, target: DirectoryStore, data: bytes) -> None:
        everything = list(self.log.read())
        assert [r.seq for r in everything] == list(range(1, len(everything) + 1)), "seq is contiguous from 1"
        records = [r for r in everything if r.stream == intent.transfer_id]
        assert [r.sv for r in records] == list(range(1, len(records) + 1)), "sv is contiguous per stream"
        for session in sessions_of(records):
            check_session(session, intent)
        transitions = [r.data for r in records if isinstance(r.data, Transition)]
        terminal = [i for i, r in enumerate(records) if isinstance(r.data, Transition) and r.data.to_state in TERMINAL_STATES]
        assert terminal in ([], [len(records) - 1]), "nothing after a terminal state"
        events = [r.data for r in records]
        assert redrive(events, MACHINE) == transitions
        assert redrive(events, COMPILED) == transitions
        final = target.path(intent.target)
        if result is None:
            assert not terminal and not final.exists()
            return
        last = transitions[-1]
        assert (result.state, result.reason_code) == (last.to_state, last.reason_code)
        assert result.state in TERMINAL_STATES
        if result.state is State.COMPLETED:
            assert final.read_bytes() == data
        else:
            assert not final.exists(), "a failed transfer leaves nothing under the final name"
        if all(f.kind in HARMLESS for f in plan.faults):
            assert result.state is State.COMPLETED, f"plan {plan} should complete"

    def teardown(self) -> None:
        self._tmp.cleanup()


def check_session(session: list[Record], intent: Intent) -> None:
    """Per session: attempt monotonic and bounded, cursor monotonic, reason codes on failures,
    completed only after a target_hashed with the expected digest."""
    first = session[0].data
    assert isinstance(first, IntentRecorded) and first.intent == intent
    attempts: list[int] = []
    cursors: list[int] = []
    verified = False
    for record in session:
        event = record.data
        if isinstance(event, TargetHashed):
            verified = (event.digest, event.size) == (intent.expected_checksum, intent.size)
        if not isinstance(event, Transition):
            continue
        attempts.append(event.attempt)
        cursors.append(event.committed_cursor)
        assert event.transfer_id == intent.transfer_id and event.seed == intent.seed and event.mode is intent.mode
        assert 0 <= event.committed_cursor <= intent.size
        if event.to_state is State.FAILED_CLOSED:
            assert event.reason_code is not None, "every failed_closed transition carries a reason code"
        if event.to_state is State.COMPLETED:
            assert event.trigger is Trigger.CHECKSUM_VALIDATED and event.reason_code is None
            assert verified, "completed only after a target_hashed with the expected digest"
            assert event.committed_cursor == intent.size
    assert attempts == sorted(attempts), "attempt is monotonic within a session"
    assert all(a <= intent.max_attempts for a in attempts), "attempt never exceeds max_attempts"
    assert cursors == sorted(cursors), "committed_cursor is monotonic within a session"


def test_adapter_contract_holds_under_random_fault_plans() -> None:
    """Random fault plans, modes, chunk sizes and dispatchers never break the contract's invariants over the recorded log."""
    run_state_machine_as_test(AdapterContract, settings=settings(max_examples=30, stateful_step_count=25, deadline=None))
