"""The gates (`runbook/gates/`, `asup gate`): each passes on the shipped contracts with
checks executed, and each fails when its subject is broken — a matrix or profiles copy, a
transition-table copy, a fault-suite copy, an injected timer making the candidate slower or
giving too few samples. Time never comes from a real clock here. A report with no check is
a failure; `asup gate all` writes four reports and four gate events."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.contracts import MATRIX_FILE, PROFILES_FILE, STATE_MACHINE_FILE, contract_dir, load_matrix
from events.digest import digest_file
from events.vocabulary import ReasonCode
from projections.artifact_paths import ArtifactPaths
from runbook import evidence, readiness
from runbook.gates import capability, fault, performance, state_machine
from runbook.gates.report import GateReport, publish
from tests.projections.helpers import invoke, payload, records

Edit = Callable[[dict[str, Any]], None]
NEW_PRIMITIVE = "asupersync::replication::quorum_write"
BLAKE3 = "asupersync::checksum::verify_blake3"


def edited(tmp_path: Path, name: str, edit: Edit) -> Path:
    """A copy of the shipped contract `name` with `edit` applied to its JSON."""
    document = json.loads((contract_dir() / name).read_bytes())
    edit(document)
    path = tmp_path / name
    path.write_text(json.dumps(document))
    return path


def failed_names(report: GateReport) -> list[str]:
    return [c.name for c in report.failed]


def assert_passes(report: GateReport) -> None:
    assert report.checks, "a gate that executed no check cannot pass"
    assert report.failed == [], report.failed[:5]
    assert report.verdict == "pass"


# --- capability ----------------------------------------------------------------------------------


def test_capability_gate_passes_on_the_shipped_contracts() -> None:
    """The capability gate passes on the shipped matrix and profiles, checking every class, mode, primitive and profile."""
    report = capability.run()
    assert_passes(report)
    names = {c.name for c in report.checks}
    matrix = load_matrix()
    declared = {p.id for e in matrix.capability_matrix for p in e.asupersync_primitives}
    assert {f"negotiable/{p}" for p in declared} <= names
    for entry in matrix.capability_matrix:
        for mode in ("strict", "hardened"):
            assert f"{entry.operation_id}/{mode}/fail_closed" in names
            assert {f"{entry.operation_id}/{mode}/{p}" for p in capability.PROFILES} <= names
    assert "unknown_class_unsupported" in names


def test_capability_gate_fails_on_a_class_without_blake3(tmp_path: Path) -> None:
    """A matrix copy whose class lacks verify_blake3 fails the gate, naming the class."""

    def drop_blake3(doc: dict[str, Any]) -> None:
        entry = doc["capability_matrix"][1]
        entry["asupersync_primitives"] = [p for p in entry["asupersync_primitives"] if p["id"] != BLAKE3]

    report = capability.run(matrix_path=edited(tmp_path, MATRIX_FILE, drop_blake3))
    assert report.verdict == "fail"
    assert failed_names(report) == ["contracts_validate"]
    assert "benchmark_baseline_bundle does not require BLAKE3" in report.failed[0].detail


def test_capability_gate_fails_on_a_primitive_no_profile_offers(tmp_path: Path) -> None:
    """A matrix copy declaring a primitive no adapter profile offers fails the gate on that primitive, by name."""

    def add_primitive(doc: dict[str, Any]) -> None:
        doc["capability_matrix"][0]["asupersync_primitives"].append({"id": NEW_PRIMITIVE, "version": 1, "params": {}})

    report = capability.run(matrix_path=edited(tmp_path, MATRIX_FILE, add_primitive))
    assert report.verdict == "fail"
    assert f"negotiable/{NEW_PRIMITIVE}" in failed_names(report)
    assert next(c for c in report.failed if c.name == f"negotiable/{NEW_PRIMITIVE}").detail == "offered by []"
    passing = {c.name for c in report.checks if c.passed}
    assert f"negotiable/{BLAKE3}" in passing


def test_capability_gate_fails_when_the_full_profile_drops_a_primitive(tmp_path: Path) -> None:
    """A profiles copy whose `full` adapter no longer offers resume_transfer fails the negotiation cases of the classes that need it."""

    def drop_resume(doc: dict[str, Any]) -> None:
        full = next(p for p in doc["profiles"] if p["name"] == "full")
        del full["primitives"]["asupersync::remote::resume_transfer"]

    report = capability.run(profiles_path=edited(tmp_path, PROFILES_FILE, drop_resume))
    assert report.verdict == "fail"
    failed = failed_names(report)
    assert "ASUP-CAP-001/strict/full" in failed and "ASUP-CAP-001/hardened/full" in failed
    assert all(name.endswith("/full") for name in failed)
    assert "expected accepted, got unsupported_capability" in report.failed[0].detail


# --- state machine -------------------------------------------------------------------------------


def test_state_machine_gate_passes_with_live_runs_reaching_every_reason_code() -> None:
    """The state-machine gate passes on the shipped table, with the Machine/lever equivalence and every reason code reached live."""
    report = state_machine.run()
    assert_passes(report)
    names = {c.name for c in report.checks}
    assert {"table_validates", "machine/rows_equal_table", "machine/no_auto_transitions"} <= names
    assert {f"live/{code}/reached" for code in ReasonCode} <= names
    assert report.measurements["equivalence_cases"] > 0


def test_state_machine_gate_fails_on_a_terminal_state_with_an_exit(tmp_path: Path) -> None:
    """A table copy giving `completed` an exit fails table_validates, naming the terminal state."""

    def exit_from_completed(doc: dict[str, Any]) -> None:
        row = {"from_state": "completed", "event": "start", "to_state": "capability_check", "reason_code": None, "notes": "broken"}
        doc["state_machine"]["transition_table"].append(row)

    report = state_machine.run(edited(tmp_path, STATE_MACHINE_FILE, exit_from_completed), live=False)
    assert report.verdict == "fail"
    assert failed_names(report) == ["table_validates"]
    assert "terminal state completed has an exit" in report.failed[0].detail


def test_state_machine_gate_fails_on_a_failed_closed_row_without_reason(tmp_path: Path) -> None:
    """A table copy with a failed_closed row lacking its reason code fails table_validates, naming the row."""

    def no_reason(doc: dict[str, Any]) -> None:
        row = next(r for r in doc["state_machine"]["transition_table"] if r["reason_code"] == "retry_exhausted")
        row["reason_code"] = None

    report = state_machine.run(edited(tmp_path, STATE_MACHINE_FILE, no_reason), live=False)
    assert report.verdict == "fail"
    assert failed_names(report) == ["table_validates"]
    assert "reason code" in report.failed[0].detail and "transition_table[" in report.failed[0].detail


def test_state_machine_gate_fails_when_a_reason_code_has_no_row(tmp_path: Path) -> None:
    """A table copy without the retry-budget row loads, but the gate fails: retry_exhausted is in no row and no live run reaches it."""

    def drop_retry_row(doc: dict[str, Any]) -> None:
        table = doc["state_machine"]["transition_table"]
        doc["state_machine"]["transition_table"] = [r for r in table if r["reason_code"] != "retry_exhausted"]

    report = state_machine.run(edited(tmp_path, STATE_MACHINE_FILE, drop_retry_row))
    assert report.verdict == "fail"
    assert set(failed_names(report)) == {"reason/retry_exhausted/in_table", "live/retry_exhausted/reached"}


# --- fault -----------------------------------------------------------------------------------------


def suite() -> dict[str, Any]:
    document: dict[str, Any] = json.loads((contract_dir() / fault.SUITE_FILE).read_bytes())
    return document


def fault_checks(report: GateReport) -> list[str]:
    ids = {f["fault_id"] for f in suite()["fault_classes"]}
    return [c.name for c in report.checks if c.name.split("/")[0] in ids]


def test_fault_gate_passes_on_the_shipped_suite() -> None:
    """The fault gate passes on the shipped suite: every fault class checked for state and reason, and determinism per seed."""
    report = fault.run(seeds=2)
    assert_passes(report)
    names = {c.name for c in report.checks}
    for f in suite()["fault_classes"]:
        fid = f["fault_id"]
        assert {f"{fid}/terminal_state", f"{fid}/reason_code", f"{fid}/deterministic/seed-1", f"{fid}/deterministic/seed-2"} <= names


@pytest.mark.parametrize(
    ("field", "wrong", "checks"),
    [
        ("expected_reason_code", "capability_mismatch", ["reason_code"]),
        ("expected_terminal_state", "completed", ["terminal_state", "artifact_present"]),  # a completed transfer leaves its artifact
    ],
)
def test_fault_gate_fails_on_a_wrong_expectation(tmp_path: Path, field: str, wrong: str, checks: list[str]) -> None:
    """A suite copy expecting the wrong outcome for one fault fails the gate on that fault id only."""

    def expect_wrong(doc: dict[str, Any]) -> None:
        doc["fault_classes"][1][field] = wrong

    target = suite()["fault_classes"][1]["fault_id"]
    report = fault.run(edited(tmp_path, fault.SUITE_FILE, expect_wrong), seeds=1)
    assert report.verdict == "fail"
    assert failed_names(report) == [f"{target}/{check}" for check in checks]
    assert report.failed[0].detail.startswith(f"expected {wrong}, got ")


def test_fault_gate_with_no_fault_classes_fails(tmp_path: Path) -> None:
    """A suite with no fault classes executes no fault check, so the gate fails."""

    def no_faults(doc: dict[str, Any]) -> None:
        doc["fault_classes"] = []

    report = fault.run(edited(tmp_path, fault.SUITE_FILE, no_faults))
    assert fault_checks(report) == []
    assert report.verdict == "fail", [c.name for c in report.checks]


def test_fault_gate_with_no_determinism_seeds_fails_instead_of_crashing(tmp_path: Path) -> None:
    """A suite with no determinism seeds is a failed gate (a check says why), not an exception."""

    def no_seeds(doc: dict[str, Any]) -> None:
        doc["determinism_seeds"] = []

    report = fault.run(edited(tmp_path, fault.SUITE_FILE, no_seeds))
    assert report.verdict == "fail"


# --- performance (an injected timer: never a real clock) -------------------------------------------


def timer(candidate_factor: float, *, base_ms: float = 10.0, spikes: dict[int, float] | None = None) -> performance.Measure:
    """A measure that runs the real transfer and reports a fixed time: baseline `base_ms`, candidate x `candidate_factor`;
    `spikes` maps a baseline call number to its reported time."""
    calls = {"baseline": 0, "candidate": 0}

    def measure(variant: str, work: Callable[[], None]) -> float:
        work()
        calls[variant] += 1
        if variant == "baseline" and spikes and calls[variant] in spikes:
            return spikes[calls[variant]]
        return base_ms * (candidate_factor if variant == "candidate" else 1.0)

    return measure


def run_perf(measure: performance.Measure, pairs: int = 14) -> GateReport:
    """The real performance gate on a small artifact with 2 warm-up pairs."""
    return performance.run(pairs=pairs, warmup=2, size=16 * 1024, measure=measure)


def test_performance_gate_passes_when_candidate_equals_baseline() -> None:
    """Equal injected timings pass, with the paired latency ratio 1.0 and every statistic reported."""
    report = run_perf(timer(1.0))
    assert_passes(report)
    latency = report.measurements["latency_ms"]
    assert latency["paired_ratio_median"] == 1.0
    assert latency["threshold"] == pytest.approx(1.05)
    assert latency["baseline"]["samples"] == latency["candidate"]["samples"] == 12
    assert latency["baseline"]["p50"] == latency["candidate"]["p50"] == 10.0
    assert latency["baseline"]["p99"] is None and "100 samples" in latency["baseline"]["p99_note"]
    assert report.measurements["pairs"] == 12
    assert "peak_memory_kib" in report.measurements


def test_performance_gate_fails_on_a_ten_percent_slower_candidate() -> None:
    """A candidate made 10 % slower by the injected timer fails on the latency median paired ratio."""
    report = run_perf(timer(1.10))
    assert report.verdict == "fail"
    assert failed_names(report) == ["latency_ms/median_paired_ratio"]
    assert report.measurements["latency_ms"]["paired_ratio_median"] == pytest.approx(1.10)
    assert "1.1000" in report.failed[0].detail


def test_performance_gate_leaves_outliers_out_of_the_percentiles_not_the_pairs() -> None:
    """One huge baseline sample is reported as an excluded outlier; the median paired ratio is unmoved and the gate passes."""
    report = run_perf(timer(1.0, spikes={7: 10_000.0}))
    assert_passes(report)
    baseline = report.measurements["latency_ms"]["baseline"]
    assert baseline["outliers_excluded"] == 1
    assert "MAD" in baseline["outlier_policy"]
    assert baseline["p95"] == 10.0
    assert report.measurements["latency_ms"]["paired_ratio_median"] == 1.0


@pytest.mark.parametrize("pairs", [7, 2], ids=["five-pairs-after-warmup", "none-after-warmup"])
def test_performance_gate_fails_on_too_few_samples(pairs: int) -> None:
    """Fewer than 10 pairs in the stable window fail the gate, whatever the timings say."""
    report = run_perf(timer(1.0), pairs)
    assert report.verdict == "fail"
    assert "stable_window_has_samples" in failed_names(report)


# --- the report itself ---------------------------------------------------------------------------


def test_a_report_with_no_checks_fails_and_is_published_as_failed(tmp_path: Path) -> None:
    """A gate report with zero checks executed has verdict fail; published, its file and gate event say fail with 0 checks."""
    report = GateReport("capability")
    assert report.verdict == "fail"
    assert report.document()["checks_executed"] == 0 and report.document()["verdict"] == "fail"
    paths = ArtifactPaths(tmp_path / "root")
    target, seq = publish(paths, report)
    assert json.loads(Path(target).read_bytes())["verdict"] == "fail"
    event = records(paths.ops_log)[seq - 1]
    assert event.type == "gate_finished"
    data = event.data
    assert getattr(data, "verdict") == "fail" and getattr(data, "checks") == 0  # noqa: B009
    gates = evidence.current_checklist(paths)[0]
    assert gates.id == "gates" and gates.status == "fail"


# --- the CLI ---------------------------------------------------------------------------------------


@pytest.fixture
def fast_performance(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The performance gate with a small deterministic run (injected timer), as `asup gate` calls it."""
    monkeypatch.setitem(readiness.GATES, "performance", functools.partial(run_perf, timer(1.0)))
    yield


