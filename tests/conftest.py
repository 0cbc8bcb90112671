"""Shared test setup: hypothesis profiles (CI is derandomized) and small log helpers."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

# the shipped store contract suite is a test module in all but name: its failed asserts explain themselves
pytest.register_assert_rewrite("events.testing.store_contract")

settings.register_profile("ci", derandomize=True, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))
