"""Schema evolution: older records are lifted through a chain of upcasters, one per step;
a digest-valid record only a newer asup reads (a newer `v`, an unknown type, code or
field) is schema_unsupported, never corruption; damage stays corrupt.

The v2 and v3 schemas here are defined by the tests only (asup ships v1): `source_hashed`
renames `size` to `size_bytes` and adds a required `algorithm` at v2, and adds `source` at v3.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest
from blake3 import blake3
from msgspec.structs import replace

from events.catalog import REGISTRY
from events.chain import ChainState
from events.clock import StepClock
from events.errors import AsupError, ErrorCode
from events.jsonl_log import JsonlLog
from events.observations import IntentRecorded, Observation, SourceHashed
from events.payloads import Transition
from events.record import SCHEMA_VERSION, TRAILER_HEAD, LineFault, Record
from events.scan import Scanner, read_records
from events.schema import SCHEMA, UPCASTERS, Schema, Upcaster, decode_line
from events.testing import transition

DIGEST = "blake3:" + "1" * 64


class SourceHashedV2(Observation, frozen=True):
    """`source_hashed` at v2: `size` renamed, `algorithm` added (no default: the upcaster supplies it)."""

    TYPE: ClassVar[str] = "source_hashed"
    digest: str
    size_bytes: int
    algorithm: str


class SourceHashedV3(SourceHashedV2, frozen=True):
    """`source_hashed` at v3: `source` added."""

    source: str


def size_renamed(data: dict[str, Any]) -> dict[str, Any]:
    """v1 -> v2 of source_hashed."""
    size = data.pop("size")
    return {**data, "size_bytes": size, "algorithm": "blake3"}


def source_added(data: dict[str, Any]) -> dict[str, Any]:
    """v2 -> v3 of source_hashed."""
    return {**data, "source": "unknown"}


NOW = SCHEMA_VERSION  # what this asup writes; the test schemas below are the next two versions


def schema_v2(lift: Upcaster = size_renamed) -> Schema:
    return Schema(NOW + 1, {**REGISTRY, "source_hashed": SourceHashedV2}, {**UPCASTERS, NOW: {"source_hashed": lift}})


V3 = Schema(
    NOW + 2,
    {**REGISTRY, "source_hashed": SourceHashedV3},
    {**UPCASTERS, NOW: {"source_hashed": size_renamed}, NOW + 1: {"source_hashed": source_added}},
)


def rehash(obj: dict[str, Any]) -> bytes:
    """An edited record with a valid digest trailer, newline included."""
    prefix = orjson.dumps({k: v for k, v in obj.items() if k != "h"})[:-1]
    return prefix + TRAILER_HEAD + blake3(prefix).hexdigest().encode() + b'"}\n'


@pytest.fixture
def v1_log(tmp_path: Path) -> Path:
    """A log as this asup writes it: transitions and two source_hashed records. Below, "v1" is
    this asup's version and "v2", "v3" the two test schemas after it (`NOW + 1`, `NOW + 2`)."""
    path = tmp_path / "v1.jsonl"
    with JsonlLog.open(path, log_id="evolve", clock=StepClock()) as log:
        log.append("t-1", [transition("t-1"), SourceHashed(digest=DIGEST, size=10, at_ns=5)])
        log.append("t-2", [SourceHashed(digest=DIGEST, size=20), transition("t-2", 3)])
    return path


def edit_line(path: Path, line: int, edit: Any) -> None:
    """Apply `edit` to the parsed record at 1-based `line` and re-digest it (the chain after it is left as it was)."""
    lines = path.read_bytes().splitlines(keepends=True)
    obj = orjson.loads(lines[line - 1])
    edit(obj)
    lines[line - 1] = rehash(obj)
    path.write_bytes(b"".join(lines))


def problem_of(path: Path, schema: Schema = SCHEMA) -> tuple[int, Any]:
    scanner = Scanner(path, ChainState(), schema=schema)
    records = sum(1 for _ in scanner)
    return records, scanner.problem


