"""Every event type asup knows, by tag. Modules that define payloads are imported here so
that the record union is complete before the first record is decoded."""

from __future__ import annotations

from events import observations, operations, payloads
from events.payloads import REGISTRY, Event

__all__ = ["REGISTRY", "Event", "observations", "operations", "payloads"]
