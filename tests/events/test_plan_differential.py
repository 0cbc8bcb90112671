"""The batch planner (`events.batch.plan`, hand-tuned) against a plain model of an append.

The model keeps every event of every stream as a list and says what DESIGN and the store
contract say, slowly: each new event takes the next seq, its stream's next version, the
stream's last digest as `prev` and a derived id (or the caller's); an item whose id is already
in its stream (this batch, or among the last `window` events committed to the whole log) is a retry and gets the
original position (a derived id only when the stored payload is the same); an expectation the
stream has passed that is not such a retry, or one ahead of it, conflicts and writes nothing.
Lines are built with `encode_into`, the plain encoder. Generated sequences of batches, with
retries of earlier batches, run through a real `MemoryLog` and the model; positions, conflicts
(code and message) and every byte of the log must agree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec
import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from events.chain import Position
from events.clock import StepClock, format_ts
from events.errors import AsupError, ErrorCode
from events.memory_log import MemoryLog
from events.payloads import Event, LogCreated
from events.record import HEADER_STREAM, LOG_SCHEMA, derive_event_id, encode_into, genesis
from events.store import Pending
from events.testing import transition

LOG_ID = "plan-diff"
STREAMS = ("a", "b", 'q"uote')
KEYS = ("k0", "k1", "k2")  # explicit ids; never of the derived form, so they cannot collide with one


def payload(stream: str, variant: int) -> Event:
    """One of a few payloads per stream: equal variants make retries, different ones stale writers."""
    return transition(stream, variant)


@dataclass(frozen=True)
class Stored:
    id: str
    position: Position
    payload: bytes
    h: str


@dataclass
class Model:
    """Every event of every stream, in order; the bytes of the log."""

    window: int
    clock: StepClock = field(default_factory=StepClock)
    data: bytearray = field(default_factory=bytearray)
    streams: dict[str, list[Stored]] = field(default_factory=dict)
    committed: list[Stored] = field(default_factory=list)  # every event of the log, in seq order
    seq: int = 0

    def version(self, stream: str, planned: list[Stored]) -> int:
        return len(self.streams.get(stream, [])) + sum(s.position.stream == stream for s in planned)

    def find(self, stream: str, event_id: str, planned: list[Stored]) -> Stored | None:
        """A committed event among the log's last `window`, or any event planned in this batch."""
        recent = self.committed[-self.window :] if self.window else []
        return next((s for s in [*recent, *planned] if s.position.stream == stream and s.id == event_id), None)

    def append(self, items: list[Pending]) -> list[Position]:
        ts = format_ts(self.clock.now_ns())  # read once per batch, conflict or not, as the store does
        planned: list[Stored] = []
        positions: list[Position] = []
        buf = bytearray()
        for item in items:
            stream, body = item.stream, msgspec.json.encode(item.event)
            now = self.version(stream, planned)
            behind = item.expected_version is not None and item.expected_version != now
            if item.id is not None or behind:
                wanted = item.id or derive_event_id(LOG_ID, stream, (item.expected_version or 0) + 1)
                hit = self.find(stream, wanted, planned)
                if hit is not None and (item.id is not None or hit.payload == body):
                    positions.append(hit.position)
                    continue
                if behind:
                    raise AsupError(
                        ErrorCode.CONFLICT_DETECTED,
                        f"stream {stream!r} is at version {now}, the append expected {item.expected_version}; nothing was written",
                    )
            sv = now + 1
            event_id = item.id or derive_event_id(LOG_ID, stream, sv)
            previous = [*self.streams.get(stream, []), *(s for s in planned if s.position.stream == stream)]
            prev = previous[-1].h if previous else genesis(LOG_ID, stream)
            position = Position(self.seq + len(planned) + 1, stream, sv)
            h = encode_into(buf, seq=position.seq, stream=stream, sv=sv, event_id=event_id, ts=ts, data=item.event, prev=prev)
            planned.append(Stored(event_id, position, body, h))
            positions.append(position)
        for stored in planned:
            self.streams.setdefault(stored.position.stream, []).append(stored)
        self.committed.extend(planned)
        self.seq += len(planned)
        self.data += buf
        return positions


# --- generated appends -------------------------------------------------------------

