"""The read models of a transfer log: transfers, audit trail with reason-code summary,
metrics, replay traces (`asup trace`), `asup status` (with `--until` time travel) and the
contract violations a crafted log shows. Expectations are computed from the raw records
(or JSON lines), not from the projections under test."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
import pytest

from engine.contracts import default_matrix, load_profile
from engine.negotiation import negotiate
from engine.scenarios import SCENARIOS
from events.observations import ChunkWritten, IntentRecorded, Observation, TargetHashed
from events.payloads import Transition
from events.record import Record
from events.vocabulary import TERMINAL_STATES, ReasonCode, State, Trigger
from projections.audit import Audit, AuditState
from projections.causes import Causes
from projections.fold import fold_log
from projections.metrics import Metrics
from projections.transfers import Transfers, TransfersState
from projections.violations import Violations, ViolationsState
from tests.projections.helpers import canonical, copy_log, crafted_violations_log, intent, invoke, lines, payload, records, step, write_log

SECTION = {
    "unsupported_capability": "A",
    "capability_mismatch": "A",
    "integrity_precheck_failed": "B",
    "retry_exhausted": "C",
    "conflict_detected": "C",
    "resume_seed_mismatch": "C",
    "resume_transfer_mismatch": "C",
    "resume_cursor_ahead": "C",
    "invalid_transition": "C",
    "io_failed": "D",
}
LEVEL = {
    "unsupported_capability": "P0",
    "capability_mismatch": "P0",
    "integrity_precheck_failed": "P1",
    "conflict_detected": "P1",
    "invalid_transition": "P1",
    "resume_cursor_ahead": "P1",
    "retry_exhausted": "P2",
    "resume_seed_mismatch": "P2",
    "resume_transfer_mismatch": "P2",
    "io_failed": "P1",
}


def by_stream(recs: list[Record]) -> dict[str, list[Record]]:
    streams: dict[str, list[Record]] = {}
    for record in recs:
        streams.setdefault(record.stream, []).append(record)
    return streams


def fold_one(log: Path, projection: Any) -> Any:
    result = fold_log(log, [projection])
    assert result.problem is None
    return result.states[projection.name]


# --- transfers ----------------------------------------------------------------------------


def test_transfers_follow_each_streams_records(all_scenarios_log: Path) -> None:
    """Per transfer: state, attempt and cursor of its last transition, last reason, sessions, size, verified digest, seq span."""
    state: TransfersState = fold_one(all_scenarios_log, Transfers())
    streams = {s: rs for s, rs in by_stream(records(all_scenarios_log)).items() if s != "$log"}
    assert set(state.transfers) == set(streams)
    for stream, recs in streams.items():
        view = state.transfers[stream]
        transitions = [r.data for r in recs if isinstance(r.data, Transition)]
        intents = [r.data for r in recs if isinstance(r.data, IntentRecorded)]
        hashed = [r.data.digest for r in recs if isinstance(r.data, TargetHashed)]
        reasons = [t.reason_code.value for t in transitions if t.reason_code is not None]
        assert view.state == transitions[-1].to_state.value, stream
        assert (view.attempt, view.committed_cursor) == (transitions[-1].attempt, transitions[-1].committed_cursor), stream
        assert view.reason_code == (reasons[-1] if reasons else None), stream
        assert view.sessions == len(intents), stream
        last_intent = intents[-1].intent
        assert (view.size, view.expected_checksum, view.mode) == (last_intent.size, last_intent.expected_checksum, last_intent.mode.value)
        assert view.verified_digest == (hashed[-1] if hashed else None), stream
        assert (view.first_seq, view.last_seq, view.events, view.transitions) == (recs[0].seq, recs[-1].seq, len(recs), len(transitions))


def test_transfers_pin_scenario_outcomes(all_scenarios_log: Path) -> None:
    """Every scenario's transfer ends in its expected state and reason; cursors and attempts are the known ones."""
    views = fold_one(all_scenarios_log, Transfers()).transfers
    for scenario in SCENARIOS:
        transfer = "t-another-transfer" if scenario.name == "resume_transfer_mismatch" else f"{scenario.name}-7"
        view = views[transfer]
        assert view.state == scenario.expect_state.value, transfer
        assert view.reason_code == (scenario.expect_reason.value if scenario.expect_reason else None), transfer
    success = views["success-7"]
    assert (success.committed_cursor, success.attempt, success.verified_digest) == (success.size, 0, success.expected_checksum)
    assert (views["retry_exhausted-7"].attempt, views["retry_exhausted-7"].committed_cursor) == (3, 65536)
    assert (views["interruption_resume-7"].sessions, views["interruption_resume-7"].attempt) == (2, 1)
    assert views["resume_transfer_mismatch-7"].state == "syncing"  # its first session crashed; the resume used another id
    assert views["capability_mismatch-7"].committed_cursor == 0


