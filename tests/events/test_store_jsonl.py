"""The JSONL file log passes the log store contract and writes the in-memory twin's bytes."""

from __future__ import annotations

from pathlib import Path

import pytest

from events.clock import StepClock
from events.errors import AsupError
from events.jsonl_log import JsonlLog
from events.memory_log import MemoryLog
from events.store import LogStore, Pending
from events.testing import transition
from events.testing.store_contract import ID_WINDOW, StoreContract


class TestJsonlLog(StoreContract):
    def make_store(self, tmp_path: Path) -> JsonlLog:
        return JsonlLog.open(tmp_path / "log.jsonl", clock=StepClock(), id_window=ID_WINDOW)


def _same_appends(store: LogStore) -> None:
    store.append("a", [transition("a1"), transition("a2")])
    store.append_batch([Pending("b", transition("b1"), expected_version=0), Pending("a", transition("a3"), id="explicit")])
    with pytest.raises(AsupError):
        store.append("b", [transition("stale")], expected_version=9)
    store.append_batch([Pending("a", transition("a3"), id="explicit")])  # a retry: nothing written
    store.append("c", [transition(f"c{i}", i) for i in range(20)], expected_version=0)


def test_jsonl_and_memory_write_identical_bytes(tmp_path: Path) -> None:
    """For the same log id, clock and appends, the JSONL file and MemoryLog.data are byte-identical."""
    path = tmp_path / "twin.jsonl"
    with JsonlLog.open(path, log_id="twin", clock=StepClock()) as log:
        _same_appends(log)
    memory = MemoryLog("twin", clock=StepClock())
    _same_appends(memory)
    assert path.read_bytes() == bytes(memory.data)
    assert path.read_bytes().count(b"\n") == 25


def test_default_log_id_is_file_stem(tmp_path: Path) -> None:
    """A new JSONL log without a log id is named after its file, so the twin with that id matches it."""
    path = tmp_path / "named.jsonl"
    with JsonlLog.open(path, clock=StepClock()) as log:
        log.append("a", [transition("a1")])
    memory = MemoryLog("named", clock=StepClock())
    memory.append("a", [transition("a1")])
    assert path.read_bytes() == bytes(memory.data)
