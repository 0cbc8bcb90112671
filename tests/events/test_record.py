"""The record format: every registered event type round-trips byte-exactly through a line;
the digest trailer verifies; unknown fields, unknown types and newer schema versions are
refused with a message naming what is wrong; logs are deterministic to the byte and their
event ids are derived, never random.

Strategies are built from the payload structs' own field info (msgspec.inspect), so an
event type added to the registry is covered here without touching this file; a field of a
type the builder does not know fails loudly instead of being skipped.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from enum import Enum
from functools import cache
from pathlib import Path
from typing import Any, cast

import msgspec
import orjson
import pytest
from blake3 import blake3
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from events.catalog import REGISTRY
from events.chain import ChainState
from events.clock import StepClock
from events.errors import ErrorCode
from events.jsonl_log import JsonlLog
from events.memory_log import MemoryLog
from events.payloads import Event, LogCreated
from events.record import (
    LOG_SCHEMA,
    MAX_LINE,
    SCHEMA_VERSION,
    TRAILER_LEN,
    LineFault,
    Record,
    check_line,
    derive_event_id,
    encode_into,
    genesis,
)
from events.scan import Scanner
from events.schema import RECORD_CLASSES, decode_line
from events.store import Pending
from events.strict_json import INT64_MAX, INT64_MIN
from events.testing import transition
from events.vocabulary import Durability

TAGS = sorted(REGISTRY)
ENVELOPE_KEYS = ["type", "v", "seq", "stream", "sv", "id", "ts", "data", "prev", "h"]
TRAILER_HEAD = b',"h":"blake3:'
UNKNOWN = "zz_not_a_field"


# --- strategies from the structs' field info -------------------------------------------


def strategy_for(info: msgspec.inspect.Type) -> st.SearchStrategy[Any]:
    """Values of a msgspec type that survive JSON: ints within 64 bits (signed, as a record's
    ints are read), finite floats, any text."""
    builders: dict[type[msgspec.inspect.Type], Callable[[Any], st.SearchStrategy[Any]]] = {
        msgspec.inspect.StrType: lambda _i: st.text(max_size=40),
        msgspec.inspect.IntType: lambda _i: st.integers(INT64_MIN, INT64_MAX),
        msgspec.inspect.FloatType: lambda _i: st.floats(allow_nan=False, allow_infinity=False),
        msgspec.inspect.BoolType: lambda _i: st.booleans(),
        msgspec.inspect.NoneType: lambda _i: st.none(),
        msgspec.inspect.EnumType: lambda i: st.sampled_from(list(cast(type[Enum], i.cls))),
        msgspec.inspect.LiteralType: lambda i: st.sampled_from(list(i.values)),
        msgspec.inspect.UnionType: lambda i: st.one_of(*(strategy_for(t) for t in i.types)),
        msgspec.inspect.ListType: lambda i: st.lists(strategy_for(i.item_type), max_size=3),
        msgspec.inspect.VarTupleType: lambda i: st.lists(strategy_for(i.item_type), max_size=3).map(tuple),
        msgspec.inspect.TupleType: lambda i: st.tuples(*(strategy_for(t) for t in i.item_types)),
        msgspec.inspect.DictType: lambda i: st.dictionaries(strategy_for(i.key_type), strategy_for(i.value_type), max_size=3),
        msgspec.inspect.StructType: lambda i: struct_strategy(i.cls),
    }
    builder = builders.get(type(info))
    if builder is None:
        raise NotImplementedError(f"no strategy for payload field type {info!r}: extend strategy_for")
    return builder(info)


_DEFAULT = object()


@cache
def struct_strategy(cls: type[msgspec.Struct]) -> st.SearchStrategy[Any]:
    """Instances of `cls`; an optional field is sometimes left to its default."""
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    fields: dict[str, st.SearchStrategy[Any]] = {}
    for field in info.fields:
        value = strategy_for(field.type)
        fields[field.name] = value if field.required else st.one_of(st.just(_DEFAULT), value)

    def build(values: dict[str, Any]) -> Any:
        return cls(**{name: value for name, value in values.items() if value is not _DEFAULT})

    return st.fixed_dictionaries(fields).map(build)


def event_strategy(tag: str) -> st.SearchStrategy[Event]:
    return cast(st.SearchStrategy[Event], struct_strategy(REGISTRY[tag]))


any_event: st.SearchStrategy[Event] = st.sampled_from(TAGS).flatmap(event_strategy)
texts = st.text(max_size=30)
positive = st.integers(1, 2**62)
streams = st.sampled_from(["t-1", "t-2", "transfer/ä", "$ops"])


# --- helpers ---------------------------------------------------------------------------


def encode_one(
    event: Event, *, seq: int = 2, stream: str = "t-1", sv: int = 1, event_id: str = "e-1", ts: str = "T", prev: str | None = None
) -> bytes:
    """One encoded line (with its newline)."""
    buf = bytearray()
    prev = genesis("x", stream) if prev is None else prev
    encode_into(buf, seq=seq, stream=stream, sv=sv, event_id=event_id, ts=ts, data=event, prev=prev)
    return bytes(buf)


def rehash(obj: dict[str, Any]) -> bytes:
    """Serialise an edited record (its `h` dropped) with a correct digest trailer, no newline."""
    body = {key: value for key, value in obj.items() if key != "h"}
    prefix = orjson.dumps(body)[:-1]
    return prefix + TRAILER_HEAD + blake3(prefix).hexdigest().encode() + b'"}'


def fault_of(outcome: Record | LineFault) -> LineFault:
    assert isinstance(outcome, LineFault), f"expected a refusal, decoded {outcome!r}"
    return outcome


def sample_line(tag: str = "transition") -> bytes:
    """A valid line of a simple event of type `tag`, without its newline."""
    memory = MemoryLog("sample", clock=StepClock())
    memory.append("t-1", [_simple_event(tag)])
    return bytes(memory.data).splitlines()[1]


def _simple_event(tag: str) -> Event:
    if tag == "transition":
        return transition("t-1")
    return LogCreated(log_id="inner", schema=LOG_SCHEMA)


# --- round trip --------------------------------------------------------------------------


@pytest.mark.parametrize("tag", TAGS)
@settings(max_examples=40)
@given(data=st.data(), seq=positive, stream=texts, sv=positive, event_id=texts, ts=texts, prev=texts)
def test_every_event_type_round_trips_through_encode_into(
    tag: str, data: st.DataObject, seq: int, stream: str, sv: int, event_id: str, ts: str, prev: str
) -> None:
    """encode_into appends one line that decode_line turns back into an equal record of the type's record class."""
    event = data.draw(event_strategy(tag), label="event")
    buf = bytearray(b"earlier bytes\n")
    h = encode_into(buf, seq=seq, stream=stream, sv=sv, event_id=event_id, ts=ts, data=event, prev=prev)
    assert buf.startswith(b"earlier bytes\n")
    line = bytes(buf[len(b"earlier bytes\n") :])
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    body = line[:-1]
    record = decode_line(body)
    assert isinstance(record, Record), record
    assert type(record) is RECORD_CLASSES[type(event)]
    assert record.type == tag
    assert (record.v, record.seq, record.stream, record.sv, record.id, record.ts, record.prev, record.h) == (
        SCHEMA_VERSION,
        seq,
        stream,
        sv,
        event_id,
        ts,
        prev,
        h,
    )
    assert record.data == event
    assert list(orjson.loads(body)) == ENVELOPE_KEYS
    again = encode_one(record.data, seq=seq, stream=stream, sv=sv, event_id=event_id, ts=ts, prev=prev)
    assert again == line, "re-encoding the decoded record gives the same bytes"


