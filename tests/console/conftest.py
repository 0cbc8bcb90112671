from __future__ import annotations

from pathlib import Path

import pytest

from tests.console.helpers import copy_root, diverging_copy, scenario_log, scenario_root


@pytest.fixture(scope="session")
def scenarios_master(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return scenario_root(tmp_path_factory.mktemp("console-scenarios"))


@pytest.fixture
def root(scenarios_master: Path, tmp_path: Path) -> Path:
    """A private copy of the scenario root (its log at scenarios/scenarios.jsonl)."""
    return copy_root(scenarios_master, tmp_path / "root")


@pytest.fixture
def log(root: Path) -> Path:
    return scenario_log(root)


@pytest.fixture
def diverging(log: Path, tmp_path: Path) -> tuple[Path, int]:
    return diverging_copy(log, tmp_path / "diverging.jsonl")
