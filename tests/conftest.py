"""Shared test setup: hypothesis profiles (CI is derandomized) and small log helpers."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings
from pytest import TerminalReporter

# the shipped store contract suite is a test module in all but name: its failed asserts explain themselves
pytest.register_assert_rewrite("events.testing.store_contract")

settings.register_profile("ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    """What the crash, fault and hostile-input loops ran (the README's Reliability table cites these)."""
    from tests.reliability.crashloop import RAN

    if RAN:
        terminalreporter.section("reliability: what the crash, fault and hostile-input loops ran")
        for line in RAN:
            terminalreporter.write_line(line)
