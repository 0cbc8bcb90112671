"""The adapter state machine: a transitions.Machine built from the contract table, and the
compiled lever proven equal to it for every (state, trigger, guard outcome)."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.contracts import MachineSpec, default_state_machine
from engine.machine import AdapterMachine, CompiledDispatch, Dispatcher, TransferModel, make_dispatcher
from engine.rules import Step
from events.vocabulary import TERMINAL_STATES, ReasonCode, State, Trigger

REASONS: list[ReasonCode | None] = [None, *ReasonCode]
NON_TERMINAL = [s for s in State if s not in TERMINAL_STATES]
Row = tuple[State, Trigger, State, ReasonCode | None]


def _spec() -> MachineSpec:
    return default_state_machine().state_machine


def _rows() -> set[Row]:
    return {(r.from_state, r.event, r.to_state, r.reason_code) for r in _spec().transition_table}


def _allowed() -> dict[tuple[State, Trigger, ReasonCode | None], State]:
    return {(r.from_state, r.event, r.reason_code): r.to_state for r in _spec().transition_table}


def _guard_reason(transition: Any) -> ReasonCode | None:
    """The one reason code under which the transition's guard lets it fire."""
    (condition,) = transition.conditions
    passing = [r for r in REASONS if condition.func(SimpleNamespace(kwargs={"reason": r}))]
    assert len(passing) == 1, f"guard of {transition.source}->{transition.dest} passes for {passing}"
    return passing[0]


def _cases() -> Iterator[tuple[State, Trigger, ReasonCode | None]]:
    for state in State:
        for trigger in Trigger:
            for reason in REASONS:
                yield state, trigger, reason


def _fire_fresh(dispatcher: Dispatcher, state: State, trigger: Trigger, reason: ReasonCode | None) -> tuple[Step, str]:
    model = TransferModel(f"t-{state}-{trigger}-{reason}", state)
    dispatcher.add(model)
    try:
        step = dispatcher.fire(model, trigger, reason)
    finally:
        dispatcher.remove(model)
    return step, model.state


def test_machine_transitions_are_exactly_the_contract_rows() -> None:
    """Every row of the table is a transition of the Machine (with its reason guard), and nothing else is."""
    machine = AdapterMachine()
    built: list[Row] = []
    for name, event in machine.machine.events.items():
        for source, transitions in event.transitions.items():
            for t in transitions:
                assert t.source == source
                assert t.dest is not None
                built.append((State(t.source), Trigger(name), State(t.dest), _guard_reason(t)))
    assert len(built) == len(set(built)) == len(machine.machine.get_transitions())
    assert set(built) == _rows()
    assert len(built) == len(_spec().transition_table) == 23


def test_machine_events_are_the_triggers_used_by_the_table() -> None:
    """The Machine knows exactly the triggers the table's rows use: no trigger of its own."""
    machine = AdapterMachine()
    assert set(machine.machine.events) == {r.event.value for r in _spec().transition_table}
    assert set(machine.machine.states) == {s.value for s in _spec().states}


def test_auto_transitions_are_off() -> None:
    """No `to_<state>` trigger exists on the Machine or on a model it drives."""
    machine = AdapterMachine()
    model = TransferModel("t-auto")
    machine.add(model)
    assert machine.machine.auto_transitions is False
    assert not [name for name in machine.machine.events if name.startswith("to_")]
    assert not [name for name in dir(model) if name.startswith("to_")]
    step = machine.fire(model, Trigger.START)
    assert step.to_state is State.CAPABILITY_CHECK
    machine.remove(model)


def test_machine_and_compiled_dispatch_agree_on_all_1056_cases() -> None:
    """For every (state, trigger, reason or none) both dispatchers give the same Step and resulting state."""
    machine, compiled = AdapterMachine(), CompiledDispatch()
    count = 0
    moved = 0
    for state, trigger, reason in _cases():
        expected = _fire_fresh(machine, state, trigger, reason)
        got = _fire_fresh(compiled, state, trigger, reason)
        assert got == expected, (state, trigger, reason)
        count += 1
        moved += expected[0].reason_code is not ReasonCode.INVALID_TRANSITION and state not in TERMINAL_STATES
    assert count == len(State) * len(Trigger) * len(REASONS) == 1056
    assert moved == len(_rows())  # exactly the table's rows are allowed moves


@pytest.mark.parametrize("lever", [False, True], ids=["machine", "compiled"])
def test_every_table_row_fires_to_its_target(lever: bool) -> None:
    """Each row, fired with its own reason code, moves from its state to its target carrying that code."""
    dispatcher = make_dispatcher(lever)
    for (from_state, trigger, reason), to_state in _allowed().items():
        step, state = _fire_fresh(dispatcher, from_state, trigger, reason)
        assert step == Step(from_state, trigger, to_state, reason)
        assert state == to_state.value


@pytest.mark.parametrize("lever", [False, True], ids=["machine", "compiled"])
def test_invalid_triggers_from_non_terminal_states_fail_closed(lever: bool) -> None:
    """Anything the table does not allow from a non-terminal state goes to failed_closed with invalid_transition."""
    dispatcher = make_dispatcher(lever)
    allowed = _allowed()
    checked = 0
    for state in NON_TERMINAL:
        for trigger in Trigger:
            for reason in REASONS:
                if (state, trigger, reason) in allowed:
                    continue
                step, after = _fire_fresh(dispatcher, state, trigger, reason)
                assert step == Step(state, trigger, State.FAILED_CLOSED, ReasonCode.INVALID_TRANSITION), (state, trigger, reason)
                assert after == State.FAILED_CLOSED.value
                checked += 1
    assert checked == len(NON_TERMINAL) * len(Trigger) * len(REASONS) - len(allowed)


