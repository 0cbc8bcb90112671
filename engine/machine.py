"""The adapter state machine: one `transitions.Machine` built from the contract table,
shared by every transfer (`add_model`), and the optimisation lever — a dispatcher compiled
from the same table. Both answer `fire(model, trigger, reason)` with the same `Step`; the
state-machine gate proves it for every (state, trigger, guard outcome).

Guards: a row carries a reason code; a trigger fires a row only when the decision's reason
code is that row's (so `capability_rejected` needs `unsupported_capability` or
`capability_mismatch`). The policies for everything else (a terminal state rejects, an
invalid trigger fails closed) are the contract's, read from `engine.rules`. Callers hold
either as a `Dispatcher`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from transitions import Machine, MachineError

from engine.rules import Rules, Step, default_rules
from events.vocabulary import ReasonCode, State, Trigger


class TransferModel:
    """The per-transfer object the Machine drives (it sets `state`)."""

    trigger: Callable[..., bool]  # bound by Machine.add_model

    def __init__(self, transfer_id: str, state: State | None = None) -> None:
        self.transfer_id = transfer_id
        self.state: str = (state or default_rules().initial).value


class Dispatcher(Protocol):
    """What every caller drives a transfer through: the Machine or the compiled lever."""

    @property
    def rules(self) -> Rules: ...

    def add(self, model: TransferModel) -> None: ...

    def remove(self, model: TransferModel) -> None: ...

    def fire(self, model: TransferModel, trigger: Trigger, reason: ReasonCode | None = None) -> Step: ...


def _reason_guard(reason: ReasonCode | None) -> Any:
    def guard(event: Any) -> bool:
        return bool(event.kwargs.get("reason") == reason)

    guard.__name__ = f"reason_is_{reason}"
    return guard


class AdapterMachine:
    """The reference implementation: a transitions.Machine built from the table; the
    terminal and failure policies are the rules'."""

    def __init__(self, rules: Rules | None = None) -> None:
        self.rules = rules or default_rules()
        spec = self.rules.spec
        self.machine = Machine(
            model=None,
            states=[s.value for s in spec.states],
            initial=self.rules.initial.value,
            auto_transitions=False,
            ignore_invalid_triggers=False,
            send_event=True,
        )
        for row in spec.transition_table:
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
        if self.rules.is_terminal(before):
            return self.rules.reject(before, trigger)
        try:
            moved = model.trigger(trigger.value, reason=reason)
        except (MachineError, AttributeError):
            moved = False
        if not moved:
            step = self.rules.fail(before, trigger)
            self.machine.set_state(step.to_state.value, model)
            return step
        return Step(before, trigger, State(model.state), reason)


class CompiledDispatch:
    """The optimisation lever: the rules' table as one dict lookup per trigger."""

    def __init__(self, rules: Rules | None = None) -> None:
        self.rules = rules or default_rules()
        # keyed by plain strings: a model's state is one, and a str tuple hashes ~5x faster than enums
        self._table = {(s.value, t.value, r): to for (s, t, r), to in self.rules.moves.items()}
        self._terminal = frozenset(s.value for s in self.rules.terminal)

    def add(self, model: TransferModel) -> None:
        """Nothing to register: the model's `state` is all the dispatcher reads."""

    def remove(self, model: TransferModel) -> None:
        """Nothing registered, nothing to remove."""

    def fire(self, model: TransferModel, trigger: Trigger, reason: ReasonCode | None = None) -> Step:
        state = model.state
        if state in self._terminal:
            return self.rules.reject(State(state), trigger)
        target = self._table.get((state, trigger.value, reason))
        if target is None:
            step = self.rules.fail(State(state), trigger)
            model.state = step.to_state.value
            return step
        model.state = target.value
        return Step(State(state), trigger, target, reason)


def make_dispatcher(lever: bool) -> Dispatcher:
    """Lever off (the rollback): the transitions.Machine. Lever on: the compiled table."""
    return CompiledDispatch() if lever else AdapterMachine()
