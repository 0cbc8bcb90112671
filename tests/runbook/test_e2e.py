"""The e2e script pack (`runbook.e2e.run_e2e`, `asup e2e run|validate`): every built-in
scenario run as baseline, replay and rerun, three rows each with checks executed, a
determinism report; `validate` accepts such a file and reports a missing pass, a row with
zero checks, a malformed row (file:line) and an empty file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest

import engine.scenarios
from engine.scenarios import SCENARIOS
from events.vocabulary import ReasonCode
from projections.artifact_paths import ArtifactPaths
from runbook import e2e
from tests.projections.helpers import invoke, payload

SEED = 7


class Pack(msgspec.Struct):
    paths: ArtifactPaths
    result: dict[str, Any]
    events: Path


@pytest.fixture(scope="module")
def pack(tmp_path_factory: pytest.TempPathFactory) -> Pack:
    """One e2e pack run in a temp root (read-only: copy the events file before editing it)."""
    paths = ArtifactPaths(tmp_path_factory.mktemp("e2e") / "artifacts")
    result = e2e.run_e2e(paths, seed=SEED)
    return Pack(paths, result, Path(result["events"]))


def rows_of(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_bytes().splitlines()]


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"".join(json.dumps(row).encode() + b"\n" for row in rows))
    return path


def test_run_e2e_passes_with_three_rows_per_scenario(pack: Pack) -> None:
    """run_e2e passes: baseline, replay and rerun rows per scenario, each passed with checks and the expected outcome."""
    result = pack.result
    assert result["passed"] is True and result["failed"] == 0
    assert result["rows"] == 3 * len(SCENARIOS)
    rows = rows_of(pack.events)
    assert len(rows) == result["rows"]
    assert result["checks"] == sum(r["checks_executed"] for r in rows)
    by_scenario: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_scenario.setdefault(row["scenario_id"], []).append(row)
    assert set(by_scenario) == {s.name for s in SCENARIOS}
    for scenario in SCENARIOS:
        group = by_scenario[scenario.name]
        assert sorted(r["pass_label"] for r in group) == ["baseline", "replay", "rerun"]
        for row in group:
            assert row["checks_executed"] > 0 and row["checks_failed"] == 0, row
            assert row["status"] == "passed", row
            assert row["terminal_state"] == scenario.expect_state.value
            assert row["reason_code"] == (scenario.expect_reason.value if scenario.expect_reason else None)
            assert row["deterministic_seed"] == SEED and row["mode"] == scenario.mode.value
            assert row["reference_scenario_id"] == scenario.reference_id
            assert (pack.paths.root / row["log_path"]).is_file() and (pack.paths.root / row["trace_path"]).is_file()
            assert row["replay_command"] == f"asup scenario run {scenario.name} --seed {SEED}"


def test_determinism_report_compares_the_passes(pack: Pack) -> None:
    """The determinism report says the replay trace equals the baseline trace and every rerun stream equals the baseline."""
    report = json.loads((pack.events.parent / "e2e_determinism_report_v1.json").read_bytes())
    assert report == pack.result["determinism"]
    assert report["trace_equal"] is True and report["trace_bytes"] > 0
    assert report["replay"]["transfers"] == report["replay"]["reproduced"] > 0
    assert report["rerun"]["streams"] == report["rerun"]["same"] > 0
    assert report["rerun"]["events_compared"] > report["rerun"]["streams"]
    assert report["differences"] == []
    directory = pack.events.parent
    assert (directory / "e2e_baseline_trace.jsonl").read_bytes() == (directory / "e2e_replay_trace.jsonl").read_bytes()


def test_validate_accepts_the_pack(pack: Pack) -> None:
    """validate() finds every row and no problem in the pack's events file; `asup e2e validate` exits 0."""
    assert e2e.validate(pack.events) == (3 * len(SCENARIOS), [])
    result = invoke("e2e", "validate", str(pack.events), "--json")
    assert result.exit_code == 0, result.output
    document = payload(result)
    assert document["valid"] is True and document["rows"] == 3 * len(SCENARIOS) and document["problems"] == []


def test_validate_reports_a_missing_pass(pack: Pack, tmp_path: Path) -> None:
    """A scenario without its rerun row is reported by name and missing pass; the CLI exits 1."""
    rows = [r for r in rows_of(pack.events) if not (r["scenario_id"] == "success" and r["pass_label"] == "rerun")]
    path = write_rows(tmp_path / "events.jsonl", rows)
    count, problems = e2e.validate(path)
    assert count == len(rows)
    assert problems == [f"{path}: success lacks passes ['rerun']"]
    assert invoke("e2e", "validate", str(path)).exit_code == 1


def test_validate_reports_a_row_with_zero_checks(pack: Pack, tmp_path: Path) -> None:
    """A row that executed no check is reported with its file:line, scenario and pass."""
    rows = rows_of(pack.events)
    rows[3]["checks_executed"] = 0
    path = write_rows(tmp_path / "events.jsonl", rows)
    _, problems = e2e.validate(path)
    assert problems == [f"{path}:4: {rows[3]['scenario_id']}/{rows[3]['pass_label']} executed no check"]
    result = invoke("e2e", "validate", str(path))
    assert result.exit_code == 1
    assert "executed no check" in result.output


