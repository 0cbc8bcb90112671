"""The projection fold: one pass equals any split with msgspec checkpoints between the
pieces; `fold_log` with a checkpoint file folds only what a growing log added, and
ignores a checkpoint whose log was replaced or truncated or whose state was edited; the
same log renders byte-identical JSON; percentiles are exact (type 7)."""

from __future__ import annotations

import itertools
import json
import math
import statistics
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.clock import StepClock
from events.memory_log import MemoryLog
from events.observations import CapabilityNegotiated, IntentRecorded, PrimitiveRequest
from events.operations import DecodeProofRecorded, EvidenceSealed, GateFinished, ScrubFinished
from events.record import Record
from events.testing.marks import stamp_head
from events.vocabulary import NegotiationOutcome, ReasonCode, State, Trigger
from projections.audit import Audit
from projections.base import Projection, canonical_json, percentile
from projections.fold import fold_log, fold_records, render_all
from projections.metrics import Metrics
from projections.operations import Operations
from projections.traces import Traces
from projections.transfers import Transfers
from projections.violations import Violations
from tests.projections.helpers import intent, run_scenarios, step

DIGEST = "blake3:" + "0" * 64


def every_projection() -> list[Projection[Any]]:
    return [Transfers(), Audit(), Metrics(), Traces(), Violations(), Operations()]


class Mixed(msgspec.Struct):
    data: bytes  # the log's bytes (MemoryLog, StepClock)
    records: list[Record]


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Mixed:
    """Every scenario, then hand-made violations and operations events, in one MemoryLog."""
    log = MemoryLog("mixed", clock=StepClock())
    run_scenarios(log, tmp_path_factory.mktemp("mixed-work"))
    log.append("x-forbidden", [IntentRecorded(intent=intent("x-forbidden")), forbidden_negotiation()])
    log.append("x-exit", [step("x-exit", State.COMPLETED, Trigger.START, State.CAPABILITY_CHECK)])
    log.append("x-exit", [step("x-exit", State.FAILED_CLOSED, Trigger.START, State.SYNCING, ReasonCode.CONFLICT_DETECTED)])
    log.append("gates", [GateFinished(gate="fault", verdict="pass", checks=3, failed=0, report="r.json", report_digest=DIGEST)])
    log.append("evidence", [EvidenceSealed(pack="p.json", digest=DIGEST, size=10, artifacts=1)])
    log.append("durability", [ScrubFinished(pack="p.json", sidecar="p.ec.json", status="ok", sealed_digest=DIGEST, pack_digest=DIGEST)])
    proof = DecodeProofRecorded(
        sidecar="p.ec.json", output="o", ok=True, dropped=[1], digest=DIGEST, one_more_loss_failed_closed=True, proof_count=1
    )
    log.append("durability", [proof])
    return Mixed(bytes(log.data), list(log.read()))


def forbidden_negotiation() -> CapabilityNegotiated:
    """An 'accepted' negotiation that leaves out a primitive the class requires."""
    requested = intent("x-forbidden").requested[:1]
    offered: dict[str, PrimitiveRequest | None] = {r.id: r for r in requested}
    return CapabilityNegotiated(outcome=NegotiationOutcome.ACCEPTED, requested=requested, offered=offered, allowed={}, at_ns=5)


def one_pass(records: list[Record]) -> bytes:
    projections = every_projection()
    states = {p.name: p.initial() for p in projections}
    fold_records(projections, states, records)
    return rendered(projections, states)


def rendered(projections: list[Projection[Any]], states: dict[str, Any]) -> bytes:
    traces = next(p for p in projections if isinstance(p, Traces))
    return canonical_json(render_all(projections, states)) + b"".join(traces.lines(states["traces"]))


def fresh_fold(path: Path) -> bytes:
    projections = every_projection()
    return rendered(projections, fold_log(path, projections).states)


def line_ends(data: bytes) -> list[int]:
    """Byte offsets just past each newline: every prefix cut there is a valid log."""
    return [i + 1 for i, byte in enumerate(data) if byte == 0x0A]


# --- splits -------------------------------------------------------------------------------


@settings(max_examples=40)
@given(cuts=st.lists(st.integers(min_value=0, max_value=10**6), max_size=8))
def test_split_fold_with_msgspec_checkpoints_equals_one_pass(mixed: Mixed, cuts: list[int]) -> None:
    """Folding in random pieces, encoding every state with msgspec JSON between pieces, renders the same bytes as one pass."""
    records = mixed.records
    bounds = sorted({c % (len(records) + 1) for c in cuts} | {0, len(records)})
    projections = every_projection()
    states = {p.name: p.initial() for p in projections}
    for start, end in itertools.pairwise(bounds):
        fold_records(projections, states, records[start:end])
        states = {p.name: msgspec.json.decode(msgspec.json.encode(states[p.name]), type=p.state_type) for p in projections}
    assert rendered(projections, states) == one_pass(records)


