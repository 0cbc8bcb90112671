"""Runbook section D for an object-store target: the bucket's servers are tried (a TCP
connect, no request), never taken for a directory."""

from __future__ import annotations

import socket

from events.observations import Intent, StoreFailed
from events.vocabulary import Mode
from runbook.storage_check import storage_now


def _intent(target_path: str) -> Intent:
    return Intent(
        transfer_id="t",
        artifact_id="a",
        artifact_class="c",
        mode=Mode.STRICT,
        seed=0,
        expected_checksum="",
        size=10,
        max_attempts=0,
        chunk_size=4,
        source="a",
        target="a",
        adapter="full",
        requested=[],
        target_path=target_path,
    )


FAILED = StoreFailed(kind="io", where="target", op="write", path="a")


def test_a_bucket_whose_server_listens_is_healthy_now() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        target = f"nats://127.0.0.1:{port}/B#a"
        healthy, found = storage_now(FAILED, _intent(target), 0)
    assert healthy, found
    assert found == f"{target}: the object store's server 127.0.0.1:{port} takes a connection now"


def test_a_bucket_whose_servers_are_gone_is_not_and_is_not_called_a_directory() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]  # closed on leaving: nothing listens there now
    target = f"nats://127.0.0.1:{port}/B#a"
    healthy, found = storage_now(FAILED, _intent(target), 0)
    assert not healthy
    assert found == f"{target}: none of the object store's servers takes a connection now"
    assert "directory" not in found
