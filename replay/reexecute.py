"""Replay by re-execution: rebuild each transfer from its recorded intent and drive
today's decision code and dispatcher with the recorded observations, then compare every
produced transition with the recorded one.

Per transfer the outcome is `reproduced`, `diverged` (the first divergent event: its seq,
expected vs actual as a field diff, and the transitions leading to it) or `impossible`
(a recorded transition the state machine could not have produced — distinct from a
divergence: the log itself breaks the contract). Replay touches no store and no network.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from engine.machine import TransferModel, make_dispatcher
from engine.redrive import redrive
from events.chain import ChainState
from events.payloads import LogCreated, LogRepaired, Transition
from events.record import Record
from events.scan import Problem, Scanner
from events.vocabulary import TERMINAL_STATES, State, Trigger
from projections.base import canonical_json
from projections.traces import trace_row


class Divergence(msgspec.Struct, frozen=True):
    seq: int  # the recorded event's seq (0: the recording has no event there)
    index: int  # position among the stream's transitions
    expected: dict[str, Any] | None
    actual: dict[str, Any] | None
    fields: list[str]  # the fields that differ
    leading: list[dict[str, Any]]  # the transitions just before it


class TransferReplay(msgspec.Struct, frozen=True):
    transfer_id: str
    outcome: str  # reproduced | diverged | impossible
    transitions: int
    terminal_state: str | None
    reason_code: str | None
    divergence: Divergence | None = None
    impossible: str = ""


class ReplayReport(msgspec.Struct, frozen=True):
    log: str
    transfers: list[TransferReplay]
    problem: str | None  # a torn tail or damage where the replay stopped

    @property
    def reproduced(self) -> bool:
        return all(t.outcome == "reproduced" for t in self.transfers) and self.problem is None


def load_streams(path: Path, until: int | None = None) -> tuple[dict[str, list[Record]], Problem | None]:
    scanner = Scanner(path, ChainState())
    streams: dict[str, list[Record]] = {}
    for record in scanner:
        if until is not None and record.seq > until:
            break
        if not isinstance(record.data, LogCreated | LogRepaired):
            streams.setdefault(record.stream, []).append(record)
    return streams, scanner.problem


def replay_stream(records: list[Record], *, lever: bool = True) -> tuple[TransferReplay, list[Transition]]:
    stream = records[0].stream if records else ""
    recorded = [r for r in records if isinstance(r.data, Transition)]
    impossible = structural_problem(recorded)
    produced = redrive([r.data for r in records], make_dispatcher(lever))
    divergence = first_divergence(recorded, produced)
    last = recorded[-1].data if recorded else None
    assert last is None or isinstance(last, Transition)
    outcome = "impossible" if impossible else "diverged" if divergence else "reproduced"
    result = TransferReplay(
        transfer_id=stream,
        outcome=outcome,
        transitions=len(recorded),
        terminal_state=last.to_state.value if last and last.to_state in TERMINAL_STATES else None,
        reason_code=last.reason_code.value if last and last.reason_code else None,
        divergence=divergence,
        impossible=impossible,
    )
    return result, produced


def structural_problem(recorded: list[Record]) -> str:
    """Why the recorded transitions could not come from the state machine ('' when they could)."""
    table = make_dispatcher(True)  # compiled from the contract table (proven equal to the Machine)
    state: State | None = None
    for record in recorded:
        data = record.data
        assert isinstance(data, Transition)
        if data.from_state is State.IDLE and data.trigger in (Trigger.START, Trigger.RESUME_REQUESTED):
            state = State.IDLE  # a new session starts from idle
        if state is None or data.from_state is not state:
            return f"seq {record.seq}: a transition from {data.from_state} while the transfer is in {state}"
        if data.trigger is Trigger.TRIGGER_REJECTED:
            possible = state in TERMINAL_STATES and data.to_state is state
        else:
            step = table.fire(TransferModel(data.transfer_id, state), data.trigger, data.reason_code)
            possible = (step.to_state, step.reason_code) == (data.to_state, data.reason_code)
        if not possible:
            return f"seq {record.seq}: {state} -{data.trigger}-> {data.to_state} ({data.reason_code}) is not in the transition table"
        state = data.to_state
    return ""


def first_divergence(recorded: list[Record], produced: list[Transition]) -> Divergence | None:
    for index in range(max(len(recorded), len(produced))):
        expected = recorded[index] if index < len(recorded) else None
        actual = produced[index] if index < len(produced) else None
        if expected is not None and actual is not None and expected.data == actual:
            continue
        want = msgspec.to_builtins(expected.data) if expected is not None else None
        got = msgspec.to_builtins(actual) if actual is not None else None
        fields = sorted(k for k in set(want or {}) | set(got or {}) if (want or {}).get(k) != (got or {}).get(k))
        leading = [{"seq": r.seq, **msgspec.to_builtins(r.data)} for r in recorded[max(0, index - 3) : index]]
        return Divergence(expected.seq if expected else 0, index, want, got, fields, leading)
    return None


def replay_log(path: Path, *, transfer: str | None = None, until: int | None = None, lever: bool = True) -> tuple[ReplayReport, bytes]:
    """Replay every transfer (or one); returns the report and the re-execution's trace."""
    streams, problem = load_streams(path, until)
    results = []
    trace = bytearray()
    for stream, records in sorted(streams.items()):
        if transfer is not None and stream != transfer:
            continue
        result, produced = replay_stream(records, lever=lever)
        results.append(result)
        trace += _trace(records, produced)
    message = problem.error(str(path)).one_line() if problem else None
    return ReplayReport(str(path), results, message), bytes(trace)


def _trace(records: list[Record], produced: list[Transition]) -> bytes:
    """The re-execution as trace rows: recorded observations as they were, transitions as
    produced, each at the position (seq, sv) of the recorded event it stands for."""
    out = bytearray()
    transitions = iter(produced)
    for record in records:
        if isinstance(record.data, Transition):
            actual = next(transitions, None)
            if actual is None:
                continue
            row = trace_row(record)
            row["data"] = msgspec.to_builtins(actual)
            out += canonical_json(row)
        else:
            out += canonical_json(trace_row(record))
    for extra in transitions:
        out += canonical_json({"seq": 0, "stream": records[0].stream, "sv": 0, "type": "transition", "data": msgspec.to_builtins(extra)})
    return bytes(out)