def test_mixed_log_exercises_every_projection(mixed: Mixed) -> None:
    """The log the split property runs on is not trivial: each projection has something to render."""
    document = json.loads(canonical_json(render_all(every_projection(), fold_records_fresh(mixed.records))))
    assert document["transfers"]["count"] >= 16
    assert document["audit"]["fail_closed"]
    assert document["metrics"]["operations"]["chunk_written"]["count"] > 10
    assert document["violations"]["terminal_exits"] and document["violations"]["forbidden_accepts"]
    assert document["operations"]["gates"]["fault"]["seq"] > 0 and document["operations"]["proofs"]


def fold_records_fresh(records: list[Record]) -> dict[str, Any]:
    projections = every_projection()
    states = {p.name: p.initial() for p in projections}
    fold_records(projections, states, records)
    return states


# --- fold_log with a checkpoint file ---------------------------------------------------------


def written(log: Path, data: bytes) -> None:
    """`data` as the log, with the head record the asup writer that appended it leaves."""
    log.write_bytes(data)
    stamp_head(log)


def test_checkpoint_not_resumed_past_an_edit_a_writer_would_refuse(mixed: Mixed, tmp_path: Path) -> None:
    """A byte changed inside the folded prefix (the head record no longer vouches for the file) is
    not folded past: the fold starts again and reports the damage, as a writer would refuse it."""
    log, checkpoint = tmp_path / "log.jsonl", tmp_path / "ckpt.json"
    written(log, mixed.data)
    fold_log(log, every_projection(), checkpoint=checkpoint)
    data = bytearray(mixed.data)
    data[line_ends(mixed.data)[5] + 30] ^= 0x04  # inside record 7, which the checkpoint covers
    log.write_bytes(bytes(data))
    result = fold_log(log, every_projection(), checkpoint=checkpoint)
    assert result.resumed is False
    assert result.problem is not None and (result.problem.kind, result.problem.line) == ("corrupt", 7)


@settings(max_examples=25)
@given(cuts=st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=6))
def test_growing_log_folds_only_new_records(mixed: Mixed, cuts: list[int], tmp_path_factory: pytest.TempPathFactory) -> None:
    """Each fold_log call on a growing file folds exactly the records appended since the last; the end result equals a fresh fold."""
    where = tmp_path_factory.mktemp("grow")
    log, checkpoint = where / "log.jsonl", where / "fold.ckpt.json"
    ends = line_ends(mixed.data)
    sizes = sorted({ends[c % len(ends)] for c in cuts} | {len(mixed.data)})
    folded_before = 0
    projections = every_projection()
    for number, size in enumerate(sizes):
        written(log, mixed.data[:size])
        result = fold_log(log, projections, checkpoint=checkpoint)
        total = ends.index(size) + 1
        assert result.resumed is (number > 0)
        assert result.folded == total - folded_before
        assert result.seq == total
        folded_before = total
    assert rendered(projections, result.states) == fresh_fold(log)


def test_current_checkpoint_folds_nothing(mixed: Mixed, tmp_path: Path) -> None:
    """A second fold of an unchanged log resumes, folds zero records and renders the same bytes."""
    log, checkpoint = tmp_path / "log.jsonl", tmp_path / "ckpt.json"
    written(log, mixed.data)
    projections = every_projection()
    first = fold_log(log, projections, checkpoint=checkpoint)
    again = fold_log(log, projections, checkpoint=checkpoint)
    assert (first.resumed, first.folded) == (False, len(mixed.records))
    assert (again.resumed, again.folded, again.seq) == (True, 0, len(mixed.records))
    assert rendered(projections, again.states) == rendered(projections, first.states)


def test_replaced_log_ignores_checkpoint(mixed: Mixed, tmp_path: Path) -> None:
    """A checkpoint of another log at the same path is not trusted: the new log is folded from its first record."""
    log, checkpoint = tmp_path / "log.jsonl", tmp_path / "ckpt.json"
    half = line_ends(mixed.data)[30]
    written(log, mixed.data[:half])
    fold_log(log, every_projection(), checkpoint=checkpoint)
    other = MemoryLog("another", clock=StepClock())
    run_scenarios(other, tmp_path / "work", ["success", "retry_exhausted", "late_ack"], seed=3)
    assert len(other.data) > half
    written(log, bytes(other.data))
    projections = every_projection()
    result = fold_log(log, projections, checkpoint=checkpoint)
    assert result.resumed is False
    assert result.folded == len(list(other.read()))
    assert rendered(projections, result.states) == fresh_fold(log)