# --- audit ---------------------------------------------------------------------------------


def test_audit_lists_every_fail_closed_transition_with_its_evidence(all_scenarios_log: Path) -> None:
    """Each failed_closed transition appears once, in log order, citing the stream's last observation before it (seq, type, digest)."""
    state: AuditState = fold_one(all_scenarios_log, Audit())
    expected = []
    last: dict[str, Record] = {}
    for record in records(all_scenarios_log):
        data = record.data
        if isinstance(data, Transition):
            if data.to_state is State.FAILED_CLOSED:
                cause = last[record.stream]
                assert isinstance(cause.data, Observation)
                expected.append(
                    (
                        record.seq,
                        data.transfer_id,
                        data.from_state.value,
                        data.trigger.value,
                        data.reason_code,
                        cause.seq,
                        cause.type,
                        cause.h,
                    )
                )
        else:
            last[record.stream] = record
    got = [
        (e.seq, e.transfer_id, e.from_state, e.trigger, e.reason_code, e.evidence_seq, e.evidence_type, e.evidence_digest)
        for e in state.entries
    ]
    assert got == expected
    assert len(got) == 13


def test_audit_reason_code_summary_has_section_and_level(all_scenarios_log: Path) -> None:
    """The reason-code summary counts each code, names its transfers, runbook section (A/B/C) and escalation level."""
    rendered = Audit().render(fold_one(all_scenarios_log, Audit()))
    summary = rendered["reason_codes"]
    counts = Counter(
        r.data.reason_code.value
        for r in records(all_scenarios_log)
        if isinstance(r.data, Transition) and r.data.to_state is State.FAILED_CLOSED and r.data.reason_code
    )
    assert {code: row["count"] for code, row in summary.items()} == dict(counts)
    assert set(summary) == {c.value for c in ReasonCode}  # the scenarios reach every code
    for code, row in summary.items():
        assert (row["section"], row["level"]) == (SECTION[code], LEVEL[code]), code
    assert sorted(summary["retry_exhausted"]["transfers"]) == ["retry_exhausted-7", "strict_interruption-7"]
    assert list(summary) == sorted(summary)


# --- metrics -------------------------------------------------------------------------------


def test_metrics_count_every_operation(all_scenarios_log: Path) -> None:
    """Each observation after a transfer's first is one sample of its type; each terminal transition one whole-transfer sample."""
    rendered = Metrics().render(fold_one(all_scenarios_log, Metrics()))["operations"]
    expected: Counter[str] = Counter()
    seen: set[str] = set()
    for record in records(all_scenarios_log):
        data = record.data
        if isinstance(data, Observation):
            if record.type != "intent_recorded" and record.stream in seen:
                expected[record.type] += 1
            seen.add(record.stream)
        elif isinstance(data, Transition) and data.to_state in TERMINAL_STATES:
            expected[f"transfer_{data.to_state.value}"] += 1
    assert {op: row["count"] for op, row in rendered.items()} == dict(expected)
    assert (rendered["transfer_completed"]["count"], rendered["transfer_failed_closed"]["count"]) == (3, 13)


def test_metrics_percentiles_from_at_ns_within_one_percent(tmp_path: Path) -> None:
    """Chunk gaps of 1, 2, 3 and 4 ms give p50 2.5, p95 3.85, p99 3.97 within 1 %, max 4 exactly; the duration is its own sample."""
    entries: list[tuple[str, Any]] = [("t-1", IntentRecorded(intent=intent("t-1"), at_ns=0))]
    at = 0
    for number, gap_ms in enumerate([3, 1, 4, 2]):
        at += gap_ms * 1_000_000
        entries.append(("t-1", ChunkWritten(chunk=number, offset=0, length=1, digest="d", committed=1, epoch="e", at_ns=at)))
    done = msgspec.structs.replace(step("t-1", State.VERIFYING_CHECKSUM, Trigger.CHECKSUM_VALIDATED, State.COMPLETED), duration_ms=10.0)
    entries.append(("t-1", done))
    log = write_log(tmp_path / "timed.jsonl", entries)
    operations = Metrics().render(fold_one(log, Metrics()))["operations"]
    chunks = operations["chunk_written"]
    assert (chunks["count"], chunks["max_ms"]) == (4, 4.0)
    for key, exact in (("p50_ms", 2.5), ("p95_ms", 3.85), ("p99_ms", 3.97)):
        assert chunks[key] == pytest.approx(exact, rel=0.01), key
        assert chunks[key] != exact  # a sketch's estimate, not the exact value: this test knows which it checks
    assert operations["transfer_completed"] == {"count": 1, "p50_ms": 10.0, "p95_ms": 10.0, "p99_ms": 10.0, "max_ms": 10.0}