@pytest.mark.parametrize("tag", TAGS)
@settings(max_examples=15)
@given(data=st.data())
def test_digest_trailer_covers_every_byte_before_it(tag: str, data: st.DataObject) -> None:
    """h is BLAKE3 of the bytes before the fixed 79-byte trailer; flipping any one of those bytes is a digest mismatch."""
    body = encode_one(data.draw(event_strategy(tag), label="event"))[:-1]
    assert TRAILER_LEN == 79
    trailer = body[-TRAILER_LEN:]
    assert trailer.startswith(TRAILER_HEAD) and trailer.endswith(b'"}')
    assert trailer[len(TRAILER_HEAD) : -2] == blake3(body[:-TRAILER_LEN]).hexdigest().encode()
    assert check_line(body) is None
    position = data.draw(st.integers(0, len(body) - 1), label="position")
    bit = data.draw(st.integers(0, 7), label="bit")
    damaged = bytearray(body)
    damaged[position] ^= 1 << bit
    fault = fault_of(decode_line(bytes(damaged)))
    assert fault.reason == "digest_mismatch" and fault.torn
    assert fault.field == "$.h"


def test_incomplete_and_overlong_lines_are_torn_faults() -> None:
    """A valid body without its newline is no_newline; a line of MAX_LINE bytes is too_long; both may be a torn tail."""
    body = sample_line()
    assert fault_of(decode_line(body, complete=False)).reason == "no_newline"
    long = fault_of(decode_line(b"x" * MAX_LINE))
    assert long.reason == "too_long" and long.torn


