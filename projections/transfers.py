"""Per transfer: state, attempt, cursor, reason, sessions and timings."""

from __future__ import annotations

from typing import Any

import msgspec

from engine.rules import default_rules
from events.observations import IntentRecorded, Suspended, TargetHashed
from events.payloads import Transition
from events.record import Record
from events.vocabulary import ReasonCode, State


class TransferView(msgspec.Struct):
    transfer_id: str
    artifact_id: str = ""
    artifact_class: str = ""
    mode: str = ""
    state: State = default_rules().initial
    attempt: int = 0
    committed_cursor: int = 0
    size: int = 0
    reason_code: ReasonCode | None = None
    sessions: int = 0
    transitions: int = 0
    events: int = 0
    first_seq: int = 0
    last_seq: int = 0
    duration_ms: float = 0.0
    verified_digest: str | None = None  # what the target hashed to (target_hashed)
    expected_checksum: str = ""
    suspended: bool = False  # stopped on a signal at a chunk boundary (still syncing): `asup resume` continues it
    checkpoint: str = ""  # the checkpoint the suspension resumes from ("" none yet)
    target: str = ""  # the intent's target name
    target_path: str = ""  # its absolute path as the CLI resolved it ("" from a v1 log or a library caller)
    started: str = ""  # UTC ts of the latest session's first record (its intent)


class TransfersState(msgspec.Struct):
    transfers: dict[str, TransferView] = msgspec.field(default_factory=dict)


_OPENS = frozenset({Transition, IntentRecorded, TargetHashed})  # the types that make a stream a transfer


class Transfers:
    name = "transfers"
    state_type = TransfersState

    def initial(self) -> TransfersState:
        return TransfersState()

    def apply(self, state: TransfersState, record: Record) -> TransfersState:
        data = record.data
        kind = type(data)
        view = state.transfers.get(record.stream)
        if view is None:
            if kind not in _OPENS:
                return state  # e.g. the log's own `$log` stream
            view = state.transfers[record.stream] = TransferView(record.stream, first_seq=record.seq, started=record.ts)
        view.events += 1
        view.last_seq = record.seq
        if kind is Transition:
            assert isinstance(data, Transition)
            view.state, view.attempt, view.committed_cursor = data.to_state, data.attempt, data.committed_cursor
            view.transitions += 1
            view.duration_ms = data.duration_ms
            if data.reason_code is not None:
                view.reason_code = data.reason_code
        elif kind is IntentRecorded:
            assert isinstance(data, IntentRecorded)
            intent = data.intent
            view.sessions += 1
            view.suspended, view.checkpoint = False, ""
            view.reason_code = view.verified_digest = None  # a new session's outcome is its own: a rerun that completes is not still failed
            view.artifact_id, view.artifact_class, view.mode = intent.artifact_id, intent.artifact_class, intent.mode.value
            view.size, view.expected_checksum = intent.size, intent.expected_checksum
            view.target, view.target_path, view.started = intent.target, intent.target_path, record.ts
        elif kind is TargetHashed:
            assert isinstance(data, TargetHashed)
            view.verified_digest = data.digest
        elif kind is Suspended:
            assert isinstance(data, Suspended)
            view.suspended, view.checkpoint = True, data.checkpoint
        return state

    def render(self, state: TransfersState) -> dict[str, Any]:
        rows = [msgspec.to_builtins(v) for _, v in sorted(state.transfers.items())]
        counts: dict[str, int] = {}
        for view in state.transfers.values():
            counts[view.state.value] = counts.get(view.state.value, 0) + 1  # orjson takes only exact str keys
        return {"transfers": rows, "by_state": dict(sorted(counts.items())), "count": len(rows)}