# --- traces --------------------------------------------------------------------------------


def expected_trace(log: Path, transfer: str | None = None) -> bytes:
    """Trace rows built from the raw JSON lines: transfers in id order, each in log order."""
    rows: dict[str, list[bytes]] = {}
    for line in lines(log):
        raw = json.loads(line)
        if raw["stream"] == "$log" or transfer not in (None, raw["stream"]):
            continue
        row = {key: raw[key] for key in ("seq", "stream", "sv", "type", "data")}
        rows.setdefault(raw["stream"], []).append(canonical(row))
    return b"".join(line for stream in sorted(rows) for line in rows[stream])


def test_trace_command_writes_canonical_rows_per_transfer(all_scenarios_log: Path, tmp_path: Path) -> None:
    """`asup trace LOG -o F` writes one canonical row per record, grouped by transfer, each transfer in log order."""
    out = tmp_path / "out" / "trace.jsonl"
    result = invoke("trace", str(all_scenarios_log), "-o", str(out))
    assert result.exit_code == 0, result.output
    data = out.read_bytes()
    assert data == expected_trace(all_scenarios_log)
    rows = [json.loads(line) for line in data.splitlines()]
    assert len(rows) == len(records(all_scenarios_log)) - 1
    streams = [r["stream"] for r in rows]
    assert streams == sorted(streams)  # contiguous, in id order
    for stream in set(streams):
        seqs = [r["seq"] for r in rows if r["stream"] == stream]
        assert seqs == sorted(seqs)


def test_trace_of_one_transfer_and_twice_is_identical(all_scenarios_log: Path, tmp_path: Path) -> None:
    """`--transfer ID` keeps only that transfer's rows; tracing the same log twice gives the same bytes."""
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert invoke("trace", str(all_scenarios_log), "-o", str(first), "--transfer", "late_ack-7").exit_code == 0
    assert invoke("trace", str(all_scenarios_log), "-o", str(second), "--transfer", "late_ack-7").exit_code == 0
    assert first.read_bytes() == second.read_bytes() == expected_trace(all_scenarios_log, "late_ack-7")
    assert {json.loads(line)["stream"] for line in first.read_bytes().splitlines()} == {"late_ack-7"}


# --- asup status -----------------------------------------------------------------------------


def test_status_json_renders_the_projections(all_scenarios_log: Path) -> None:
    """`asup status LOG --json` exits 0 with every transfer, the audit, the metrics and the last seq."""
    result = invoke("status", str(all_scenarios_log), "--json")
    assert result.exit_code == 0, result.output
    document = payload(result)
    recs = records(all_scenarios_log)
    assert (document["last_seq"], document["problem"]) == (recs[-1].seq, None)
    expected = Transfers().render(fold_one(all_scenarios_log, Transfers()))
    causes = fold_one(all_scenarios_log, Causes()).causes
    for row in expected["transfers"]:  # the command adds each row's liveness (the scenarios record no target path) and cause
        row["cause"] = causes.get(row["transfer_id"]) if row["state"] == "failed_closed" else None
        row["liveness"] = None if row["state"] in ("completed", "failed_closed") else "unknown"
    assert document["transfers"] == expected
    assert document["transfers"]["by_state"] == {"completed": 3, "failed_closed": 13, "syncing": 1}
    assert len(document["audit"]["fail_closed"]) == 13
    assert document["metrics"]["operations"]["chunk_written"]["count"] > 0


def test_status_human_output_names_transfers_and_reason_codes(all_scenarios_log: Path) -> None:
    """The rich tables name each transfer, its state and the reason codes with section and level."""
    result = invoke("status", str(all_scenarios_log))
    assert result.exit_code == 0, result.output
    for name in ("success-7", "late_ack-7", "t-another-transfer", "integrity_precheck_failed", "resume_cursor_ahead"):
        assert name in result.stdout