def refusal(line: bytes) -> LineFault:
    outcome = decode_line(line.rstrip(b"\n"))
    assert isinstance(outcome, LineFault), f"decoded {outcome!r}"
    return outcome


# --- the chain ---------------------------------------------------------------------------


def test_v1_records_read_back_as_v2_through_the_upcaster(v1_log: Path) -> None:
    """A v2 reader lifts each v1 source_hashed record to its v2 shape; other types, the envelope and the digests are as v1 reads them."""
    old = list(read_records(v1_log))
    new = list(read_records(v1_log, schema=schema_v2()))
    lifted = [r.data for r in new if r.type == "source_hashed"]
    assert lifted == [
        SourceHashedV2(digest=DIGEST, size_bytes=10, algorithm="blake3", at_ns=5),
        SourceHashedV2(digest=DIGEST, size_bytes=20, algorithm="blake3"),
    ]
    assert [(r.v, r.seq, r.stream, r.sv, r.id, r.h) for r in new] == [(r.v, r.seq, r.stream, r.sv, r.id, r.h) for r in old]
    assert [r.data for r in new if r.type != "source_hashed"] == [r.data for r in old if r.type != "source_hashed"]
    assert {r.v for r in new} == {NOW}


def test_the_chain_applies_every_step_in_order(v1_log: Path) -> None:
    """A v3 reader lifts a v1 record through v1->v2 and then v2->v3, and a v2 record through v2->v3 only."""
    edit_line(v1_log, 3, lambda obj: obj.update(v=NOW + 1, data=size_renamed(obj["data"]) | {"algorithm": "sha256"}))
    records = list(read_records(v1_log, schema=V3))
    lifted = [(r.v, r.data) for r in records if r.type == "source_hashed"]
    assert lifted == [
        (NOW + 1, SourceHashedV3(digest=DIGEST, size_bytes=10, algorithm="sha256", source="unknown", at_ns=5)),
        (NOW, SourceHashedV3(digest=DIGEST, size_bytes=20, algorithm="blake3", source="unknown")),
    ]


def test_a_record_at_the_current_version_is_not_upcast(v1_log: Path) -> None:
    """A v2 reader decodes a v2 record as it is: the upcaster is never called for it."""
    edit_line(v1_log, 3, lambda obj: obj.update(v=NOW + 1, data={"digest": DIGEST, "size_bytes": 7, "algorithm": "sha256", "at_ns": 0}))
    calls: list[dict[str, Any]] = []

    def counting(data: dict[str, Any]) -> dict[str, Any]:
        calls.append(dict(data))
        return size_renamed(data)

    records = list(read_records(v1_log, schema=schema_v2(counting)))
    assert [r.data for r in records if r.seq == 3] == [SourceHashedV2(digest=DIGEST, size_bytes=7, algorithm="sha256")]
    assert [data["size"] for data in calls] == [20]  # only the v1 record at line 4


def test_a_log_reads_unchanged_by_the_shipped_schema(v1_log: Path) -> None:
    """The shipped schema is v2 with one step (v1 intents gain their paths): it reads its own logs as they were written."""
    assert (SCHEMA.version, SCHEMA_VERSION, sorted(UPCASTERS), sorted(UPCASTERS[1])) == (2, 2, [1], ["intent_recorded"])
    records = list(read_records(v1_log))
    assert [type(r.data) for r in records[1:]] == [Transition, SourceHashed, SourceHashed, Transition]
    assert {r.v for r in records} == {SCHEMA_VERSION}


def test_a_v1_intent_reads_with_no_paths() -> None:
    """A v1 asup recorded no paths: its intents read back with both empty, the rest as written."""
    intents = [r.data.intent for r in read_records(GOLDEN / "v1" / "scenarios.jsonl") if isinstance(r.data, IntentRecorded)]
    current = [r.data.intent for r in read_records(GOLDEN / "scenarios.jsonl") if isinstance(r.data, IntentRecorded)]
    assert len(intents) > 10 and len(current) > len(intents)  # scenarios were added since, at the end
    assert {(i.source_path, i.target_path) for i in intents} == {("", "")}
    same = [replace(i, env_fingerprint="") for i in current[: len(intents)]]
    assert [replace(i, env_fingerprint="") for i in intents] == same


