"""What the JetStream log promises beyond the store contract: the same bytes as the JSONL
file, many writers on one stream, fail-closed opens, an unreachable server, and a
publish that fails part-way through a batch."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path
from typing import Any

import pytest

from events.clock import StepClock
from events.errors import AsupError, ErrorCode
from events.jetstream.bridge import bridge
from events.jetstream.client import Connection, Unreachable
from events.jetstream.log import JetStreamLog
from events.jetstream.url import parse
from events.jsonl_log import JsonlLog
from events.log_ref import log_ref, readable
from events.scan import read_records
from events.store import Pending
from events.testing import tags, transition
from tests.nats.servers import NatsServer

pytestmark = pytest.mark.nats
_names = itertools.count(1)


@pytest.fixture
def url(nats_module_server: NatsServer) -> str:
    return f"{nats_module_server.url}/L{next(_names)}"


def _same_work(log: JsonlLog | JetStreamLog) -> None:
    log.append("t-1", [transition("a1"), transition("a2")], expected_version=0)
    log.append_batch([Pending("t-2", transition("b1")), Pending("t-1", transition("a3"), expected_version=2)])
    log.append_batch([Pending("odd.name *>$ é", transition(f"o{i}")) for i in range(3)])


def test_records_are_the_jsonl_lines_byte_for_byte(url: str, tmp_path: Path) -> None:
    """The same appends with the same clock give the same bytes in a file and on a stream."""
    with JsonlLog.open(tmp_path / "same.jsonl", log_id="same", clock=StepClock()) as file_log:
        _same_work(file_log)
    with JetStreamLog.open(url, log_id="same", clock=StepClock()) as stream_log:
        _same_work(stream_log)
        lines = list(stream_log.verified_lines())
    assert b"".join(line + b"\n" for line in lines) == (tmp_path / "same.jsonl").read_bytes()
    with readable(log_ref(url)) as snapshot:
        assert snapshot.read_bytes() == (tmp_path / "same.jsonl").read_bytes()
        assert [r.seq for r in read_records(snapshot)] == list(range(1, 9))


def test_stream_names_any_characters(url: str) -> None:
    with JetStreamLog.open(url, clock=StepClock()) as log:
        _same_work(log)
        assert tags(list(log.read_stream("odd.name *>$ é"))) == ["o0", "o1", "o2"]
        assert tags(list(log.read_stream("t-1"))) == ["a1", "a2", "a3"]
        assert list(log.read_stream("odd")) == []


def test_two_writers_share_one_stream(url: str) -> None:
    """Two writers append in turn with stale views: each catches up, nothing is lost or
    repeated, seqs stay contiguous and chains unbroken; the races are counted."""
    a = JetStreamLog.open(url, clock=StepClock())
    b = JetStreamLog.open(url, clock=StepClock())
    try:
        for i in range(10):
            a.append("shared", [transition(f"a{i}")])
            b.append("shared", [transition(f"b{i}")])
            b.append_batch([Pending(f"own-b-{i}", transition("x")), Pending("shared", transition(f"bb{i}"))])
        records = list(a.read())
        assert [r.seq for r in records] == list(range(1, len(records) + 1))
        assert len(records) == 1 + 40
        assert b.contention_retries >= 10 and a.contention_retries >= 9
        shared = list(b.read_stream("shared"))
        assert [r.sv for r in shared] == list(range(1, 31))
    finally:
        a.close()
        b.close()


def test_stale_writer_with_different_event_is_refused_not_deduplicated(url: str) -> None:
    """Both writers saw version 1 of the stream; the slower one's different event at the
    same (stream, version) is a conflict (its message id binds its digest, so the server
    never mistakes it for a retry of the winner's)."""
    a = JetStreamLog.open(url, clock=StepClock())
    b = JetStreamLog.open(url, clock=StepClock())
    try:
        a.append("s", [transition("base")])
        b.append("other", [transition("sync b's view")])
        a.append("s", [transition("winner")], expected_version=1)
        with pytest.raises(AsupError) as info:
            b.append("s", [transition("loser")], expected_version=1)
        assert info.value.code is ErrorCode.CONFLICT_DETECTED
        assert tags(list(a.read_stream("s"))) == ["base", "winner"]
    finally:
        a.close()
        b.close()


def test_atomic_where_the_server_supports_it(url: str, nats_module_server: NatsServer) -> None:
    with JetStreamLog.open(url) as log:
        version = log._conn.server_version()
        assert log.atomic is (version >= (2, 12, 0))


class _FailsAfter(Connection):
    """A connection that loses its server after `n` more publishes (the n+1th may or may not
    have been sent): the fault a killed server or a cut network causes mid-batch."""

    def __init__(self, real: Connection, n: int) -> None:
        super().__init__(real.url)
        self._nc = real._nc
        self.left = n

    async def publish(self, subject: str, data: bytes, headers: dict[str, str]) -> dict[str, Any]:
        self.left -= 1
        if self.left < 0:
            if self.left == -1:
                await super().publish(subject, data, headers)  # stored, but its acknowledgement is "lost"
            raise Unreachable("connection lost (injected)")
        return await super().publish(subject, data, headers)

    async def send(self, subject: str, data: bytes, headers: dict[str, str]) -> None:
        await self.publish(subject, data, headers)

    async def publish_many(self, messages: list[tuple[str, bytes, dict[str, str]]]) -> list[dict[str, Any] | Exception]:
        if self.left < 0:
            raise Unreachable("connection lost (injected)")
        sent = min(self.left, len(messages))
        answers = await super().publish_many(messages[:sent])
        self.left -= sent
        if sent < len(messages):
            await super().publish_many(messages[sent : sent + 1])  # stored, but its acknowledgement is "lost"
            self.left = -1
            raise Unreachable("connection lost (injected)")
        return answers


@pytest.mark.parametrize("fail_after", [0, 1, 3])
def test_batch_cut_part_way_completes_without_duplicates(url: str, fail_after: int) -> None:
    """A batch whose publishes fail part-way (one stored with its ack lost) is read back and
    only the rest published again: every event lands once, in order. An atomic batch cut
    before its commit stores nothing."""
    with JetStreamLog.open(url + "?timeout=1", clock=StepClock()) as log:
        log.append("s", [transition("before")])
        real = log._conn
        log._conn = _FailsAfter(real, fail_after)
        events = [Pending("s", transition(f"e{i}")) for i in range(6)]
        started = time.monotonic()
        try:
            with pytest.raises(AsupError) as info:
                log.append_batch(events)  # every retry fails too: the writer gives up in time
        finally:
            log._conn = real
        assert info.value.code is ErrorCode.LOG_UNREACHABLE
        assert time.monotonic() - started < 6
        landed = tags(list(log.read_stream("s")))
        # per message: those sent before the cut, the one whose ack was lost included; atomic: none
        assert landed == ["before"] + ([] if log.atomic else [f"e{i}" for i in range(fail_after + 1)])
        assert len(set(landed)) == len(landed)
        log._conn = real
        positions = log.append_batch(events[len(landed) - 1 :])
        assert tags(list(log.read_stream("s"))) == ["before"] + [f"e{i}" for i in range(6)]
        assert [p.sv for p in positions] == list(range(len(landed) + 1, 8))


def test_unreachable_server_is_one_line_in_time() -> None:
    started = time.monotonic()
    with pytest.raises(AsupError) as info:
        JetStreamLog.open("nats://127.0.0.1:9/NOWHERE?timeout=1")
    assert info.value.code is ErrorCode.LOG_UNREACHABLE
    assert info.value.exit_code == 4
    assert time.monotonic() - started < 5
    assert "nats://127.0.0.1:9/NOWHERE?timeout=1" in str(info.value)


def _raw(url: str, operation: str, body: dict[str, Any] | None = None, publish: tuple[str, bytes] | None = None) -> Any:
    conn = Connection(parse(url))
    run = bridge().call

    async def work() -> Any:
        await conn.connect()
        try:
            if publish is not None:
                return await conn.publish(publish[0], publish[1], {})
            return await conn.api(operation, body)
        finally:
            await conn.close()

    return run(work(), 10)


def test_another_tools_stream_is_refused(url: str) -> None:
    name = parse(url).stream
    _raw(url, f"STREAM.CREATE.{name}", {"name": name, "subjects": ["orders.>"], "num_replicas": 1})
    with pytest.raises(AsupError) as info:
        JetStreamLog.open(url)
    assert info.value.code is ErrorCode.NOT_AN_ASUP_LOG


def test_a_stream_that_discards_is_refused(url: str) -> None:
    name = parse(url).stream
    _raw(url, f"STREAM.CREATE.{name}", {"name": name, "subjects": [f"asup.{name}.>"], "max_msgs": 100, "num_replicas": 1})
    with pytest.raises(AsupError) as info:
        JetStreamLog.open(url)
    assert info.value.code is ErrorCode.NOT_AN_ASUP_LOG
    assert "keeps every record" in info.value.message


def test_a_foreign_message_on_an_asup_subject_is_corruption(url: str) -> None:
    name = parse(url).stream
    with JetStreamLog.open(url, clock=StepClock()) as log:
        log.append("s", [transition("ok")])
    _raw(url, "", publish=(f"asup.{name}.s", json.dumps({"not": "a record"}).encode()))
    with pytest.raises(AsupError) as info:
        JetStreamLog.open(url)
    assert info.value.code is ErrorCode.CORRUPT_RECORD
    assert info.value.line == 3
    with pytest.raises(AsupError) as read_info, readable(log_ref(url)):
        pass
    assert read_info.value.file == url


def test_export_import_round_trip(url: str, tmp_path: Path) -> None:
    """A log imported from a file holds the file's bytes; an interrupted import resumes."""
    with JsonlLog.open(tmp_path / "src.jsonl", clock=StepClock()) as src:
        _same_work(src)
    lines = (tmp_path / "src.jsonl").read_bytes().splitlines()
    with JetStreamLog.open(url, header=False) as target:
        assert target.import_lines(lines[:3]) == 3
    with JetStreamLog.open(url, header=False) as target:
        assert target.import_lines(lines) == len(lines) - 3
        target.append("t-1", [transition("after import")], expected_version=3)
    with readable(log_ref(url)) as snapshot:
        got = snapshot.read_bytes().splitlines()
    assert got[: len(lines)] == lines
    assert len(got) == len(lines) + 1