@pytest.mark.usefixtures("fast_performance")
def test_gate_all_writes_four_reports_and_four_events(tmp_path: Path) -> None:
    """`asup gate all --root R --json` exits 0 with four passing reports under asupersync/v1/gates and four gate_finished events."""
    paths = ArtifactPaths(tmp_path / "root")
    result = invoke("gate", "all", "--root", str(paths.root), "--json")
    assert result.exit_code == 0, result.output
    gates = payload(result)["gates"]
    assert [g["gate"] for g in gates] == ["capability", "state_machine", "fault", "performance"]
    assert all(g["verdict"] == "pass" and g["checks_executed"] > 0 and g["checks_failed"] == 0 for g in gates)
    reports = sorted(paths.gates.glob("*.json"))
    assert len(reports) == 4
    events = [r for r in records(paths.ops_log) if r.type == "gate_finished"]
    assert len(events) == 4
    for gate, event in zip(gates, events, strict=True):
        data = event.data
        report_path = paths.root / getattr(data, "report")  # noqa: B009
        assert report_path == Path(gate["report"])
        document = json.loads(report_path.read_bytes())
        assert document["gate"] == gate["gate"] and document["verdict"] == "pass"
        assert document["checks_executed"] == gate["checks_executed"] == getattr(data, "checks")  # noqa: B009
        assert getattr(data, "report_digest") == digest_file(report_path)  # noqa: B009
    assert {i.id: i.status for i in evidence.current_checklist(paths)}["gates"] == "pass"


