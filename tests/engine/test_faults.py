"""Fault plans: parsing (`--fault`), loading (`--fault-file`), each fault kind's effect at
the store level, and determinism: the same seed and plan with an injected clock give a
byte-identical log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

from engine import checkpoint as ckpt
from engine.faults import KINDS, SLOW_MS, FaultPlan, FaultSpec, FaultyHandle, FaultyTarget, SimulatedCrash, load_plan, parse_plan
from engine.layout import Layout
from engine.stores import DirectoryStore, LateAck, TransportInterrupted
from events.clock import StepClock
from events.errors import AsupError, ErrorCode, ExitCode
from events.jsonl_log import JsonlLog
from events.observations import BundleFile
from events.vocabulary import FaultKind, State
from tests.engine.conftest import CHUNK, Stores, make_intent, run_transfer

# --- parse_plan ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("interruption@2,slow@0", [FaultSpec(FaultKind.INTERRUPTION, 2), FaultSpec(FaultKind.SLOW, 0)]),
        ("stale_metadata", [FaultSpec(FaultKind.STALE_METADATA, 0)]),
        (" partial_write@3 , epoch_drift@11 ", [FaultSpec(FaultKind.PARTIAL_WRITE, 3), FaultSpec(FaultKind.EPOCH_DRIFT, 11)]),
        ("interruption@1,interruption@1", [FaultSpec(FaultKind.INTERRUPTION, 1), FaultSpec(FaultKind.INTERRUPTION, 1)]),
        (",".join(f"{k}@{i}" for i, k in enumerate(KINDS)), [FaultSpec(k, i) for i, k in enumerate(KINDS)]),
    ],
)
def test_parse_plan_accepts_well_formed_plans(text: str, expected: list[FaultSpec]) -> None:
    """A well-formed `KIND[@CHUNK],...` plan parses to its faults in order (chunk 0 when omitted)."""
    plan = parse_plan(text)
    assert plan.faults == expected
    assert parse_plan(str(plan)) == plan


@pytest.mark.parametrize(
    ("text", "bad_part"),
    [
        ("interruption@1,bogus@2", "bogus@2"),
        ("Interruption@1", "Interruption@1"),
        ("slow@x", "slow@x"),
        ("slow@-1", "slow@-1"),
        ("slow@1.5", "slow@1.5"),
        ("slow@1@2", "slow@1@2"),
        ("slow@\u00b2", "slow@\u00b2"),  # a superscript two: str.isdigit() says yes, int() says no
        ("@2", "@2"),
        ("slow@", "slow@"),
    ],
)
def test_parse_plan_rejects_a_bad_kind_or_chunk_naming_the_part(text: str, bad_part: str) -> None:
    """A bad kind or chunk is a USAGE error whose message names the bad part."""
    with pytest.raises(AsupError) as caught:
        parse_plan(text)
    assert caught.value.code is ErrorCode.USAGE
    assert caught.value.exit_code is ExitCode.USAGE
    assert repr(bad_part) in caught.value.message


@pytest.mark.parametrize("text", ["slow@0,,interruption@1", ",slow@0"])
def test_parse_plan_rejects_empty_parts(text: str) -> None:
    """An empty part between commas is a USAGE error, not silently skipped."""
    with pytest.raises(AsupError) as caught:
        parse_plan(text)
    assert caught.value.code is ErrorCode.USAGE
    assert "empty" in caught.value.message


# --- load_plan ------------------------------------------------------------------------------


def test_load_plan_reads_a_json_plan(tmp_path: Path) -> None:
    """A JSON plan file loads to the same plan as its command-line spelling."""
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"faults": [{"kind": "interruption", "chunk": 2}, {"kind": "stale_metadata"}]}))
    assert load_plan(path) == parse_plan("interruption@2,stale_metadata")
    (tmp_path / "empty.json").write_text("{}")
    assert load_plan(tmp_path / "empty.json") == FaultPlan([])


@pytest.mark.parametrize(
    ("content", "field"),
    [
        ('{"faults": [{"kind": "interruption", "chunk": 2}', None),
        ("not json at all", None),
        ('{"faults": [{"kind": "slow", "chunk": "two"}]}', None),
        ('{"faults": [{"kind": "slow", "when": 2}]}', None),
        ('{"fault": []}', None),
        ('{"faults": [{"kind": "slow"}, {"kind": "bogus", "chunk": 1}]}', "$.faults[1]"),
        ('{"faults": [{"kind": "slow", "chunk": -3}]}', "$.faults[0]"),
    ],
)
def test_load_plan_rejects_a_malformed_file_naming_it(tmp_path: Path, content: str, field: str | None) -> None:
    """A malformed plan file is a USAGE error that names the file (and the bad entry where it can)."""
    path = tmp_path / "bad-plan.json"
    path.write_text(content)
    with pytest.raises(AsupError) as caught:
        load_plan(path)
    assert caught.value.code is ErrorCode.USAGE
    assert caught.value.file == str(path)
    assert str(path) in caught.value.one_line()
    if field is not None:
        assert caught.value.field == field


def test_load_plan_of_a_missing_file_names_it(tmp_path: Path) -> None:
    """A plan file that cannot be read is a USAGE error naming it."""
    path = tmp_path / "missing.json"
    with pytest.raises(AsupError) as caught:
        load_plan(path)
    assert caught.value.code is ErrorCode.USAGE and caught.value.file == str(path)


# --- each fault at the store level ------------------------------------------------------------

SIZE = 4 * CHUNK
DATA = bytes(range(256)) * (SIZE // 256)
LAYOUT = Layout([BundleFile("", SIZE, "blake3:unused")])
NAME = "artifact.out"


class Slept:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def chunk(index: int) -> bytes:
    return DATA[index * CHUNK : (index + 1) * CHUNK]


def store_with(tmp_path: Path, plan: str) -> tuple[DirectoryStore, FaultyTarget, FaultyHandle, Slept]:
    """The inner store, the faulty target around it, a handle of NAME through it, and its sleeps."""
    inner = DirectoryStore(tmp_path)
    slept = Slept()
    target = FaultyTarget(inner, parse_plan(plan), CHUNK, sleep=slept)
    return inner, target, target.open(NAME, LAYOUT, "file"), slept


def write_all(handle: FaultyHandle) -> list[tuple[int, str]]:
    return [handle.write(i * CHUNK, chunk(i)) for i in range(SIZE // CHUNK)]


def held(store: DirectoryStore) -> int:
    return store.open(NAME, LAYOUT, "file").held().size


def epoch(store: DirectoryStore) -> str:
    return store.open(NAME, LAYOUT, "file").epoch()


def test_no_fault_passes_everything_through(tmp_path: Path) -> None:
    """With an empty plan the faulty target writes exactly what it is given and fires nothing."""
    inner, target, handle, slept = store_with(tmp_path, "")
    results = write_all(handle)
    assert [committed for committed, _ in results] == [CHUNK, 2 * CHUNK, 3 * CHUNK, 4 * CHUNK]
    assert inner.temp_path(NAME).read_bytes() == DATA
    assert target.fired == [] and slept.calls == []


def test_interruption_commits_nothing_and_fires_once(tmp_path: Path) -> None:
    """interruption@N raises TransportInterrupted at chunk N with nothing written; the retry goes through."""
    inner, target, handle, _ = store_with(tmp_path, "interruption@1")
    handle.write(0, chunk(0))
    with pytest.raises(TransportInterrupted):
        handle.write(CHUNK, chunk(1))
    assert held(inner) == CHUNK
    assert handle.write(CHUNK, chunk(1))[0] == 2 * CHUNK
    assert target.fired == [FaultSpec(FaultKind.INTERRUPTION, 1)] and target.pending == []


def test_partial_write_leaves_the_committed_bytes_short(tmp_path: Path) -> None:
    """partial_write@N writes half of chunk N: the committed count falls behind the chunk's end."""
    inner, _, handle, _ = store_with(tmp_path, "partial_write@1")
    handle.write(0, chunk(0))
    committed, _ = handle.write(CHUNK, chunk(1))
    assert committed == CHUNK + CHUNK // 2
    assert inner.temp_path(NAME).read_bytes() == DATA[: CHUNK + CHUNK // 2]


def test_checksum_mismatch_flips_one_byte_of_the_chunk(tmp_path: Path) -> None:
    """checksum_mismatch@N lands chunk N whole but with its first byte flipped."""
    inner, _, handle, _ = store_with(tmp_path, "checksum_mismatch@2")
    committed = write_all(handle)[-1][0]
    assert committed == SIZE
    landed = inner.temp_path(NAME).read_bytes()
    diff = [i for i in range(SIZE) if landed[i] != DATA[i]]
    assert diff == [2 * CHUNK] and landed[2 * CHUNK] == DATA[2 * CHUNK] ^ 0xFF


def test_epoch_drift_moves_the_epoch_after_the_write(tmp_path: Path) -> None:
    """epoch_drift@N: right after chunk N the target's epoch is no longer the one the write reported."""
    inner, _, handle, _ = store_with(tmp_path, "epoch_drift@1")
    _, after_first = handle.write(0, chunk(0))
    assert epoch(inner) == after_first
    _, after_second = handle.write(CHUNK, chunk(1))
    assert epoch(inner) != after_second
    assert inner.temp_path(NAME).read_bytes() == DATA[: 2 * CHUNK]  # the bytes are not touched


def test_slow_sleeps_once_at_its_chunk(tmp_path: Path) -> None:
    """slow@N makes the write of chunk N (only) wait SLOW_MS."""
    _, target, handle, slept = store_with(tmp_path, "slow@2")
    write_all(handle)
    assert slept.calls == [SLOW_MS / 1000]
    assert target.fired == [FaultSpec(FaultKind.SLOW, 2)]


def test_late_ack_refuses_the_publish_leaving_the_final_name_alone(tmp_path: Path) -> None:
    """late_ack@N raises LateAck(N) at publish, before the rename; a second publish goes through."""
    inner, _, handle, _ = store_with(tmp_path, "late_ack@3")
    write_all(handle)
    with pytest.raises(LateAck) as caught:
        handle.publish()
    assert caught.value.chunk == 3
    assert not inner.path(NAME).exists() and inner.temp_path(NAME).is_file()
    handle.publish()
    assert inner.path(NAME).read_bytes() == DATA


def test_stale_metadata_bumps_the_seed_of_the_first_checkpoint_read(tmp_path: Path) -> None:
    """stale_metadata hands back the checkpoint with another seed, once; the file itself is untouched."""
    inner, target, handle, _ = store_with(tmp_path, "stale_metadata")
    state = ckpt.Checkpoint(transfer_id="t-1", seed=41, attempt=2, committed_cursor=CHUNK, stream_digest="blake3:x", artifact=NAME)
    path = handle.checkpoint(ckpt.encode(state))
    stale = ckpt.decode(target.load_checkpoint(path), path)
    assert stale == msgspec.structs.replace(state, seed=42)
    assert ckpt.decode(target.load_checkpoint(path), path) == state
    assert ckpt.decode(inner.load_checkpoint(path), path) == state


def test_crash_escapes_as_a_base_exception(tmp_path: Path) -> None:
    """crash@N raises SimulatedCrash (not an Exception) while writing chunk N, with nothing written."""
    inner, _, handle, _ = store_with(tmp_path, "crash@1")
    handle.write(0, chunk(0))
    with pytest.raises(SimulatedCrash):
        handle.write(CHUNK, chunk(1))
    assert not issubclass(SimulatedCrash, Exception)
    assert held(inner) == CHUNK


def test_a_fault_for_another_chunk_does_not_fire(tmp_path: Path) -> None:
    """A fault planned for a chunk the transfer never writes stays pending."""
    _, target, handle, _ = store_with(tmp_path, "interruption@9,partial_write@7")
    write_all(handle)
    assert target.fired == [] and len(target.pending) == 2


# --- determinism ----------------------------------------------------------------------------


def _first_difference(a: bytes, b: bytes) -> str:
    for number, (left, right) in enumerate(zip(a.splitlines(), b.splitlines(), strict=False), start=1):
        if left != right:
            x: dict[str, Any] = json.loads(left)["data"]
            y: dict[str, Any] = json.loads(right)["data"]
            fields = sorted(k for k in x.keys() | y.keys() if x.get(k) != y.get(k))
            return f"line {number}: data fields {fields} differ ({[x.get(k) for k in fields]} vs {[y.get(k) for k in fields]})"
    return f"lengths {len(a)} vs {len(b)}"


@pytest.mark.parametrize("faults", ["interruption@1,slow@2,interruption@4", "epoch_drift@2"])
def test_same_seed_and_plan_give_a_byte_identical_log(tmp_path: Path, faults: str) -> None:
    """Two runs with the same seed, plan and StepClock, each in a fresh directory, write byte-identical logs."""
    logs = []
    for run in ("first", "second"):
        stores = Stores(tmp_path / run)
        path = tmp_path / f"{run}.jsonl"
        with JsonlLog.open(path, log_id="determinism", clock=StepClock()) as log:
            result, _ = run_transfer(log, stores, make_intent(stores), faults=faults)
        assert result.state in (State.COMPLETED, State.FAILED_CLOSED)
        logs.append(path.read_bytes())
    first, second = logs
    assert json.loads(first.splitlines()[0])["data"]["log_id"] == json.loads(second.splitlines()[0])["data"]["log_id"] == "determinism"
    assert first == second, _first_difference(first, second)