def test_a_guard_outcome_decides_the_row() -> None:
    """capability_rejected without a reason, or with a reason no row names, is an invalid transition, not a rejection."""
    for lever in (False, True):
        dispatcher = make_dispatcher(lever)
        step, _ = _fire_fresh(dispatcher, State.CAPABILITY_CHECK, Trigger.CAPABILITY_REJECTED, None)
        assert step.reason_code is ReasonCode.INVALID_TRANSITION
        step, _ = _fire_fresh(dispatcher, State.CAPABILITY_CHECK, Trigger.CAPABILITY_REJECTED, ReasonCode.RETRY_EXHAUSTED)
        assert step.reason_code is ReasonCode.INVALID_TRANSITION
        step, _ = _fire_fresh(dispatcher, State.CAPABILITY_CHECK, Trigger.CAPABILITY_REJECTED, ReasonCode.CAPABILITY_MISMATCH)
        assert step == Step(State.CAPABILITY_CHECK, Trigger.CAPABILITY_REJECTED, State.FAILED_CLOSED, ReasonCode.CAPABILITY_MISMATCH)


@pytest.mark.parametrize("lever", [False, True], ids=["machine", "compiled"])
@pytest.mark.parametrize("terminal", sorted(TERMINAL_STATES))
def test_terminal_states_reject_every_trigger_and_stay(lever: bool, terminal: State) -> None:
    """In a terminal state any trigger is recorded as trigger_rejected naming the refused trigger; the state stays."""
    dispatcher = make_dispatcher(lever)
    model = TransferModel("t-terminal", terminal)
    dispatcher.add(model)
    for trigger in Trigger:
        for reason in REASONS:
            step = dispatcher.fire(model, trigger, reason)
            assert step == Step(terminal, Trigger.TRIGGER_REJECTED, terminal, None, rejected_trigger=trigger)
            assert model.state == terminal.value
    dispatcher.remove(model)


def test_one_machine_serves_many_models_without_cross_talk() -> None:
    """Models added to the one Machine move independently; removing one leaves the others driven."""
    machine = AdapterMachine()
    models = [TransferModel(f"t-{i}") for i in range(5)]
    for model in models:
        machine.add(model)
    assert all(m in machine.machine.models for m in models)
    assert machine.fire(models[0], Trigger.START).to_state is State.CAPABILITY_CHECK
    assert machine.fire(models[1], Trigger.RESUME_REQUESTED).to_state is State.CAPABILITY_CHECK
    assert machine.fire(models[1], Trigger.CAPABILITY_ACCEPTED).to_state is State.SYNCING
    assert machine.fire(models[2], Trigger.CHUNK_COMMITTED).reason_code is ReasonCode.INVALID_TRANSITION
    assert [m.state for m in models] == ["capability_check", "syncing", "failed_closed", "idle", "idle"]
    machine.remove(models[2])
    assert models[2] not in machine.machine.models
    assert machine.fire(models[3], Trigger.START).to_state is State.CAPABILITY_CHECK
    assert [m.state for m in models] == ["capability_check", "syncing", "failed_closed", "capability_check", "idle"]
    late = TransferModel("t-late", State.SYNCING)
    machine.add(late)  # a model joining in a later state keeps it
    assert late.state == "syncing"
    assert machine.fire(late, Trigger.CHECKSUM_VERIFICATION_STARTED).to_state is State.VERIFYING_CHECKSUM
    assert models[4].state == "idle"


_ROW_MOVES = sorted({(r.event, r.reason_code) for r in default_state_machine().state_machine.transition_table}, key=str)
_MOVE = st.one_of(
    st.sampled_from(_ROW_MOVES),  # mostly moves the table knows, so runs get deep
    st.tuples(st.sampled_from(list(Trigger)), st.sampled_from(REASONS)),
)
_SHARED = AdapterMachine()


@settings(max_examples=300)
@given(st.lists(_MOVE, max_size=30), st.sampled_from(list(State)))
def test_random_trigger_sequences_agree_and_terminal_is_final(moves: list[tuple[Trigger, ReasonCode | None]], start: State) -> None:
    """Random trigger sequences: both dispatchers agree step by step, and nothing ever leaves a terminal state."""
    compiled = CompiledDispatch()
    a, b = TransferModel("t-a", start), TransferModel("t-b", start)
    _SHARED.add(a)
    compiled.add(b)
    try:
        for trigger, reason in moves:
            was_terminal = State(a.state) in TERMINAL_STATES
            before = a.state
            step_a = _SHARED.fire(a, trigger, reason)
            step_b = compiled.fire(b, trigger, reason)
            assert step_a == step_b
            assert a.state == b.state == step_a.to_state.value
            assert step_a.from_state.value == before
            if was_terminal:
                assert a.state == before
                assert step_a.trigger is Trigger.TRIGGER_REJECTED and step_a.rejected_trigger is trigger
            elif step_a.reason_code is not None:
                assert a.state == State.FAILED_CLOSED.value
    finally:
        _SHARED.remove(a)
    assert a not in _SHARED.machine.models