GOLDEN = Path(__file__).parents[1] / "golden" / "logs"


@pytest.mark.parametrize("name", ["scenarios.jsonl", "demo.jsonl", "v1/scenarios.jsonl"])
def test_the_golden_v1_logs_read_the_same_through_a_v2_reader(name: str) -> None:
    """Every record of a golden v1 log reads through the test's v2 schema as through v1; only source_hashed takes its v2 shape."""
    old = list(read_records(GOLDEN / name))
    new = list(read_records(GOLDEN / name, schema=schema_v2()))
    assert len(new) == len(old) > 1
    for before, after in zip(old, new, strict=True):
        assert envelope(after) == envelope(before)
        if isinstance(before.data, SourceHashed):
            data = before.data
            assert after.data == SourceHashedV2(digest=data.digest, size_bytes=data.size, algorithm="blake3", at_ns=data.at_ns)
        else:
            assert after.data == before.data


def envelope(record: Record) -> tuple[object, ...]:
    return (record.v, record.seq, record.stream, record.sv, record.id, record.ts, record.prev, record.h)


def test_a_newer_record_is_unsupported_for_the_older_reader(v1_log: Path) -> None:
    """The same v2 record a v2 reader decodes stops the shipped v1 reader with schema_unsupported at its line."""
    edit_line(v1_log, 3, lambda obj: obj.update(v=NOW + 1, data={"digest": DIGEST, "size_bytes": 7, "algorithm": "sha256", "at_ns": 0}))
    records, problem = problem_of(v1_log)
    assert records == 2 and problem is not None
    assert (problem.kind, problem.line, problem.seq, problem.field) == ("schema_unsupported", 3, 3, "$.v")
    assert f"v{NOW + 1} is newer than this asup reads (v{NOW}): written by a newer asup? upgrade asup" in problem.message


def test_an_upcaster_that_fails_on_a_record_names_the_step(v1_log: Path) -> None:
    """A v1 record its upcaster cannot lift (the field it renames is missing) is undecodable at its line, naming the step."""
    edit_line(v1_log, 3, lambda obj: obj["data"].pop("size"))
    _, problem = problem_of(v1_log, schema_v2())
    assert problem is not None and (problem.kind, problem.line, problem.reason) == ("corrupt", 3, "undecodable")
    assert f"v{NOW} source_hashed record does not lift to v{NOW + 1}" in problem.message


def test_a_schema_refuses_upcasters_it_cannot_chain() -> None:
    """An upcaster from a step outside 1..version-1, or for a type the schema lacks, is refused when the schema is built."""
    with pytest.raises(ValueError, match="v2 cannot lead to v2"):
        Schema(2, REGISTRY, {2: {"source_hashed": size_renamed}})
    with pytest.raises(ValueError, match="no_such_type"):
        Schema(2, REGISTRY, {1: {"no_such_type": size_renamed}})


# --- schema_unsupported versus corrupt ----------------------------------------------------

UNSUPPORTED: dict[str, tuple[Any, str, str]] = {
    "extra data field": (lambda obj: obj["data"].update(surprise=1), "$.data.surprise", "unknown field `surprise`"),
    "extra envelope field": (lambda obj: obj.update(surprise=1), "$.surprise", "unknown field `surprise`"),
    "newer v": (lambda obj: obj.update(v=SCHEMA_VERSION + 1), "$.v", "newer than this asup reads"),
    "unknown type": (lambda obj: obj.update(type="no_such_event"), "$.type", "unknown event type"),
    "unknown reason code": (lambda obj: obj["data"].update(reason_code="brand_new_reason"), "$.data.reason_code", "'brand_new_reason'"),
    "unknown state": (lambda obj: obj["data"].update(to_state="brand_new_state"), "$.data.to_state", "'brand_new_state'"),
    "unknown trigger": (lambda obj: obj["data"].update(trigger="brand_new_trigger"), "$.data.trigger", "'brand_new_trigger'"),
}


