"""The in-memory twin passes the log store contract."""

from __future__ import annotations

from pathlib import Path

from events.clock import StepClock
from events.memory_log import MemoryLog
from events.testing.store_contract import ID_WINDOW, StoreContract


class TestMemoryLog(StoreContract):
    def make_store(self, tmp_path: Path) -> MemoryLog:
        return MemoryLog(clock=StepClock(), id_window=ID_WINDOW)
