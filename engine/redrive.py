"""Re-driving a recorded transfer from its log alone: feed the recorded observations to
today's `decide` and dispatcher and produce the transitions they call for. Equal to the
recorded transitions when the decision code has not changed (replay builds on this)."""

from __future__ import annotations

from collections.abc import Iterable

from engine.adapter import transition_event
from engine.decide import Progress, decide
from engine.machine import Dispatcher, TransferModel
from events.observations import IntentRecorded, Observation
from events.payloads import Event, Transition


class Redriver:
    """One stream re-driven incrementally: feed its recorded events in order, get the
    transitions today's code decides for each observation.

    A stream may hold several sessions (a resume starts a new one at its intent); each
    session starts from a fresh model in `idle`, as the live adapter does.
    """

    def __init__(self, dispatcher: Dispatcher) -> None:
        self.dispatcher = dispatcher
        self.progress = Progress()
        self.model: TransferModel | None = None

    def feed(self, event: Event) -> list[Transition]:
        if not isinstance(event, Observation):
            return []
        if isinstance(event, IntentRecorded):
            self.close()
            self.progress, self.model = Progress(), TransferModel(event.intent.transfer_id, self.dispatcher.rules.initial)
            self.dispatcher.add(self.model)
        if self.model is None:
            return []  # observations before any intent belong to no session
        produced = []
        for decision in decide(self.progress, event):
            step = self.dispatcher.fire(self.model, decision.trigger, decision.reason)
            produced.append(transition_event(self.progress, step, event.at_ns))
        return produced

    def close(self) -> None:
        if self.model is not None:
            self.dispatcher.remove(self.model)
        self.model = None


def redrive(events: Iterable[Event], dispatcher: Dispatcher) -> list[Transition]:
    """The transitions today's code decides for one stream's recorded observations."""
    redriver = Redriver(dispatcher)
    produced = [t for event in events for t in redriver.feed(event)]
    redriver.close()
    return produced