MALFORMED: dict[str, bytes] = {
    "not-json": b"{this is not json",
    "missing-field": b'{"schema_version": "asup.e2e/1", "run_id": "x"}',
    "unknown-field": b"",  # filled in from a real row below
    "wrong-type": b"",
}


@pytest.mark.parametrize("kind", sorted(MALFORMED))
def test_validate_reports_a_malformed_row_with_file_and_line(pack: Pack, tmp_path: Path, kind: str) -> None:
    """A malformed row (not JSON, a missing or unknown field, a wrong type) is reported as FILE:LINE; the other rows still count."""
    lines = pack.events.read_bytes().splitlines()
    row = json.loads(lines[1])
    if kind == "unknown-field":
        bad = json.dumps({**row, "surprise": 1}).encode()
    elif kind == "wrong-type":
        bad = json.dumps({**row, "checks_executed": "three"}).encode()
    else:
        bad = MALFORMED[kind]
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"\n".join([lines[0], bad, *lines[2:]]) + b"\n")
    count, problems = e2e.validate(path)
    assert count == len(lines) - 1
    assert any(p.startswith(f"{path}:2: ") for p in problems), problems
    assert not any(p.startswith(f"{path}:1: ") or p.startswith(f"{path}:3: ") for p in problems)
    result = invoke("e2e", "validate", str(path), "--json")
    assert result.exit_code == 1
    assert payload(result)["valid"] is False


def test_validate_reports_an_unknown_status(pack: Pack, tmp_path: Path) -> None:
    """A row whose status is neither passed nor failed is reported with its line."""
    rows = rows_of(pack.events)
    rows[0]["status"] = "ok"
    path = write_rows(tmp_path / "events.jsonl", rows)
    assert e2e.validate(path)[1] == [f"{path}:1: status 'ok'"]


def test_validate_reports_an_empty_file(tmp_path: Path) -> None:
    """An empty events file has no rows, which is a problem (exit 1); a missing file is a usage error (exit 2)."""
    path = tmp_path / "events.jsonl"
    path.write_bytes(b"")
    assert e2e.validate(path) == (0, [f"{path}: no rows"])
    result = invoke("e2e", "validate", str(path))
    assert result.exit_code == 1
    assert "no rows" in result.output
    assert invoke("e2e", "validate", str(tmp_path / "absent.jsonl")).exit_code == 2


def test_e2e_run_cli_exits_0_and_keeps_the_previous_logs(tmp_path: Path) -> None:
    """`asup e2e run --root R --json` exits 0 twice; the second run keeps the first run's logs aside and still validates."""
    root = tmp_path / "artifacts"
    for _ in range(2):
        result = invoke("e2e", "run", "--root", str(root), "--seed", str(SEED), "--json")
        assert result.exit_code == 0, result.output
        document = payload(result)
        assert document["passed"] is True and document["rows"] == 3 * len(SCENARIOS)
    latest = root / "e2e" / "latest"
    assert (latest / "e2e_baseline_log.jsonl.previous-1").is_file()
    assert invoke("e2e", "validate", str(latest / "e2e_script_pack_events_v1.jsonl")).exit_code == 0


def test_a_scenario_whose_expectation_fails_fails_its_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A scenario expecting the wrong reason code fails all three of its rows and the pack; the CLI exits 1."""
    index = next(i for i, s in enumerate(SCENARIOS) if s.name == "partial_write")
    wrong = msgspec.structs.replace(SCENARIOS[index], expect_reason=ReasonCode.RETRY_EXHAUSTED)
    monkeypatch.setattr(e2e, "SCENARIOS", [*SCENARIOS[:index], wrong, *SCENARIOS[index + 1 :]])
    root = tmp_path / "artifacts"
    result = invoke("e2e", "run", "--root", str(root), "--json")
    assert result.exit_code == 1
    document = payload(result)
    assert document["passed"] is False and document["failed"] == 3
    rows = rows_of(root / "e2e" / "latest" / "e2e_script_pack_events_v1.jsonl")
    failed = [r for r in rows if r["status"] == "failed"]
    assert {r["scenario_id"] for r in failed} == {"partial_write"}
    assert all("reason_code" in r["detail"] and r["checks_failed"] == 1 for r in failed)


def test_a_scenario_that_executes_no_check_fails(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When scenarios execute no check, their baseline rows fail with zero checks and validate reports each of them."""
    monkeypatch.setattr(engine.scenarios, "_checks", lambda *_args: [])
    paths = ArtifactPaths(tmp_path / "artifacts")
    result = e2e.run_e2e(paths, seed=SEED)
    assert result["passed"] is False
    rows = rows_of(Path(result["events"]))
    baseline = [r for r in rows if r["pass_label"] == "baseline"]
    assert all(r["checks_executed"] == 0 and r["status"] == "failed" for r in baseline)
    _, problems = e2e.validate(Path(result["events"]))
    assert len([p for p in problems if p.endswith("/baseline executed no check")]) == len(SCENARIOS)