@settings(max_examples=25)
@given(events=st.lists(st.tuples(streams, any_event), min_size=1, max_size=12))
def test_memory_log_round_trips_every_event_type(events: list[tuple[str, Event]]) -> None:
    """Events of any registered type appended to a MemoryLog read back equal, with contiguous seq and per-stream sv."""
    memory = MemoryLog("round-trip", clock=StepClock())
    for stream, event in events:
        memory.append(stream, [event])
    records = list(memory.read(2))
    assert [(r.stream, r.data) for r in records] == events
    assert [r.seq for r in records] == list(range(2, len(events) + 2))
    versions: dict[str, int] = {}
    for record in records:
        versions[record.stream] = versions.get(record.stream, 0) + 1
        assert record.sv == versions[record.stream]
    lines = bytes(memory.data).splitlines()
    assert [decode_line(line) for line in lines[1:]] == records


# --- refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize("tag", TAGS)
@settings(max_examples=5)
@given(data=st.data())
def test_unknown_data_field_is_refused_naming_it(tag: str, data: st.DataObject) -> None:
    """A data object with an extra field (digest still valid) is schema_unsupported, naming `$.data.<field>`."""
    obj = orjson.loads(encode_one(data.draw(event_strategy(tag), label="event")))
    assert UNKNOWN not in obj["data"]
    obj["data"][UNKNOWN] = 1
    fault = fault_of(decode_line(rehash(obj)))
    assert fault.reason == "schema_unsupported" and not fault.torn
    assert fault.field == f"$.data.{UNKNOWN}"
    assert UNKNOWN in fault.message


def test_unknown_envelope_field_is_refused_naming_it() -> None:
    """An extra envelope key (digest valid) is schema_unsupported, naming `$.<field>`."""
    obj = orjson.loads(sample_line())
    obj = {**{k: v for k, v in obj.items() if k != "h"}, UNKNOWN: "x"}
    fault = fault_of(decode_line(rehash(obj)))
    assert fault.reason == "schema_unsupported"
    assert fault.field == f"$.{UNKNOWN}"


def test_unknown_type_is_refused_listing_the_known_types() -> None:
    """A record whose `type` is not registered (digest valid) is schema_unsupported, and the message lists every known type."""
    obj = orjson.loads(sample_line())
    obj["type"] = "no_such_event"
    fault = fault_of(decode_line(rehash(obj)))
    assert fault.reason == "schema_unsupported" and not fault.torn
    assert "no_such_event" in fault.message and "unknown event type" in fault.message
    missing = [tag for tag in TAGS if tag not in fault.message]
    assert not missing, f"known types not named in {fault.message!r}: {missing}"


def test_unknown_type_fault_names_the_type_field() -> None:
    """The unknown-type refusal's field is `$.type`, like every other refusal names its field."""
    obj = orjson.loads(sample_line())
    obj["type"] = "no_such_event"
    assert fault_of(decode_line(rehash(obj))).field == "$.type"


def test_newer_schema_with_new_fields_asks_for_an_upgrade() -> None:
    """A record of the next version carrying a field this one does not know (digest valid) is schema_unsupported, saying to upgrade asup."""
    obj = orjson.loads(sample_line())
    obj["v"] = SCHEMA_VERSION + 1
    obj["data"][UNKNOWN] = 1
    fault = fault_of(decode_line(rehash(obj)))
    assert fault.reason == "schema_unsupported"
    assert "upgrade" in fault.message and fault.field == "$.v"


def test_newer_schema_version_alone_is_refused_as_unsupported() -> None:
    """A record of the next version in this one's shape (re-hashed, digest valid) is refused by decode_line as schema_unsupported."""
    obj = orjson.loads(sample_line())
    obj["v"] = SCHEMA_VERSION + 1
    fault = fault_of(decode_line(rehash(obj)))
    assert fault.reason == "schema_unsupported"
    assert "upgrade" in fault.message


