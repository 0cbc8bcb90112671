"""The adapter state machine: one `transitions.Machine` built from the contract table,
shared by every transfer (`add_model`), and the optimisation lever — a dispatcher compiled
from the same table. Both answer `fire(model, trigger, reason)` with the same `Step`; the
state-machine gate proves it for every (state, trigger, guard outcome).

Guards: a row carries a reason code; a trigger fires a row only when the decision's reason
code is that row's (so `capability_rejected` needs `unsupported_capability` or
`capability_mismatch`). Anything the table does not allow from a non-terminal state fails
closed with `invalid_transition`; in a terminal state it is recorded as `trigger_rejected`
and the state stays.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import msgspec
from transitions import Machine, MachineError

from engine.contracts import MachineSpec, default_state_machine
from events.vocabulary import ReasonCode, State, Trigger


class Step(msgspec.Struct, frozen=True):
    """What one fired trigger did; becomes one `transition` event."""

    from_state: State
    trigger: Trigger
    to_state: State
    reason_code: ReasonCode | None
    rejected_trigger: Trigger | None = None


class TransferModel:
    """The per-transfer object the Machine drives (it sets `state`)."""

    trigger: Callable[..., bool]  # bound by Machine.add_model

    def __init__(self, transfer_id: str, state: State = State.IDLE) -> None:
        self.transfer_id = transfer_id
        self.state: str = state.value


class Dispatcher(Protocol):
    def add(self, model: TransferModel) -> None: ...

    def fire(self, model: TransferModel, trigger: Trigger, reason: ReasonCode | None = None) -> Step: ...


def _reason_guard(reason: ReasonCode | None) -> Any:
    def guard(event: Any) -> bool:
        return bool(event.kwargs.get("reason") == reason)

    guard.__name__ = f"reason_is_{reason}"
    return guard


class AdapterMachine:
    """The reference implementation: a transitions.Machine built from the table."""

    def __init__(self, spec: MachineSpec | None = None) -> None:
        self.spec = spec or default_state_machine().state_machine
        self._terminal = frozenset(self.spec.terminal_states)
        self.machine = Machine(
            model=None,
            states=[s.value for s in self.spec.states],
            initial=self.spec.initial_state.value,
            auto_transitions=False,
            ignore_invalid_triggers=False,
            send_event=True,
        )
        for row in self.spec.transition_table:
            self.machine.add_transition(
                row.event.value, row.from_state.value, row.to_state.value, conditions=[_reason_guard(row.reason_code)]
            )

    def add(self, model: TransferModel) -> None:
        state = model.state
        self.machine.add_model(model, initial=state)

    def remove(self, model: TransferModel) -> None:
        self.machine.remove_model(model)

    def fire(self, model: TransferModel, trigger: Trigger, reason: ReasonCode | None = None) -> Step:
        before = State(model.state)
        if before in self._terminal:
            return _rejected(before, trigger)
        try:
            moved = model.trigger(trigger.value, reason=reason)
        except (MachineError, AttributeError):
            moved = False
        if not moved:
            policy = self.spec.invalid_trigger_policy.non_terminal
            self.machine.set_state(policy.to_state.value, model)
            return Step(before, trigger, policy.to_state, policy.reason_code)
        return Step(before, trigger, State(model.state), reason)


class CompiledDispatch:
    """The optimisation lever: the same table compiled to one dict lookup per trigger."""

    def __init__(self, spec: MachineSpec | None = None) -> None:
        self.spec = spec or default_state_machine().state_machine
        self._terminal = frozenset(self.spec.terminal_states)
        self._table: dict[tuple[str, str, ReasonCode | None], State] = {}
        for row in self.spec.transition_table:
            self._table.setdefault((row.from_state.value, row.event.value, row.reason_code), row.to_state)
        policy = self.spec.invalid_trigger_policy.non_terminal
        self._fail = (policy.to_state, policy.reason_code)

    def add(self, model: TransferModel) -> None:
        """Nothing to register: the model's `state` is all the dispatcher reads."""

    def fire(self, model: TransferModel, trigger: Trigger, reason: ReasonCode | None = None) -> Step:
        before = State(model.state)
        if before in self._terminal:
            return _rejected(before, trigger)
        target = self._table.get((model.state, trigger.value, reason))
        if target is None:
            to_state, code = self._fail
            model.state = to_state.value
            return Step(before, trigger, to_state, code)
        model.state = target.value
        return Step(before, trigger, target, reason)


def _rejected(state: State, trigger: Trigger) -> Step:
    return Step(state, Trigger.TRIGGER_REJECTED, state, None, rejected_trigger=trigger)


def make_dispatcher(lever: bool) -> AdapterMachine | CompiledDispatch:
    """Lever off (the rollback): the transitions.Machine. Lever on: the compiled table."""
    return CompiledDispatch() if lever else AdapterMachine()
