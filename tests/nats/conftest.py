"""Fixtures over real nats-server processes: each test runs once per server binary.

A binary this machine lacks skips its tests with the reason, unless ASUP_REQUIRE_NATS=1
(CI sets it), where it fails them: CI must have run both servers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.nats.servers import LABELS, REQUIRE_ENV, Binary, NatsCluster, NatsServer, NatsUnavailable, probe

NATS_FIXTURES = frozenset({"nats_binary", "nats_server", "nats_cluster", "nats_module_server"})


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test that starts a server carries the `nats` mark, so `-m "not nats"` leaves
    them out even where a test module forgot its `pytestmark`."""
    for item in items:
        if NATS_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.nats)


@pytest.fixture(params=LABELS, ids=[f"nats-{label}" for label in LABELS])
def nats_binary(request: pytest.FixtureRequest) -> Binary:
    """The nats-server of each label; skipped (failed under ASUP_REQUIRE_NATS=1) when missing."""
    label: str = request.param
    try:
        return probe(label)
    except NatsUnavailable as exc:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{exc} ({REQUIRE_ENV}=1: both servers must run)")
        pytest.skip(str(exc))


@pytest.fixture
def nats_server(nats_binary: Binary, tmp_path: Path) -> Iterator[NatsServer]:
    """One JetStream node of that binary on loopback, stopped after the test."""
    with NatsServer(nats_binary, tmp_path / "nats") as server:
        yield server


@pytest.fixture
def nats_cluster(nats_binary: Binary, tmp_path: Path) -> Iterator[NatsCluster]:
    """Three JetStream nodes of that binary routed on loopback, all stopped after the test."""
    with NatsCluster(nats_binary, tmp_path / "nats-cluster", n=3) as cluster:
        yield cluster


@pytest.fixture(scope="module", params=LABELS, ids=[f"nats-{label}" for label in LABELS])
def nats_module_server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """One node per binary shared by a module's tests (each test uses a stream of its own):
    the store contract suite would otherwise start a server per test."""
    label: str = request.param
    try:
        binary = probe(label)
    except NatsUnavailable as exc:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{exc} ({REQUIRE_ENV}=1: both servers must run)")
        pytest.skip(str(exc))
    with NatsServer(binary, tmp_path_factory.mktemp("nats")) as server:
        yield server
