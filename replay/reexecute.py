"""Replay by re-execution: rebuild each transfer from its recorded intent and drive
today's decision code and dispatcher with the recorded observations, then compare every
produced transition with the recorded one.

Per transfer the outcome is `reproduced`, `diverged` (the first divergent event: its seq,
expected vs actual as a field diff, and the transitions leading to it) or `impossible`
(a recorded transition the state machine could not have produced — distinct from a
divergence: the log itself breaks the contract). Replay touches no store and no network.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any

import msgspec

from engine.decide import Progress
from engine.machine import Dispatcher, make_dispatcher
from engine.redrive import Redriver
from engine.rules import Rules
from events.chain import ChainState
from events.payloads import LOG_EVENTS, Transition
from events.record import Record
from events.scan import Problem, Scanner
from events.vocabulary import ReasonCode, State
from projections.base import canonical_json
from projections.traces import trace_row


class ReplayOutcome(StrEnum):
    """A replayed transfer: re-driven identically, diverging, or a recorded transition the machine cannot make."""

    REPRODUCED = "reproduced"
    DIVERGED = "diverged"
    IMPOSSIBLE = "impossible"


class Divergence(msgspec.Struct, frozen=True):
    seq: int  # the recorded event's seq (0: the recording has no event there)
    index: int  # position among the stream's transitions
    expected: dict[str, Any] | None
    actual: dict[str, Any] | None
    fields: list[str]  # the fields that differ
    leading: list[dict[str, Any]]  # the transitions just before it


class TransferReplay(msgspec.Struct, frozen=True):
    transfer_id: str
    outcome: ReplayOutcome
    transitions: int
    terminal_state: State | None
    reason_code: ReasonCode | None
    divergence: Divergence | None = None
    impossible: str = ""


class ReplayReport(msgspec.Struct, frozen=True):
    log: str
    transfers: list[TransferReplay]
    problem: str | None  # a torn tail or damage where the replay stopped

    @property
    def reproduced(self) -> bool:
        return all(t.outcome is ReplayOutcome.REPRODUCED for t in self.transfers) and self.problem is None


def load_streams(path: Path, until: int | None = None) -> tuple[dict[str, list[Record]], Problem | None]:
    """Every transfer stream's records (held in memory: for diff, not for replay)."""
    scanner = Scanner(path, ChainState())
    streams: dict[str, list[Record]] = {}
    for record in scanner:
        if until is not None and record.seq > until:
            break
        if not isinstance(record.data, LOG_EVENTS):
            streams.setdefault(record.stream, []).append(record)
    return streams, scanner.problem


