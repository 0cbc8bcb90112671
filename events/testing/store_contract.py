"""The contract every log store passes (the JSONL file, the in-memory twin, later JetStream).

A store passes it with a test module holding one subclass with a one-line factory:

    class TestMyLog(StoreContract):
        def make_store(self, tmp_path: Path) -> LogStore:
            return MyLog.open(tmp_path / "log", clock=StepClock(), id_window=ID_WINDOW)

The factory returns a new, empty log (its header already written) with a recent-id window
of ID_WINDOW events in total (`id_window=ID_WINDOW`). `StoreContract` has no `Test` prefix, so
pytest collects it only through its subclasses. This module runs under pytest (with
anyio's pytest plugin, which anyio installs); importing it elsewhere says so.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from pathlib import Path

import anyio

try:
    import pytest
except ModuleNotFoundError as exc:  # an installed asup need not have pytest; only this suite needs it
    raise ModuleNotFoundError("events.testing.store_contract is a pytest suite: install pytest to run it") from exc

from events.errors import AsupError, ErrorCode
from events.payloads import LogCreated
from events.record import HEADER_STREAM, Record
from events.store import LogStore, Pending
from events.testing import close_iterator, tags, transition

ID_WINDOW = 64  # the recent-id window (in total, over every stream) the factories give their stores
FOLLOW_TIMEOUT = 3.0  # seconds; a follower sees a new record within milliseconds


class StoreContract(abc.ABC):
    """Behaviour shared by every `LogStore`."""

    @abc.abstractmethod
    def make_store(self, tmp_path: Path) -> LogStore:
        """A new, empty log (header written) with a recent-id window of ID_WINDOW."""

    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[LogStore]:
        store = self.make_store(tmp_path)
        yield store
        store.close()

    @pytest.fixture
    def anyio_backend(self) -> str:
        return "asyncio"

    # --- appending and reading -------------------------------------------------------

    def test_append_reads_back_in_order(self, store: LogStore) -> None:
        """Appended events read back in append order with their payloads intact."""
        events = [transition(f"t{i}", i) for i in range(5)]
        store.append("a", events[:2])
        store.append("b", events[2:3])
        store.append_batch([Pending("a", events[3]), Pending("c", events[4])])
        records = list(store.read())
        assert [r.data for r in records[1:]] == events
        assert [r.stream for r in records[1:]] == ["a", "a", "b", "a", "c"]

    def test_seq_contiguous_from_one_with_header_first(self, store: LogStore) -> None:
        """seq runs 1, 2, 3 … with the log_created header at seq 1 in the `$log` stream."""
        for i in range(4):
            store.append(f"s{i % 2}", [transition(f"t{i}a"), transition(f"t{i}b")])
        records = list(store.read())
        assert [r.seq for r in records] == list(range(1, 10))
        header = records[0]
        assert header.stream == HEADER_STREAM
        assert header.sv == 1
        assert isinstance(header.data, LogCreated)

    def test_positions_and_per_stream_versions(self, store: LogStore) -> None:
        """Each stream counts its own versions from 1; positions name seq, stream and sv."""
        first = store.append("a", [transition("a1"), transition("a2")])
        second = store.append_batch([Pending("b", transition("b1")), Pending("a", transition("a3"))])
        assert [(p.seq, p.stream, p.sv) for p in first] == [(2, "a", 1), (3, "a", 2)]
        assert [(p.seq, p.stream, p.sv) for p in second] == [(4, "b", 1), (5, "a", 3)]
        assert store.stream_version("a") == 3
        assert store.stream_version("b") == 1
        assert store.stream_version("never") == 0
        by_seq = {r.seq: r for r in store.read()}
        for position in first + second:
            assert (by_seq[position.seq].stream, by_seq[position.seq].sv) == (position.stream, position.sv)

    def test_read_from_seq(self, store: LogStore) -> None:
        """read(from_seq) starts at that seq."""
        store.append("a", [transition(f"t{i}") for i in range(5)])
        assert [r.seq for r in store.read(4)] == [4, 5, 6]

    def test_read_stream(self, store: LogStore) -> None:
        """read_stream yields only that stream's records, in version order."""
        store.append_batch([Pending("a", transition("a1")), Pending("b", transition("b1")), Pending("a", transition("a2"))])
        store.append("b", [transition("b2")])
        a = list(store.read_stream("a"))
        b = list(store.read_stream("b"))
        assert tags(a) == ["a1", "a2"]
        assert [r.sv for r in a] == [1, 2]
        assert tags(b) == ["b1", "b2"]
        assert list(store.read_stream("missing")) == []

    def test_last_position_is_last_record(self, store: LogStore) -> None:
        """last_position is the last record's (seq, h), before and after appends."""
        records = list(store.read())
        assert store.last_position() == (records[-1].seq, records[-1].h) == (1, records[0].h)
        store.append("a", [transition("a1"), transition("a2")])
        last = list(store.read())[-1]
        assert store.last_position() == (3, last.h)
        assert last.h.startswith("blake3:")

    # --- expected versions -----------------------------------------------------------

    def test_expected_version_honoured(self, store: LogStore) -> None:
        """An append expecting the stream's current version lands at the next version."""
        assert [p.sv for p in store.append("a", [transition("a1")], expected_version=0)] == [1]
        assert [p.sv for p in store.append("a", [transition("a2"), transition("a3")], expected_version=1)] == [2, 3]
        assert store.stream_version("a") == 3

    def test_expectation_ahead_conflicts_and_writes_nothing(self, store: LogStore) -> None:
        """Expecting a version the stream has not reached raises conflict_detected; nothing is written."""
        store.append("a", [transition("a1")])
        before = [r.h for r in store.read()]
        with pytest.raises(AsupError) as info:
            store.append("a", [transition("a2")], expected_version=5)
        assert info.value.code is ErrorCode.CONFLICT_DETECTED
        assert [r.h for r in store.read()] == before
        assert store.stream_version("a") == 1

    def test_stale_expectation_with_new_id_conflicts(self, store: LogStore) -> None:
        """A stale expectation carrying a new event id raises conflict_detected and writes nothing."""
        store.append("a", [transition("a1"), transition("a2")])
        before = [r.h for r in store.read()]
        with pytest.raises(AsupError) as info:
            store.append_batch([Pending("a", transition("late"), expected_version=1, id="late-writer-1")])
        assert info.value.code is ErrorCode.CONFLICT_DETECTED
        assert [r.h for r in store.read()] == before

    def test_stale_expectation_with_different_event_conflicts(self, store: LogStore) -> None:
        """Two writers that both saw version 0: the second one's different event conflicts, it is not taken for a retry."""
        winner = store.append("a", [transition("winner")], expected_version=0)
        with pytest.raises(AsupError) as info:
            store.append("a", [transition("loser")], expected_version=0)
        assert info.value.code is ErrorCode.CONFLICT_DETECTED
        assert tags(list(store.read_stream("a"))) == ["winner"]
        assert winner[0].sv == 1

    def test_conflict_rejects_whole_batch(self, store: LogStore) -> None:
        """A stale item anywhere in a batch rejects the batch: earlier valid items are not written either."""
        store.append("a", [transition("a1")])
        before = [r.h for r in store.read()]
        last = store.last_position()
        batch = [
            Pending("b", transition("b1"), expected_version=0),
            Pending("a", transition("a2"), expected_version=1),
            Pending("c", transition("c1")),
            Pending("a", transition("a3"), expected_version=7),
        ]
        with pytest.raises(AsupError) as info:
            store.append_batch(batch)
        assert info.value.code is ErrorCode.CONFLICT_DETECTED
        assert [r.h for r in store.read()] == before
        assert store.last_position() == last
        assert (store.stream_version("a"), store.stream_version("b"), store.stream_version("c")) == (1, 0, 0)
        # the heads were not advanced by the rejected plan: the next append chains from the old ones
        positions = store.append_batch(batch[:3])
        assert [(p.seq, p.stream, p.sv) for p in positions] == [(3, "b", 1), (4, "a", 2), (5, "c", 1)]
        assert tags(list(store.read())) == ["a1", "b1", "a2", "c1"]

    # --- idempotency -----------------------------------------------------------------

    def test_retried_batch_returns_original_positions(self, store: LogStore) -> None:
        """Re-appending the same batch with the same expected versions returns the original positions, writes nothing."""
        store.append("a", [transition("a0")])
        batch = [
            Pending("a", transition("a1"), expected_version=1),
            Pending("b", transition("b1"), expected_version=0),
            Pending("a", transition("a2"), expected_version=2),
        ]
        original = store.append_batch(batch)
        after = [r.h for r in store.read()]
        last = store.last_position()
        assert store.append_batch(batch) == original
        assert store.append("a", [transition("a1"), transition("a2")], expected_version=1) == [original[0], original[2]]
        assert [r.h for r in store.read()] == after
        assert store.last_position() == last

    def test_explicit_ids_dedupe(self, store: LogStore) -> None:
        """An explicit id seen before in the stream returns its original position, even within one batch."""
        first = store.append_batch([Pending("a", transition("x"), id="id-x")])
        store.append("a", [transition("y")])
        again = store.append_batch([Pending("a", transition("x"), id="id-x"), Pending("a", transition("z"), id="id-z")])
        assert again[0] == first[0]
        assert again[1].sv == 3
        twice = store.append_batch([Pending("a", transition("w"), id="id-w"), Pending("a", transition("w"), id="id-w")])
        assert twice[0] == twice[1]
        assert tags(list(store.read_stream("a"))) == ["x", "y", "z", "w"]

    def test_dedupe_window_is_bounded(self, store: LogStore) -> None:
        """An id is remembered for the log's last ID_WINDOW events, whatever their streams (the
        window is bounded in total, not per stream), then forgotten."""
        first = store.append_batch([Pending("a", transition("x"), id="id-x")])
        store.append("a", [transition("fill-a")])
        store.append("other", [transition(f"other{i}") for i in range(ID_WINDOW - 2)])
        assert store.append_batch([Pending("a", transition("x"), id="id-x")]) == first  # the 64th event back: still in
        store.append("other", [transition("evict")])
        again = store.append_batch([Pending("a", transition("x"), id="id-x")])
        assert again != first
        assert again[0].sv == 3
        assert tags(list(store.read_stream("a"))).count("x") == 2

    def test_retry_after_window_conflicts(self, store: LogStore) -> None:
        """A retry with an expected version whose id has left the window is a stale expectation."""
        batch = [Pending("a", transition("x"), expected_version=0)]
        first = store.append_batch(batch)
        store.append("a", [transition(f"fill{i}") for i in range(ID_WINDOW - 1)])
        assert store.append_batch(batch) == first
        store.append("a", [transition("evict")])
        before = [r.h for r in store.read()]
        with pytest.raises(AsupError) as info:
            store.append_batch(batch)
        assert info.value.code is ErrorCode.CONFLICT_DETECTED
        assert [r.h for r in store.read()] == before

    # --- following -------------------------------------------------------------------

    @pytest.mark.anyio
    async def test_follow_yields_existing_then_new(self, store: LogStore) -> None:
        """follow() yields the records already there, then each one appended later, in seq order."""
        store.append("a", [transition("old1"), transition("old2")])
        seen: list[Record] = []
        follower = store.follow()
        caught_up = anyio.Event()

        async def consume() -> None:
            while len(seen) < 6:
                seen.append(await anext(follower))
                if len(seen) == 3:
                    caught_up.set()

        with anyio.fail_after(FOLLOW_TIMEOUT):
            async with anyio.create_task_group() as group:
                group.start_soon(consume)
                await caught_up.wait()
                await anyio.wait_all_tasks_blocked()
                assert tags(seen) == ["old1", "old2"]
                store.append("b", [transition("new1")])
                store.append("a", [transition("new2"), transition("new3")])
        await close_iterator(follower)
        assert [r.seq for r in seen] == [1, 2, 3, 4, 5, 6]
        assert tags(seen) == ["old1", "old2", "new1", "new2", "new3"]
        assert [r.h for r in seen] == [r.h for r in store.read()]

    @pytest.mark.anyio
    async def test_follow_from_seq(self, store: LogStore) -> None:
        """follow(from_seq) skips the records before from_seq."""
        store.append("a", [transition(f"t{i}") for i in range(4)])
        follower = store.follow(4)
        with anyio.fail_after(FOLLOW_TIMEOUT):
            got = [await anext(follower), await anext(follower)]
            store.append("a", [transition("t4")])
            got.append(await anext(follower))
        await close_iterator(follower)
        assert [r.seq for r in got] == [4, 5, 6]
        assert tags(got) == ["t2", "t3", "t4"]
