"""Fixtures shared by the projection tests: one full scenario log (every built-in scenario
through the real adapter), written once per session and only ever copied."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.projections.helpers import scenario_log


@pytest.fixture(scope="session")
def all_scenarios_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A JSONL log of every built-in scenario (seed 7); read-only: copy it before changing it."""
    root = tmp_path_factory.mktemp("all-scenarios")
    return scenario_log(root / "scenarios.jsonl", root / "work")
