"""Re-driving a recorded transfer from its log alone: feed the recorded observations to
today's `decide` and dispatcher and produce the transitions they call for. Equal to the
recorded transitions when the decision code has not changed (replay builds on this)."""

from __future__ import annotations

from collections.abc import Iterable

from engine.adapter import transition_event
from engine.decide import Progress, decide
from engine.machine import AdapterMachine, CompiledDispatch, TransferModel
from events.observations import IntentRecorded, Observation
from events.payloads import Event, Transition


def redrive(events: Iterable[Event], dispatcher: AdapterMachine | CompiledDispatch) -> list[Transition]:
    """The transitions today's code decides for one stream's recorded observations.

    A stream may hold several sessions (a resume starts a new one at its intent); each
    session starts from a fresh model in `idle`, as the live adapter does.
    """
    produced: list[Transition] = []
    progress = Progress()
    model: TransferModel | None = None
    for event in events:
        if not isinstance(event, Observation):
            continue
        if isinstance(event, IntentRecorded):
            if model is not None and isinstance(dispatcher, AdapterMachine):
                dispatcher.remove(model)
            progress, model = Progress(), TransferModel(event.intent.transfer_id)
            dispatcher.add(model)
        if model is None:
            continue  # observations before any intent belong to no session
        for decision in decide(progress, event):
            step = dispatcher.fire(model, decision.trigger, decision.reason)
            produced.append(transition_event(progress, step, event.at_ns))
    if model is not None and isinstance(dispatcher, AdapterMachine):
        dispatcher.remove(model)
    return produced