@pytest.mark.parametrize("case", list(UNSUPPORTED))
def test_what_a_newer_asup_may_write_is_schema_unsupported(v1_log: Path, case: str) -> None:
    """A digest-valid transition with a newer v, type, code or field is schema_unsupported at its line, seq and field: upgrade."""
    edit, field, said = UNSUPPORTED[case]
    edit_line(v1_log, 2, edit)
    records, problem = problem_of(v1_log)
    assert records == 1 and problem is not None
    assert (problem.kind, problem.reason) == ("schema_unsupported", "schema_unsupported")
    assert (problem.line, problem.seq, problem.field) == (2, 2, field)
    assert said in problem.message and problem.message.endswith("written by a newer asup? upgrade asup")
    with pytest.raises(AsupError) as raised:
        list(read_records(v1_log))
    assert raised.value.code is ErrorCode.SCHEMA_UNSUPPORTED
    assert raised.value.one_line().startswith(f"{v1_log}:2: schema_unsupported: ")
    assert f"(seq 2) [field {field}]" in raised.value.one_line()


DAMAGED: dict[str, tuple[Any, str]] = {
    "missing field": (lambda obj: obj["data"].pop("attempt"), "$.data.attempt"),
    "wrong type": (lambda obj: obj["data"].update(attempt="one"), "$.data.attempt"),
    "v not a number": (lambda obj: obj.update(v="1"), "$.v"),
}


@pytest.mark.parametrize("case", list(DAMAGED))
def test_a_digest_valid_record_no_asup_writes_is_corrupt(v1_log: Path, case: str) -> None:
    """A digest-valid record missing a field or holding a wrong type is corrupt (undecodable), not schema_unsupported."""
    edit, field = DAMAGED[case]
    edit_line(v1_log, 2, edit)
    _, problem = problem_of(v1_log)
    assert problem is not None and (problem.kind, problem.line, problem.reason, problem.field) == ("corrupt", 2, "undecodable", field)
    assert problem.error(str(v1_log)).code is ErrorCode.CORRUPT_RECORD


def test_a_bit_flip_in_a_newer_record_is_still_corrupt(v1_log: Path) -> None:
    """A record with an unknown field whose digest no longer verifies (one bit flipped) is corrupt, not schema_unsupported."""
    edit_line(v1_log, 2, lambda obj: obj["data"].update(surprise=1))
    lines = v1_log.read_bytes().splitlines(keepends=True)
    assert refusal(lines[1]).reason == "schema_unsupported"
    flipped = bytearray(lines[1])
    flipped[flipped.index(b"surprise")] ^= 0x01
    lines[1] = bytes(flipped)
    v1_log.write_bytes(b"".join(lines))
    _, problem = problem_of(v1_log)
    assert problem is not None and (problem.kind, problem.line, problem.reason) == ("corrupt", 2, "digest_mismatch")
    assert problem.error(str(v1_log)).code is ErrorCode.CORRUPT_RECORD


def test_a_writer_refuses_to_open_a_log_holding_a_newer_record(v1_log: Path) -> None:
    """Opening for append a log whose last record has an unknown field refuses with schema_unsupported and leaves the bytes alone."""
    edit_line(v1_log, 5, lambda obj: obj["data"].update(surprise=1))
    before = v1_log.read_bytes()
    with pytest.raises(AsupError) as raised:
        JsonlLog.open(v1_log, clock=StepClock())
    assert raised.value.code is ErrorCode.SCHEMA_UNSUPPORTED and raised.value.line == 5
    assert v1_log.read_bytes() == before


def test_record_classes_of_a_test_schema_are_its_own() -> None:
    """A schema built for a test has its own record classes: the shipped decoder still reads source_hashed as v1."""
    v2 = schema_v2()
    assert v2.record_classes["source_hashed"] is not SCHEMA.record_classes["source_hashed"]
    assert issubclass(v2.record_classes["transition"], Record)
    assert SCHEMA.payloads["source_hashed"] is SourceHashed
