"""The JetStream log passes the store contract suite, on Debian's 2.9 (per-message
publishes) and on a >= 2.12 server (atomic batches)."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from events.clock import StepClock
from events.jetstream.log import JetStreamLog
from events.store import LogStore
from events.testing.store_contract import ID_WINDOW, StoreContract
from tests.nats.servers import NatsServer

pytestmark = pytest.mark.nats
_names = itertools.count(1)


class TestJetStreamLog(StoreContract):
    @pytest.fixture(autouse=True)
    def _server(self, nats_module_server: NatsServer) -> None:
        self.server = nats_module_server

    def make_store(self, tmp_path: Path) -> LogStore:
        return JetStreamLog.open(f"{self.server.url}/C{next(_names)}", clock=StepClock(), id_window=ID_WINDOW)