ItemSpec = tuple[int, int, int | None, int | None]  # stream index, payload variant, expectation delta, key index
ITEM = st.tuples(
    st.integers(0, len(STREAMS) - 1),
    st.integers(0, 2),
    st.sampled_from([None, None, 0, 0, -1, -2, 1]),  # 0: the version it should see; < 0 behind; 1 ahead
    st.sampled_from([None, None, None, 0, 1, 2]),
)
OPS = st.lists(st.one_of(st.lists(ITEM, min_size=1, max_size=5), st.integers(0, 20)), min_size=1, max_size=12)


def items_of(specs: list[ItemSpec], model: Model) -> list[Pending]:
    """Pendings whose expectations are relative to what each stream is at before the batch (plus the batch's own items)."""
    items, seen = [], dict.fromkeys(STREAMS, 0)
    for stream_index, variant, delta, key in specs:
        stream = STREAMS[stream_index]
        expected = None if delta is None else max(0, model.version(stream, []) + seen[stream] + delta)
        seen[stream] += 1
        items.append(Pending(stream, payload(stream, variant), expected, None if key is None else KEYS[key]))
    return items


def outcome(append: Callable[[list[Pending]], list[Position]], items: list[Pending]) -> list[Position] | tuple[str, str]:
    """The positions an append returns, or the (code, message) it refuses with."""
    try:
        positions = append(items)
    except AsupError as exc:
        return exc.code.value, exc.message
    return positions


def fresh_model(window: int) -> Model:
    """The model after the header record every log starts with."""
    model = Model(window)
    model.append([Pending(HEADER_STREAM, LogCreated(log_id=LOG_ID, schema=LOG_SCHEMA))])
    return model


@settings(max_examples=300)
@given(ops=OPS, window=st.sampled_from([1, 3, 64]))
def test_plan_agrees_with_the_plain_model(ops: list[list[ItemSpec] | int], window: int) -> None:
    """Any sequence of batches and retries: the store and the model give the same positions or conflict, and the same bytes."""
    log = MemoryLog(LOG_ID, clock=StepClock(), id_window=window)
    model = fresh_model(window)
    sent: list[list[Pending]] = []
    for op in ops:
        items = sent[op % len(sent)] if isinstance(op, int) and sent else items_of(op, model) if isinstance(op, list) else []
        if not items:
            continue
        sent.append(items)
        before = model.seq
        expected = outcome(model.append, items)
        event("conflict" if isinstance(expected, tuple) else "appended" if model.seq > before else "all retried")
        assert outcome(log.append_batch, items) == expected
    assert bytes(log.data) == bytes(model.data)


def test_the_model_sees_a_retry_and_a_stale_writer() -> None:
    """The model itself: a resent event is given its position, a different event at a passed version conflicts."""
    model = fresh_model(3)
    first = [Pending("a", payload("a", 0), 0)]
    assert model.append(first) == [Position(2, "a", 1)]
    assert model.append(first) == [Position(2, "a", 1)]
    assert outcome(model.append, [Pending("a", payload("a", 1), 0)]) == (
        "conflict_detected",
        "stream 'a' is at version 1, the append expected 0; nothing was written",
    )


def test_a_retry_inside_one_batch_is_a_retry_as_in_the_next_batch() -> None:
    """An item expecting the version before an event the same batch planned (same payload, derived id) gets that
    event's position, as it would if sent in the next batch (it once conflicted: only items with an id or an
    expectation were indexed within a batch)."""
    retry = [Pending("a", payload("a", 0)), Pending("a", payload("a", 0), 0)]
    assert MemoryLog(LOG_ID, clock=StepClock()).append_batch(retry) == [Position(2, "a", 1), Position(2, "a", 1)]
    split = MemoryLog(LOG_ID, clock=StepClock())
    assert [*split.append_batch(retry[:1]), *split.append_batch(retry[1:])] == [Position(2, "a", 1), Position(2, "a", 1)]
    stale = [Pending("a", payload("a", 0)), Pending("a", payload("a", 1), 0)]
    with pytest.raises(AsupError) as refused:
        MemoryLog(LOG_ID, clock=StepClock()).append_batch(stale)
    assert refused.value.code is ErrorCode.CONFLICT_DETECTED
