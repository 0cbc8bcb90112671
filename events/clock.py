"""Clocks: the only source of time for records, injectable so runs are reproducible."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now_ns(self) -> int:
        """Nanoseconds since the Unix epoch."""
        ...


class SystemClock:
    def now_ns(self) -> int:
        return time.time_ns()


class StepClock:
    """A deterministic clock: starts at `start_ns` and advances `step_ns` per reading."""

    def __init__(self, start_ns: int = 1_780_000_000_000_000_000, step_ns: int = 1_000_000) -> None:
        self._next = start_ns
        self._step = step_ns

    def now_ns(self) -> int:
        now = self._next
        self._next += self._step
        return now


def format_ts(ns: int) -> str:
    """RFC 3339 UTC with microseconds: `2026-05-28T20:26:40.000000Z`."""
    seconds, rem = divmod(ns, 1_000_000_000)
    stamp = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{stamp}.{rem // 1000:06d}Z"