def test_scanner_reports_a_newer_schema_record_as_unsupported(tmp_path: Path) -> None:
    """A log whose last record says the next v (digest valid) stops the scan with reason schema_unsupported and an upgrade hint."""
    path = tmp_path / "newer.jsonl"
    memory = MemoryLog("newer", clock=StepClock())
    memory.append("t-1", [_simple_event("transition")])
    lines = bytes(memory.data).splitlines()
    obj = orjson.loads(lines[-1])
    obj["v"] = SCHEMA_VERSION + 1
    path.write_bytes(b"\n".join([*lines[:-1], rehash(obj)]) + b"\n")
    scanner = Scanner(path, ChainState())
    assert len(list(scanner)) == 1
    problem = scanner.problem
    assert problem is not None and problem.line == 2
    assert problem.reason == "schema_unsupported", problem
    error = problem.error(str(path))
    assert error.code is ErrorCode.SCHEMA_UNSUPPORTED
    assert "upgrade" in error.message


def test_not_json_with_valid_trailer_is_undecodable() -> None:
    """Bytes that carry a valid digest trailer but are not JSON are undecodable, not a digest problem."""
    prefix = b"{not json"
    fault = fault_of(decode_line(prefix + TRAILER_HEAD + blake3(prefix).hexdigest().encode() + b'"}'))
    assert fault.reason == "undecodable" and not fault.torn


# --- determinism and derived ids ---------------------------------------------------------


def _write(store: MemoryLog | JsonlLog, events: list[tuple[str, Event]]) -> None:
    for stream, event in events:
        store.append(stream, [event])
    store.append_batch([Pending(stream, event) for stream, event in events])


@settings(max_examples=20)
@given(events=st.lists(st.tuples(streams, any_event), min_size=1, max_size=8))
def test_same_input_and_step_clock_give_identical_bytes(events: list[tuple[str, Event]]) -> None:
    """Two MemoryLogs and a JsonlLog fed the same appends with a StepClock hold byte-identical logs."""
    first, second = MemoryLog("det", clock=StepClock()), MemoryLog("det", clock=StepClock())
    _write(first, events)
    _write(second, events)
    assert bytes(first.data) == bytes(second.data)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "det.jsonl"
        with JsonlLog.open(path, log_id="det", clock=StepClock(), durability=Durability.NONE) as log:
            _write(log, events)
        assert path.read_bytes() == bytes(first.data)


@settings(max_examples=100)
@given(a=st.tuples(texts, texts, positive), b=st.tuples(texts, texts, positive))
def test_derived_ids_differ_per_log_stream_and_version(a: tuple[str, str, int], b: tuple[str, str, int]) -> None:
    """derive_event_id is a pure function of (log id, stream, sv) and different triples get different ids."""
    assert derive_event_id(*a) == derive_event_id(*a)
    assert re.fullmatch(r"e-[0-9a-f]{20}-[0-9]+", derive_event_id(*a))
    assert derive_event_id(*a).endswith(f"-{a[2]}")
    assume(a != b)
    assert derive_event_id(*a) != derive_event_id(*b)


def test_derived_ids_separate_their_parts() -> None:
    """Moving characters between the log id and the stream changes the id (the parts are delimited)."""
    assert derive_event_id("ab", "c", 1) != derive_event_id("a", "bc", 1)
    assert derive_event_id("a", "b1", 1) != derive_event_id("a", "b", 11)


def test_log_event_ids_are_derived_and_distinct() -> None:
    """A log's ids are derive_event_id(log, stream, sv); unique within the log, equal across reruns, disjoint across log ids."""

    def build(log_id: str) -> list[Record]:
        memory = MemoryLog(log_id, clock=StepClock())
        for i in range(6):
            memory.append(f"t-{i % 2}", [transition("same", 0)])
        return list(memory.read())

    records = build("log-a")
    for record in records:
        assert record.id == derive_event_id("log-a", record.stream, record.sv)
    ids = [r.id for r in records]
    assert len(set(ids)) == len(ids), "same payload at another (stream, sv) gets another id"
    assert [r.id for r in build("log-a")] == ids
    assert not set(ids) & {r.id for r in build("log-b")}
