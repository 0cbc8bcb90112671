"""The adapter state machine's rules, compiled once from the contract table
(`asupersync_adapter_state_machine_v1`): the single source of every state-machine policy.

- fire: a (state, trigger, guard outcome) the table allows moves to the row's target; the
  guard outcome is the decision's reason code, which must be the row's.
- terminal rejection: a trigger in a terminal state is recorded as the terminal policy's
  trigger (`trigger_rejected`) naming the refused one; the state stays.
- failure: anything else from a non-terminal state goes where the non-terminal policy says
  (`failed_closed` with `invalid_transition`).
- session start: a session begins in the initial state with the trigger that leaves it
  (`start`, or `resume_requested` for a resume).

The dispatchers (the transitions.Machine and the compiled lever), replay's structural
check and the projections all read these rules; none spells a policy of its own.
"""

from __future__ import annotations

from functools import cache

import msgspec

from engine.contracts import MachineSpec, default_state_machine
from events.vocabulary import ReasonCode, State, Trigger

Move = tuple[State, Trigger, ReasonCode | None]


class Step(msgspec.Struct, frozen=True):
    """What one fired trigger did; becomes one `transition` event."""

    from_state: State
    trigger: Trigger
    to_state: State
    reason_code: ReasonCode | None
    rejected_trigger: Trigger | None = None


class Rules:
    """The contract table compiled: pure functions of (state, trigger, reason)."""

    def __init__(self, spec: MachineSpec) -> None:
        self.spec = spec
        self.initial: State = spec.initial_state
        self.terminal: frozenset[State] = frozenset(spec.terminal_states)
        self.moves: dict[Move, State] = {}
        for row in spec.transition_table:
            self.moves.setdefault((row.from_state, row.event, row.reason_code), row.to_state)
        failure = spec.invalid_trigger_policy.non_terminal
        self.failed: State = failure.to_state
        self.invalid: ReasonCode = failure.reason_code
        self.rejection: Trigger = spec.invalid_trigger_policy.terminal.event
        # The contract checks (engine.contracts) guarantee both leave the initial state.
        self.start: Trigger = Trigger.START
        self.resume: Trigger = Trigger.RESUME_REQUESTED

    def is_terminal(self, state: State | str) -> bool:
        return state in self.terminal

    def session_trigger(self, resume: bool) -> Trigger:
        """The trigger a session's intent fires."""
        return self.resume if resume else self.start

    def starts_session(self, from_state: State, trigger: Trigger) -> bool:
        """Whether a transition is the first of a session (a stream may hold several)."""
        return from_state is self.initial and trigger in (self.start, self.resume)

    def fire(self, state: State, trigger: Trigger, reason: ReasonCode | None = None) -> Step:
        if state in self.terminal:
            return self.reject(state, trigger)
        target = self.moves.get((state, trigger, reason))
        if target is None:
            return self.fail(state, trigger)
        return Step(state, trigger, target, reason)

    def reject(self, state: State, trigger: Trigger) -> Step:
        """The terminal policy: the refused trigger is recorded, the state stays."""
        return Step(state, self.rejection, state, None, rejected_trigger=trigger)

    def fail(self, state: State, trigger: Trigger) -> Step:
        """The non-terminal policy for a trigger the table does not allow."""
        return Step(state, trigger, self.failed, self.invalid)

    def produces(self, state: State, trigger: Trigger, reason: ReasonCode | None, to_state: State) -> bool:
        """Whether a recorded transition from `state` is one these rules could have made."""
        if trigger is self.rejection:
            return state in self.terminal and to_state is state
        step = self.fire(state, trigger, reason)
        return (step.to_state, step.reason_code) == (to_state, reason)

    def leaves_terminal(self, from_state: State, trigger: Trigger) -> bool:
        """Whether a recorded transition breaks the contract by moving out of a terminal state."""
        return from_state in self.terminal and trigger is not self.rejection


@cache
def default_rules() -> Rules:
    """The rules of the shipped contract."""
    return Rules(default_state_machine().state_machine)
