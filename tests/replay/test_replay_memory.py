"""Replay's memory per stream: a finished transfer keeps only what a later session of its
stream and the report still need (about 2.6 KiB measured; 5.3 KiB before record envelopes,
deques and decoded transitions were dropped at the terminal transition)."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import msgspec

from events.clock import StepClock
from events.jsonl_log import JsonlLog
from events.memory_log import MemoryLog
from events.observations import CheckpointRead, IntentRecorded
from events.payloads import Event, Transition
from events.store import Pending
from replay.reexecute import replay_log
from tests.projections.helpers import run_scenarios

PER_STREAM_BUDGET = 3.5 * 1024  # bytes; the old replay kept ~5.3 KiB per stream ever seen


def _renamed(event: Event, original: str, stream: str) -> Event:
    if isinstance(event, Transition | CheckpointRead) and event.transfer_id == original:
        return msgspec.structs.replace(event, transfer_id=stream)
    if isinstance(event, IntentRecorded) and event.intent.transfer_id == original:
        return msgspec.structs.replace(event, intent=msgspec.structs.replace(event.intent, transfer_id=stream))
    return event


def _copies(path: Path, templates: dict[str, list[Event]], copies: int) -> int:
    streams = 0
    with JsonlLog.open(path, clock=StepClock()) as log:
        for copy in range(copies):
            for original, events in templates.items():
                stream = f"t-{copy:05d}-{original}"
                log.append_batch([Pending(stream, _renamed(e, original, stream)) for e in events])
                streams += 1
    return streams


def _peak(path: Path) -> int:
    tracemalloc.start()
    try:
        report, _ = replay_log(path, want_trace=False)
        assert report.reproduced
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_per_stream_stays_within_budget(tmp_path: Path) -> None:
    log = MemoryLog("templates", clock=StepClock())
    run_scenarios(log, tmp_path / "work")
    templates: dict[str, list[Event]] = {}
    for record in log.read():
        if record.stream != "$log":
            templates.setdefault(record.stream, []).append(record.data)
    small = _copies(tmp_path / "small.jsonl", templates, 10)
    big = _copies(tmp_path / "big.jsonl", templates, 50)
    growth = (_peak(tmp_path / "big.jsonl") - _peak(tmp_path / "small.jsonl")) / (big - small)
    assert growth <= PER_STREAM_BUDGET, f"{growth:.0f} bytes per stream"