def test_gate_cli_prints_the_checks_executed_and_fails_a_broken_gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`asup gate capability` prints how many checks ran (exit 0); with a broken matrix it exits 1 and names the failed check."""
    root = str(tmp_path / "root")
    ok = invoke("gate", "capability", "--root", root)
    assert ok.exit_code == 0, ok.output
    assert "checks executed, 0 failed" in ok.output

    def drop_blake3(doc: dict[str, Any]) -> None:
        doc["capability_matrix"][0]["asupersync_primitives"] = doc["capability_matrix"][0]["asupersync_primitives"][:1]

    broken = edited(tmp_path, MATRIX_FILE, drop_blake3)
    monkeypatch.setitem(readiness.GATES, "capability", functools.partial(capability.run, matrix_path=broken))
    bad = invoke("gate", "capability", "--root", root)
    assert bad.exit_code == 1
    assert "contracts_validate" in bad.output and "1 checks executed, 1 failed" in bad.output


def test_unknown_gate_is_a_usage_error(tmp_path: Path) -> None:
    """`asup gate nope` exits 2 with one line naming the known gates, and writes nothing."""
    result = invoke("gate", "nope", "--root", str(tmp_path / "root"))
    assert result.exit_code == 2
    assert "unknown gate 'nope'" in result.output and "state-machine" in result.output
    assert not (tmp_path / "root").exists()