class StreamReplay:
    """One transfer replayed as its records stream past: the recorded observations drive
    today's decisions; each recorded transition is compared with the next one produced.
    Memory is what one session needs, not the whole stream; a replay keeps one of these per
    stream it has seen (a stream may start a new session later), so it holds the few small
    things a finished stream still needs: no record envelopes, no empty deques."""

    __slots__ = (
        "divergence", "impossible", "last", "leading", "produced", "redriver", "rules", "state", "stream", "tail_produced",
        "transitions",
    )

    def __init__(self, stream: str, dispatcher: Dispatcher) -> None:
        self.stream = stream
        self.redriver = Redriver(dispatcher)
        self.produced: list[Transition] = []  # decided, not yet met in the log: a handful at most
        # a divergence's context: the last three (seq, transition); JSON bytes once the session is over
        self.leading: tuple[tuple[int, Transition | bytes], ...] = ()
        self.transitions = 0
        self.divergence: Divergence | None = None
        self.impossible = ""
        self.state: State | None = None
        self.last: tuple[State, ReasonCode | None] | None = None  # the last transition's to_state and reason
        self.rules: Rules = dispatcher.rules  # the structural check's: the contract's, whichever dispatcher replays
        self.tail_produced: list[Transition] = _NONE  # what the last record fed, an observation, decided

    def feed(self, record: Record, trace: bytearray | None) -> None:
        data = record.data
        if not isinstance(data, Transition):
            self.tail_produced = self.redriver.feed(data)
            self.produced.extend(self.tail_produced)
            if trace is not None:
                trace += canonical_json(trace_row(record))
            return
        self.tail_produced = _NONE
        actual = self.produced.pop(0) if self.produced else None
        if self.divergence is None and actual != data:
            self._diverged(record, actual)
        if not self.impossible:
            self.impossible = self._structural(record, data)
        if trace is not None and actual is not None:
            row = trace_row(record)
            row["data"] = msgspec.to_builtins(actual)
            trace += canonical_json(row)
        self.transitions += 1
        self.last = (data.to_state, data.reason_code)
        self.leading = (*self.leading[-2:], (record.seq, data))
        if self.rules.is_terminal(data.to_state):
            self.redriver.close()
            self.redriver.progress = Progress()  # the session is over: keep no intent in memory
            self.leading = tuple((seq, _ENCODE(t)) for seq, t in self.leading)  # a third of the decoded structs' size

    def finish(self, trace: bytearray | None, *, cut: bool = False) -> TransferReplay:
        """`cut`: the log was read only up to a point (--until, a torn tail): transitions the
        stream's last observation decided may simply lie past it, and are not a divergence."""
        self.redriver.close()
        if cut and self.tail_produced and self.produced == self.tail_produced:
            self.produced.clear()
        if self.produced and self.divergence is None:
            self._diverged(None, self.produced[0])
        for extra in self.produced:
            if trace is not None:
                trace += canonical_json(
                    {"seq": 0, "stream": self.stream, "sv": 0, "type": "transition", "data": msgspec.to_builtins(extra)}
                )
        last = self.last
        outcome = ReplayOutcome.DIVERGED if self.divergence else ReplayOutcome.REPRODUCED
        return TransferReplay(
            transfer_id=self.stream,
            outcome=ReplayOutcome.IMPOSSIBLE if self.impossible else outcome,
            transitions=self.transitions,
            terminal_state=last[0] if last and self.rules.is_terminal(last[0]) else None,
            reason_code=last[1] if last else None,
            divergence=self.divergence,
            impossible=self.impossible,
        )

    def _diverged(self, expected: Record | None, actual: Transition | None) -> None:
        want = msgspec.to_builtins(expected.data) if expected is not None else None
        got = msgspec.to_builtins(actual) if actual is not None else None
        fields = sorted(k for k in set(want or {}) | set(got or {}) if (want or {}).get(k) != (got or {}).get(k))
        leading = [{"seq": seq, **_builtins(data)} for seq, data in self.leading]
        self.divergence = Divergence(expected.seq if expected else 0, self.transitions, want, got, fields, leading)

    def _structural(self, record: Record, data: Transition) -> str:
        """Why this recorded transition could not come from the state machine ('' when it could)."""
        if self.rules.starts_session(data.from_state, data.trigger):
            self.state = data.from_state  # a new session starts from the initial state
        state = self.state
        if state is None or data.from_state is not state:
            return f"seq {record.seq}: a transition from {data.from_state} while the transfer is in {state}"
        if not self.rules.produces(state, data.trigger, data.reason_code, data.to_state):
            return f"seq {record.seq}: {state} -{data.trigger}-> {data.to_state} ({data.reason_code}) is not in the transition table"
        self.state = data.to_state
        return ""


_NONE: list[Transition] = []  # shared, never mutated: most records decide nothing
_ENCODE = msgspec.json.Encoder().encode


def _builtins(data: Transition | bytes) -> dict[str, Any]:
    built = msgspec.json.decode(data) if isinstance(data, bytes) else msgspec.to_builtins(data)
    assert isinstance(built, dict)
    return built


def replay_log(
    path: Path, *, transfer: str | None = None, until: int | None = None, lever: bool = True, want_trace: bool = True
) -> tuple[ReplayReport, bytes]:
    """Replay every transfer (or one) in one streaming pass; returns the report and the
    re-execution's trace (transfers in id order, each in log order, as `asup trace`)."""
    dispatcher = make_dispatcher(lever)
    live: dict[str, StreamReplay] = {}
    traces: dict[str, bytearray] = {}
    scanner = Scanner(path, ChainState())
    cut = False
    for record in scanner:
        if until is not None and record.seq > until:
            cut = True
            break
        if isinstance(record.data, LOG_EVENTS) or (transfer is not None and record.stream != transfer):
            continue
        replay = live.get(record.stream)
        if replay is None:
            replay = live[record.stream] = StreamReplay(record.stream, dispatcher)
            if want_trace:
                traces[record.stream] = bytearray()
        replay.feed(record, traces.get(record.stream))
    cut = cut or scanner.problem is not None
    results = [live[s].finish(traces.get(s), cut=cut) for s in sorted(live)]
    trace = b"".join(bytes(traces[s]) for s in sorted(traces))
    message = scanner.problem.error(str(path)).one_line() if scanner.problem else None
    return ReplayReport(str(path), results, message), trace
