"""The rules object: the contract's state machine compiled once, and the only place its
policies are read from (terminal rejection, failure, session start)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import msgspec
import pytest

from engine.contracts import STATE_MACHINE_FILE, MachineSpec, contract_dir, default_state_machine, load_state_machine
from engine.machine import AdapterMachine, CompiledDispatch, Dispatcher, TransferModel
from engine.rules import Rules, Step, default_rules
from events.errors import AsupError, ErrorCode
from events.vocabulary import ReasonCode, State, Trigger


def _spec() -> MachineSpec:
    return default_state_machine().state_machine


def _with_policies(terminal_event: Trigger, invalid: ReasonCode) -> Rules:
    """Rules from a spec whose invalid-trigger policies name other members than the shipped ones."""
    spec = _spec()
    policy = spec.invalid_trigger_policy
    changed = msgspec.structs.replace(
        policy,
        terminal=msgspec.structs.replace(policy.terminal, event=terminal_event),
        non_terminal=msgspec.structs.replace(policy.non_terminal, reason_code=invalid),
    )
    return Rules(msgspec.structs.replace(spec, invalid_trigger_policy=changed))


def test_terminal_states_and_initial_state_come_from_the_contract() -> None:
    """The rules' terminal and initial states are the table's own lists."""
    rules = default_rules()
    assert rules.terminal == frozenset(_spec().terminal_states)
    assert rules.initial is _spec().initial_state
    assert all(rules.is_terminal(state) for state in _spec().terminal_states)
    assert rules.is_terminal("completed") and not rules.is_terminal("syncing")  # a model's state is a plain str


def test_every_table_row_is_a_move() -> None:
    """fire moves along exactly the rows of the table, carrying the row's reason code."""
    rules = default_rules()
    for row in _spec().transition_table:
        assert rules.fire(row.from_state, row.event, row.reason_code) == Step(row.from_state, row.event, row.to_state, row.reason_code)


@pytest.mark.parametrize("cls", [AdapterMachine, CompiledDispatch])
def test_both_dispatchers_follow_the_policies_the_rules_read(cls: type[AdapterMachine] | type[CompiledDispatch]) -> None:
    """With the terminal policy's trigger and the failure's reason changed in the spec, both dispatchers record the new ones."""
    rules = _with_policies(Trigger.RESUME_REJECTED, ReasonCode.RETRY_EXHAUSTED)
    dispatcher: Dispatcher = cls(rules)
    done, idle = TransferModel("t-done", State.COMPLETED), TransferModel("t-idle", State.IDLE)
    for model in (done, idle):
        dispatcher.add(model)
    rejected = dispatcher.fire(done, Trigger.START)
    failed = dispatcher.fire(idle, Trigger.CHUNK_COMMITTED)
    for model in (done, idle):
        dispatcher.remove(model)
    assert rejected == Step(State.COMPLETED, Trigger.RESUME_REJECTED, State.COMPLETED, None, rejected_trigger=Trigger.START)
    assert failed == Step(State.IDLE, Trigger.CHUNK_COMMITTED, State.FAILED_CLOSED, ReasonCode.RETRY_EXHAUSTED)
    assert (done.state, idle.state) == ("completed", "failed_closed")


def test_a_session_starts_in_the_initial_state_with_start_or_resume() -> None:
    """A fresh session fires start, a resume fires resume_requested; only those out of the initial state open a session."""
    rules = default_rules()
    assert rules.session_trigger(resume=False) is Trigger.START
    assert rules.session_trigger(resume=True) is Trigger.RESUME_REQUESTED
    assert rules.starts_session(State.IDLE, Trigger.START) and rules.starts_session(State.IDLE, Trigger.RESUME_REQUESTED)
    assert not rules.starts_session(State.SYNCING, Trigger.START)
    assert not rules.starts_session(State.IDLE, Trigger.CAPABILITY_ACCEPTED)
    assert TransferModel("t-new").state == rules.initial.value


def test_produces_accepts_what_the_rules_make_and_nothing_else() -> None:
    """A recorded row, a rejection in a terminal state and the failure policy are possible; a rejection that moves is not."""
    rules = default_rules()
    assert rules.produces(State.SYNCING, Trigger.CHUNK_COMMITTED, None, State.SYNCING)
    assert rules.produces(State.FAILED_CLOSED, Trigger.TRIGGER_REJECTED, None, State.FAILED_CLOSED)
    assert rules.produces(State.IDLE, Trigger.CHUNK_COMMITTED, ReasonCode.INVALID_TRANSITION, State.FAILED_CLOSED)
    assert not rules.produces(State.COMPLETED, Trigger.TRIGGER_REJECTED, None, State.SYNCING)
    assert not rules.produces(State.SYNCING, Trigger.TRIGGER_REJECTED, None, State.SYNCING)
    assert not rules.produces(State.SYNCING, Trigger.CHECKSUM_VALIDATED, None, State.COMPLETED)


def test_leaving_a_terminal_state_is_anything_but_the_rejection() -> None:
    """From a terminal state only the terminal policy's trigger keeps the contract."""
    rules = default_rules()
    assert rules.leaves_terminal(State.COMPLETED, Trigger.START)
    assert not rules.leaves_terminal(State.COMPLETED, Trigger.TRIGGER_REJECTED)
    assert not rules.leaves_terminal(State.SYNCING, Trigger.START)


def _copy_with(tmp_path: Path, edit: dict[str, object]) -> Path:
    path = tmp_path / STATE_MACHINE_FILE
    shutil.copyfile(contract_dir() / STATE_MACHINE_FILE, path)
    doc = json.loads(path.read_text())
    doc["state_machine"].update(edit)
    path.write_text(json.dumps(doc))
    return path


def test_a_table_whose_sessions_cannot_start_is_refused(tmp_path: Path) -> None:
    """Without an idle -resume_requested-> row the contract is bad_input: the rules could not begin a resume."""
    table = json.loads((contract_dir() / STATE_MACHINE_FILE).read_text())["state_machine"]["transition_table"]
    table = [r for r in table if not (r["from_state"] == "idle" and r["event"] == "resume_requested")]
    with pytest.raises(AsupError) as caught:
        load_state_machine(_copy_with(tmp_path, {"transition_table": table}))
    assert caught.value.code is ErrorCode.BAD_INPUT
    assert "session must start" in caught.value.one_line()


def test_a_terminal_policy_that_moves_the_state_is_refused(tmp_path: Path) -> None:
    """The terminal policy's to_state must be `unchanged`; another value is bad_input naming the field."""
    policy = json.loads((contract_dir() / STATE_MACHINE_FILE).read_text())["state_machine"]["invalid_trigger_policy"]
    policy["terminal"]["to_state"] = "idle"
    with pytest.raises(AsupError) as caught:
        load_state_machine(_copy_with(tmp_path, {"invalid_trigger_policy": policy}))
    assert caught.value.code is ErrorCode.BAD_INPUT
    assert "invalid_trigger_policy.terminal.to_state" in caught.value.one_line()