def test_status_until_shows_earlier_state(all_scenarios_log: Path) -> None:
    """`--until SEQ` is time travel: a transfer that completes later shows the state it had at SEQ; later transfers are absent."""
    recs = records(all_scenarios_log)
    done = next(r for r in recs if r.stream == "success-7" and isinstance(r.data, Transition) and r.data.to_state is State.COMPLETED)
    before = [r for r in recs if r.stream == "success-7" and isinstance(r.data, Transition) and r.seq < done.seq][-1]
    assert isinstance(before.data, Transition)
    document = payload(invoke("status", str(all_scenarios_log), "--json", "--until", str(done.seq - 1)))
    views = {t["transfer_id"]: t for t in document["transfers"]["transfers"]}
    assert document["last_seq"] == done.seq - 1
    assert views["success-7"]["state"] == before.data.to_state.value == "verifying_checksum"
    assert set(views) == {r.stream for r in recs if r.seq < done.seq and r.stream != "$log"}
    later = payload(invoke("status", str(all_scenarios_log), "--json", "--until", str(done.seq)))
    assert {t["transfer_id"]: t["state"] for t in later["transfers"]["transfers"]}["success-7"] == "completed"


def test_status_of_a_corrupt_log_reports_the_problem(all_scenarios_log: Path, tmp_path: Path) -> None:
    """A log with a flipped byte mid-file: status renders what precedes it, names the line and exits 1."""
    log = copy_log(all_scenarios_log, tmp_path / "bad.jsonl")
    data = bytearray(log.read_bytes())
    offset = sum(len(line) for line in lines(all_scenarios_log)[:99]) + 40  # inside line 100
    data[offset] ^= 0x01
    log.write_bytes(bytes(data))
    result = invoke("status", str(log), "--json")
    assert result.exit_code == 1
    document = payload(result)
    assert document["last_seq"] == 99
    assert ":100" in document["problem"]


# --- violations ------------------------------------------------------------------------------


def test_violations_found_in_a_crafted_log(tmp_path: Path) -> None:
    """A transition out of a terminal state and an 'accepted' negotiation the matrix forbids are both found, and nothing else."""
    log = crafted_violations_log(tmp_path / "violations.jsonl")
    state: ViolationsState = fold_one(log, Violations())
    seqs = {(r.stream, r.type, getattr(r.data, "trigger", None)): r.seq for r in records(log)}
    exit_seq = seqs[("t-exit", "transition", Trigger.CHUNK_COMMITTED)]
    assert state.terminal_exits == [{"seq": exit_seq, "transfer_id": "t-exit", "from_state": "failed_closed", "to_state": "syncing"}]
    assert [(a["seq"], a["transfer_id"]) for a in state.forbidden_accepts] == [
        (seqs[("t-forbidden", "capability_negotiated", None)], "t-forbidden")
    ]
    assert "version" in state.forbidden_accepts[0]["detail"]


def test_scenario_log_has_no_violations(all_scenarios_log: Path) -> None:
    """The real adapter's log breaks neither rule: no terminal exits, no forbidden accepts."""
    rendered = Violations().render(fold_one(all_scenarios_log, Violations()))
    assert rendered == {"terminal_exits": [], "forbidden_accepts": []}


@pytest.mark.parametrize("primitive", [0, 1, 2])
def test_accept_missing_a_required_primitive_is_forbidden(tmp_path: Path, primitive: int) -> None:
    """An 'accepted' negotiation whose request leaves out a primitive the class requires is a forbidden accept."""
    full = intent("t-missing")
    requested = [r for i, r in enumerate(full.requested) if i != primitive]
    recorded = negotiate(msgspec.structs.replace(full, requested=requested), default_matrix(), load_profile("full"))
    assert recorded.outcome == "unsupported_capability"
    log = write_log(
        tmp_path / "missing.jsonl",
        [("t-missing", IntentRecorded(intent=full)), ("t-missing", msgspec.structs.replace(recorded, outcome="accepted", detail=[]))],
    )
    state: ViolationsState = fold_one(log, Violations())
    assert [a["transfer_id"] for a in state.forbidden_accepts] == ["t-missing"]
    assert full.requested[primitive].id in state.forbidden_accepts[0]["detail"]