def test_truncated_log_ignores_checkpoint(mixed: Mixed, tmp_path: Path) -> None:
    """A log cut below the checkpoint's position is folded afresh, never from the stale state."""
    log, checkpoint = tmp_path / "log.jsonl", tmp_path / "ckpt.json"
    written(log, mixed.data)
    fold_log(log, every_projection(), checkpoint=checkpoint)
    ends = line_ends(mixed.data)
    written(log, mixed.data[: ends[len(ends) // 3]])
    projections = every_projection()
    result = fold_log(log, projections, checkpoint=checkpoint)
    assert (result.resumed, result.folded, result.seq) == (False, len(ends) // 3 + 1, len(ends) // 3 + 1)
    assert rendered(projections, result.states) == fresh_fold(log)


def _edit_state(document: dict[str, Any]) -> None:
    transfers = document["states"]["transfers"]["transfers"]
    for view in transfers.values():
        view["state"] = "completed"  # the digest still describes the original state


def _edit_digest(document: dict[str, Any]) -> None:
    document["state_digests"]["metrics"] = "blake3:" + "1" * 64


def _edit_heads(document: dict[str, Any]) -> None:
    document["heads"]["last_seq"] += 1


@pytest.mark.parametrize("edit", [_edit_state, _edit_digest, _edit_heads], ids=["state", "state_digest", "heads"])
def test_edited_checkpoint_is_ignored(mixed: Mixed, tmp_path: Path, edit: Any) -> None:
    """A checkpoint whose state, state digest or heads were edited by hand is ignored: the fold starts again and matches a fresh one."""
    log, checkpoint = tmp_path / "log.jsonl", tmp_path / "ckpt.json"
    ends = line_ends(mixed.data)
    written(log, mixed.data[: ends[len(ends) // 2]])
    fold_log(log, every_projection(), checkpoint=checkpoint)
    document = json.loads(checkpoint.read_bytes())
    edit(document)
    checkpoint.write_text(json.dumps(document))
    written(log, mixed.data)
    projections = every_projection()
    result = fold_log(log, projections, checkpoint=checkpoint)
    assert (result.resumed, result.folded) == (False, len(mixed.records))
    assert rendered(projections, result.states) == fresh_fold(log)


def test_unreadable_checkpoint_is_ignored(mixed: Mixed, tmp_path: Path) -> None:
    """Garbage in the checkpoint file means a fresh fold, not an error."""
    log, checkpoint = tmp_path / "log.jsonl", tmp_path / "ckpt.json"
    written(log, mixed.data)
    checkpoint.write_bytes(b"{not json")
    result = fold_log(log, every_projection(), checkpoint=checkpoint)
    assert (result.resumed, result.folded) == (False, len(mixed.records))
    assert fold_log(log, every_projection(), checkpoint=checkpoint).resumed is True


def test_same_log_renders_byte_identical_json(all_scenarios_log: Path) -> None:
    """Two folds of the same log, in separate fold_log calls, give byte-identical JSON."""
    assert fresh_fold(all_scenarios_log) == fresh_fold(all_scenarios_log)
    document = json.loads(fresh_fold(all_scenarios_log).split(b"\n", 1)[0])
    assert list(document) == sorted(document)


# --- percentiles ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "q", "expected"),
    [
        ([1.0, 2.0, 3.0, 4.0], 50, 2.5),
        ([1.0, 2.0, 3.0, 4.0], 95, 3.85),
        ([1.0, 2.0, 3.0, 4.0], 99, 3.97),
        ([1.0, 2.0, 3.0, 4.0], 0, 1.0),
        ([1.0, 2.0, 3.0, 4.0], 100, 4.0),
        ([10.0, 20.0], 50, 15.0),
        ([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0], 90, 9.1),
        ([7.5], 50, 7.5),
        ([7.5], 99, 7.5),
        ([], 50, 0.0),
        ([], 99, 0.0),
    ],
)
def test_percentile_known_values(values: list[float], q: float, expected: float) -> None:
    """percentile() is type 7 (rank q/100*(n-1), linear between closest ranks); empty gives 0.0, one element gives itself."""
    assert math.isclose(percentile(values, q), expected, rel_tol=1e-12, abs_tol=1e-12)


@given(st.lists(st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=2, max_size=50))
def test_percentile_matches_statistics_inclusive(values: list[float]) -> None:
    """For every integer q in 1..99 percentile() equals statistics.quantiles(method='inclusive'), which is type 7."""
    ordered = sorted(values)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    for q in range(1, 100):
        assert math.isclose(percentile(ordered, q), cuts[q - 1], rel_tol=1e-9, abs_tol=1e-6)


def test_checkpoint_with_a_state_of_the_wrong_shape_is_ignored(mixed: Mixed, tmp_path: Path) -> None:
    """A checkpoint whose digest-free parts still decode but whose state is not the projection's
    shape (edited by hand) means a fresh fold, not a traceback."""
    log, checkpoint = tmp_path / "log.jsonl", tmp_path / "ckpt.json"
    written(log, mixed.data)
    fold_log(log, every_projection(), checkpoint=checkpoint)
    document = json.loads(checkpoint.read_bytes())
    document["states"]["metrics"] = {"not": ["a", "metrics", "state"]}
    checkpoint.write_text(json.dumps(document))
    result = fold_log(log, every_projection(), checkpoint=checkpoint)
    assert (result.resumed, result.folded) == (False, len(mixed.records))
