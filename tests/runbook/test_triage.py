"""asup triage: from a failing log or a reason code to the runbook section, level and steps."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from runbook.cli import app

RUNNER = CliRunner()


def _scenario_log(tmp_path: Path, name: str) -> Path:
    log = tmp_path / f"{name}.jsonl"
    result = RUNNER.invoke(app, ["scenario", "run", name, "--log", str(log), "--seed", "3"])
    assert result.exit_code == 0, result.output
    return log


def test_triage_of_a_section_c_log_names_the_failure_and_replays_it(tmp_path: Path) -> None:
    """A retry_exhausted log: the transfer, section C, level P2, its replay reproduced, with the command to rerun it."""
    log = _scenario_log(tmp_path, "retry_exhausted")
    result = RUNNER.invoke(app, ["triage", str(log), "--root", str(tmp_path / "root"), "--json"])
    document = json.loads(result.stdout)
    assert [(f["transfer_id"], f["reason_code"], f["section"], f["level"]) for f in document["failures"]] == [
        ("retry_exhausted-3", "retry_exhausted", "C", "P2")
    ]
    replay = [s for s in document["steps"] if s["step"] == "replay retry_exhausted-3"]
    assert replay and replay[0]["passed"] and replay[0]["command"] == f"asup replay {log} --transfer retry_exhausted-3"
    assert {s["section"] for s in document["steps"]} == {"C"}
    assert result.exit_code == 0 and document["passed"] and document["checks"] == len(document["steps"]) > 0


def test_triage_of_a_section_a_code_runs_the_capability_gate(tmp_path: Path) -> None:
    """A reason code alone: section A steps (capability gate, contract copies) run and pass; level P0."""
    result = RUNNER.invoke(app, ["triage", "capability_mismatch", "--root", str(tmp_path / "root"), "--json"])
    document = json.loads(result.stdout)
    assert document["sections"] == ["A"] and document["level"] == "P0"
    assert [s["step"] for s in document["steps"]] == ["capability gate", "contract artifacts current"]
    assert result.exit_code == 0


def test_triage_section_b_without_evidence_fails_and_says_what_to_run(tmp_path: Path) -> None:
    """Section B needs a sealed pack with a sidecar: without one the step fails and names `asup readiness`."""
    root = tmp_path / "root"
    result = RUNNER.invoke(app, ["triage", "integrity_precheck_failed", "--root", str(root), "--json"])
    document = json.loads(result.stdout)
    durability = [s for s in document["steps"] if s["section"] == "B" and s["step"] == "scrub and decode drill"]
    assert durability and not durability[0]["passed"] and durability[0]["command"] == f"asup readiness --root {root}"
    assert result.exit_code == 1


def test_triage_of_an_unknown_code_is_a_one_line_usage_error(tmp_path: Path) -> None:
    """Neither a file nor a reason code: exit 2 with one line listing the known codes."""
    result = RUNNER.invoke(app, ["triage", "not_a_code", "--root", str(tmp_path)])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "resume_seed_mismatch" in result.stderr


def test_triage_of_a_log_without_failures_runs_nothing_and_passes(tmp_path: Path) -> None:
    """A log whose transfers all completed: no failures, no section, nothing to run."""
    log = _scenario_log(tmp_path, "success")
    result = RUNNER.invoke(app, ["triage", str(log), "--root", str(tmp_path / "root"), "--json"])
    document = json.loads(result.stdout)
    assert document["failures"] == [] and document["steps"] == [] and document["level"] is None
    assert result.exit_code == 0


def test_triage_on_a_narrow_terminal_cuts_nothing_and_prints_each_command_whole(tmp_path: Path) -> None:
    """At 60 columns no cell ends in an ellipsis, and every step's reproduce command is
    printed whole on one line (to copy at 3 a.m.), the same commands as --json names."""
    log = _scenario_log(tmp_path, "retry_exhausted")
    root = tmp_path / "a-rather-long-output-root-directory-name"
    document = json.loads(RUNNER.invoke(app, ["triage", str(log), "--root", str(root), "--json"]).stdout)
    result = RUNNER.invoke(app, ["triage", str(log), "--root", str(root)], env={"COLUMNS": "60"})
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    lines = [line.strip() for line in result.stdout.splitlines()]
    commands = [s["command"] for s in document["steps"]]
    assert commands and all(f"{n}  {command}" in lines for n, command in enumerate(commands, 1)), result.stdout
