"""The engine's command line: `asup sync`, `asup scenario`, `asup contract` through typer's
CliRunner on real files (and one real `asup` process)."""

from __future__ import annotations

import json
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner, Result

from engine.contracts import MATRIX_FILE, contract_dir, load_matrix, load_state_machine
from engine.scenarios import SCENARIOS
from events.observations import IntentRecorded
from events.payloads import Transition
from events.record import Record
from events.scan import read_records
from events.vocabulary import Mode
from runbook.cli import app
from tests.cli import ASUP, asup_argv

CLASS = "conformance_fixture_bundle"
CHUNK = 4096
SIZE = 5 * CHUNK + 777


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A seeded 6-chunk source file."""
    path = tmp_path / "src" / "artifact.bin"
    path.parent.mkdir()
    path.write_bytes(random.Random(11).randbytes(SIZE))
    (tmp_path / "dst").mkdir()
    return path


def _invoke(*args: str) -> Result:
    return CliRunner(env={"COLUMNS": "400"}).invoke(app, list(args))  # wide: rich tables do not wrap names


def _sync(source: Path, target: Path, log: Path, *extra: str, mode: str = "strict") -> Result:
    return _invoke(
        "sync", str(source), str(target), "--artifact-class", CLASS, "--mode", mode, "--log", str(log), "--chunk-size", str(CHUNK), *extra
    )


def _records(log: Path) -> list[Record]:
    return list(read_records(log, tolerate_torn_tail=False))


def _stream(log: Path, stream: str) -> list[Record]:
    return [r for r in _records(log) if r.stream == stream]


def _json(result: Result) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(result.stdout)
    return payload


def _no_partial(target: Path) -> bool:
    """Nothing under the final name: the temp file may stay for a resume, the artifact must not."""
    return not target.exists()


# --- asup sync ---------------------------------------------------------------------------------


def test_sync_completes_with_byte_identical_target(source: Path, tmp_path: Path) -> None:
    """`asup sync` exits 0, the target equals the source byte for byte, and --json names state, reason, section and seq."""
    target, log = tmp_path / "dst" / "artifact.out", tmp_path / "log.jsonl"
    result = _sync(source, target, log, "--json", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert target.read_bytes() == source.read_bytes()
    payload = _json(result)
    assert payload["state"] == "completed"
    assert payload["reason_code"] is None
    assert payload["runbook_section"] is None
    assert payload["committed_cursor"] == SIZE
    first, last = payload["seq"]
    records = _records(log)
    assert (first, last) == (2, records[-1].seq)
    transitions = [r.data for r in records if isinstance(r.data, Transition)]
    assert transitions[-1].to_state == "completed"
    assert {r.stream for r in records[first - 1 :]} == {payload["transfer_id"]}


def test_sync_prints_state_without_json(source: Path, tmp_path: Path) -> None:
    """Without --json, a completed sync prints its state, transfer and the log range."""
    result = _sync(source, tmp_path / "dst" / "a.out", tmp_path / "log.jsonl")
    assert result.exit_code == 0, result.output
    assert "completed" in result.stdout
    assert "seq 2.." in result.stdout


def test_sync_strict_interruption_fails_closed_retry_exhausted_section_c(source: Path, tmp_path: Path) -> None:
    """Strict mode with an interruption at chunk 0 exits 1, prints retry_exhausted and runbook section C and
    names `asup triage LOG` as the next step, leaves no artifact."""
    target = tmp_path / "dst" / "artifact.out"
    result = _sync(source, target, tmp_path / "log.jsonl", "--fault", "interruption@0")
    assert result.exit_code == 1, result.output
    assert "retry_exhausted" in result.stdout
    assert "runbook section C" in result.stdout
    assert f"next: asup triage {tmp_path / 'log.jsonl'}" in " ".join(result.stdout.split())
    assert _no_partial(target)


def test_sync_hardened_interruption_recovers(source: Path, tmp_path: Path) -> None:
    """Hardened mode retries an interruption and completes with attempt 1 and an identical target."""
    target = tmp_path / "dst" / "artifact.out"
    result = _sync(source, target, tmp_path / "log.jsonl", "--fault", "interruption@2", "--json", mode="hardened")
    assert result.exit_code == 0, result.output
    assert _json(result)["attempt"] == 1
    assert target.read_bytes() == source.read_bytes()


def test_sync_legacy_adapter_is_capability_mismatch_section_a(source: Path, tmp_path: Path) -> None:
    """--adapter legacy_protocol exits 1 with capability_mismatch and runbook section A, in text and JSON."""
    target, log = tmp_path / "dst" / "artifact.out", tmp_path / "log.jsonl"
    text = _sync(source, target, log, "--adapter", "legacy_protocol")
    assert text.exit_code == 1, text.output
    assert "capability_mismatch" in text.stdout and "runbook section A" in text.stdout
    as_json = _sync(source, target, log, "--adapter", "legacy_protocol", "--json")
    assert as_json.exit_code == 1
    payload = _json(as_json)
    assert (payload["state"], payload["reason_code"], payload["runbook_section"]) == ("failed_closed", "capability_mismatch", "A")
    assert _no_partial(target)


def test_sync_bogus_fault_is_usage_error_naming_it(source: Path, tmp_path: Path) -> None:
    """--fault bogus@1 exits 2 with one stderr line naming 'bogus@1', and writes no log."""
    log = tmp_path / "log.jsonl"
    result = _sync(source, tmp_path / "dst" / "artifact.out", log, "--fault", "bogus@1")
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "'bogus@1'" in lines[0]
    assert not log.exists()


@pytest.mark.parametrize("plan", ["interruption@x", "interruption@-1", "interruption,nope", "interruption,,slow@1"])
def test_sync_malformed_fault_plan_names_the_bad_part(source: Path, tmp_path: Path, plan: str) -> None:
    """A malformed --fault plan is exit 2 with one line naming the offending part."""
    result = _sync(source, tmp_path / "dst" / "artifact.out", tmp_path / "log.jsonl", "--fault", plan)
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    if ",," in plan:
        assert "part 2 is empty" in lines[0]
    else:
        bad = next(p for p in plan.split(",") if p and p != "interruption")
        assert repr(bad) in lines[0]


def test_sync_fault_file_is_used(source: Path, tmp_path: Path) -> None:
    """--fault-file PLAN.json injects the plan it holds."""
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"faults": [{"kind": "interruption", "chunk": 1}]}))
    result = _sync(source, tmp_path / "dst" / "a.out", tmp_path / "log.jsonl", "--fault-file", str(plan), "--json")
    assert result.exit_code == 1
    assert _json(result)["reason_code"] == "retry_exhausted"


def test_sync_missing_src_is_usage_error(tmp_path: Path) -> None:
    """No SRC (no argument, no intent field) exits 2 with one line naming SRC."""
    result = _invoke("sync", "--artifact-class", CLASS, "--mode", "strict", "--log", str(tmp_path / "log.jsonl"))
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert "SRC" in lines[0]


def test_sync_nonexistent_src_is_usage_error(tmp_path: Path) -> None:
    """A SRC that does not exist exits 2, not a traceback."""
    result = _sync(tmp_path / "nope.bin", tmp_path / "out.bin", tmp_path / "log.jsonl")
    assert result.exit_code == 2, result.output
    assert len(result.stderr.splitlines()) == 1, result.stderr


def test_sync_intent_file_supplies_fields_and_flags_override(source: Path, tmp_path: Path) -> None:
    """--intent FILE supplies SRC, DST, class, mode, seed and transfer id; a flag given on the command line wins."""
    target = tmp_path / "dst" / "from-intent.out"
    intent = tmp_path / "intent.json"
    intent.write_text(
        json.dumps(
            {
                "source": str(source),
                "target": str(target),
                "artifact_class": CLASS,
                "mode": "strict",
                "seed": 5,
                "transfer_id": "t-from-intent-file",
                "chunk_size": CHUNK,
            }
        )
    )
    log = tmp_path / "log.jsonl"
    result = _invoke("sync", "--intent", str(intent), "--mode", "hardened", "--log", str(log), "--json")
    assert result.exit_code == 0, result.output
    assert _json(result)["transfer_id"] == "t-from-intent-file"
    assert target.read_bytes() == source.read_bytes()
    (recorded,) = [r.data for r in _stream(log, "t-from-intent-file") if isinstance(r.data, IntentRecorded)]
    assert recorded.intent.mode is Mode.HARDENED  # the flag
    assert recorded.intent.seed == 5  # the file
    assert recorded.intent.chunk_size == CHUNK
    assert recorded.intent.max_attempts == 3


def test_sync_bad_intent_file_is_usage_error(tmp_path: Path) -> None:
    """An --intent file with an unknown field exits 2 with one line naming the file."""
    intent = tmp_path / "intent.json"
    intent.write_text(json.dumps({"sauce": "x"}))
    result = _invoke("sync", "--intent", str(intent), "--log", str(tmp_path / "log.jsonl"))
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and str(intent) in lines[0]


def test_sync_resume_after_crash_completes(source: Path, tmp_path: Path) -> None:
    """A --fault crash@1 run stops with no artifact and names the asup resume command; resuming its checkpoint completes byte-identical."""
    target, log = tmp_path / "dst" / "artifact.out", tmp_path / "log.jsonl"
    crashed = _sync(source, target, log, "--seed", "4", "--fault", "crash@1", mode="hardened")
    assert crashed.exit_code == 1, crashed.output
    assert "asup resume" in crashed.stderr
    assert _no_partial(target)
    checkpoint = target.with_name(f".{target.name}.asup-ckpt.json")
    assert checkpoint.exists()
    assert f"--log {log}" in crashed.stderr
    resumed = _sync(source, target, log, "--seed", "4", "--resume", str(checkpoint), "--json", mode="hardened")
    assert resumed.exit_code == 0, resumed.output
    payload = _json(resumed)
    assert payload["state"] == "completed"
    assert target.read_bytes() == source.read_bytes()
    transitions = [r.data.trigger for r in _stream(log, payload["transfer_id"]) if isinstance(r.data, Transition)]
    assert "resume_requested" in transitions and "resume_applied" in transitions


def test_sync_real_process_fails_closed_with_json(source: Path, tmp_path: Path) -> None:
    """A real `asup` process: strict interruption exits 1 and its JSON names retry_exhausted, section C; the log verifies."""
    target, log = tmp_path / "dst" / "artifact.out", tmp_path / "log.jsonl"
    args = [*ASUP, "sync", str(source), str(target), "--artifact-class", CLASS, "--mode", "strict", "--log", str(log)]
    proc = subprocess.run([*args, "--fault", "interruption@0", "--json"], capture_output=True, timeout=60, check=False)
    assert proc.returncode == 1, proc.stderr
    payload = json.loads(proc.stdout)
    assert (payload["reason_code"], payload["runbook_section"], payload["state"]) == ("retry_exhausted", "C", "failed_closed")
    assert payload["seq"][1] == _records(log)[-1].seq
    assert _no_partial(target)
    verify = subprocess.run(asup_argv("log", "verify", str(log)), capture_output=True, timeout=60, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr


# --- asup scenario ----------------------------------------------------------------------------


def test_scenario_list_json_lists_16(tmp_path: Path) -> None:
    """`asup scenario list --json` lists the 16 built-in scenarios with their expected outcome."""
    result = _invoke("scenario", "list", "--json")
    assert result.exit_code == 0, result.output
    rows = _json(result)["scenarios"]
    assert len(rows) == 16
    assert [r["name"] for r in rows] == [s.name for s in SCENARIOS]
    assert {r["expect_state"] for r in rows} == {"completed", "failed_closed"}


def test_scenario_list_table() -> None:
    """`asup scenario list` prints a table naming the scenarios."""
    result = _invoke("scenario", "list")
    assert result.exit_code == 0
    assert "success" in result.stdout and "late_ack" in result.stdout


def test_scenario_run_success_log_verifies(tmp_path: Path) -> None:
    """`asup scenario run success --log L` exits 0, and L then verifies with `asup log verify`."""
    log = tmp_path / "scenarios.jsonl"
    result = _invoke("scenario", "run", "success", "--log", str(log))
    assert result.exit_code == 0, result.output
    assert "checks executed" in result.stdout
    verify = _invoke("log", "verify", str(log))
    assert verify.exit_code == 0, verify.output
    transitions = [r.data for r in _records(log) if isinstance(r.data, Transition)]
    assert transitions[-1].to_state == "completed"


def test_scenario_run_all_json_passes(tmp_path: Path) -> None:
    """`asup scenario run all --json` reports passed, every scenario passing, with at least 45 checks."""
    result = _invoke("scenario", "run", "all", "--log", str(tmp_path / "all.jsonl"), "--json")
    assert result.exit_code == 0, result.output
    payload = _json(result)
    assert payload["passed"] is True
    assert payload["checks"] >= 45
    assert len(payload["outcomes"]) == 16
    assert all(o["passed"] for o in payload["outcomes"])
    assert _invoke("log", "verify", str(tmp_path / "all.jsonl")).exit_code == 0


def test_scenario_run_keeps_an_existing_log(tmp_path: Path) -> None:
    """An existing file at --log is moved to L.1, never overwritten; the new run writes a fresh L."""
    log = tmp_path / "scenarios.jsonl"
    first = _invoke("scenario", "run", "success", "--log", str(log))
    assert first.exit_code == 0
    earlier = log.read_bytes()
    second = _invoke("scenario", "run", "capability_mismatch", "--log", str(log), "--json")
    assert second.exit_code == 0, second.output
    kept = log.with_name(log.name + ".1")
    assert _json(second)["kept"] == str(kept)
    assert kept.read_bytes() == earlier
    assert log.read_bytes() != earlier
    assert _invoke("log", "verify", str(log)).exit_code == 0
    third = _invoke("scenario", "run", "success", "--log", str(log))
    assert third.exit_code == 0
    assert kept.read_bytes() == earlier
    assert log.with_name(log.name + ".2").exists()


def test_scenario_run_unknown_name_is_usage_error(tmp_path: Path) -> None:
    """`asup scenario run nope` exits 2 with one line naming it."""
    result = _invoke("scenario", "run", "nope", "--log", str(tmp_path / "l.jsonl"))
    assert result.exit_code == 2
    assert "'nope'" in result.stderr


# --- asup contract ----------------------------------------------------------------------------


def test_contract_show_matrix() -> None:
    """`asup contract show matrix` prints every operation id and artifact class."""
    result = _invoke("contract", "show", "matrix")
    assert result.exit_code == 0, result.output
    for entry in load_matrix().capability_matrix:
        assert entry.operation_id in result.stdout
        assert entry.artifact_class in result.stdout


def test_contract_show_state_machine_by_default() -> None:
    """`asup contract show` prints the transition table: every row's trigger and reason code."""
    result = _invoke("contract", "show")
    assert result.exit_code == 0, result.output
    assert "adapter state machine" in result.stdout
    for row in load_state_machine().state_machine.transition_table:
        assert row.event in result.stdout
        assert row.reason_code is None or row.reason_code in result.stdout


def test_contract_show_json_is_the_shipped_document() -> None:
    """`asup contract show matrix --json` carries the shipped JSON document itself."""
    result = _invoke("contract", "show", "matrix", "--json")
    assert result.exit_code == 0, result.output
    payload = _json(result)
    assert payload["contract"] == "matrix"
    assert payload["document"] == json.loads((contract_dir() / MATRIX_FILE).read_text())
    default = _json(_invoke("contract", "show", "--json"))
    assert default["contract"] == "state-machine"
    assert len(default["document"]["state_machine"]["transition_table"]) == 23


def test_contract_show_unknown_is_usage_error() -> None:
    """`asup contract show bogus` exits 2."""
    assert _invoke("contract", "show", "bogus").exit_code == 2


# --- help ----------------------------------------------------------------------------------------


def _command_paths() -> Iterator[list[str]]:
    def walk(command: Any, path: list[str]) -> Iterator[list[str]]:
        yield path
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            yield from walk(sub, [*path, name])

    yield from walk(typer.main.get_command(app), [])


def _help_without_example(paths: list[list[str]]) -> list[str]:
    missing = []
    for path in paths:
        result = _invoke(*path, "--help")
        assert result.exit_code == 0, (path, result.output)
        if "Example:" not in result.stdout:
            missing.append(" ".join(["asup", *path]))
    return missing


def test_every_command_help_has_an_example() -> None:
    """Every command's --help contains an `Example:` line."""
    paths = [p for p in _command_paths() if p and not _is_group(p)]
    assert ["sync"] in paths and ["scenario", "run"] in paths and ["contract", "validate"] in paths
    assert _help_without_example(paths) == []


@pytest.mark.parametrize("group", [[], ["log"], ["scenario"], ["contract"]], ids=lambda g: " ".join(["asup", *g]))
def test_root_and_group_help_have_an_example(group: list[str]) -> None:
    """`asup --help` and each group's --help (log, scenario, contract) also contain an `Example:` line."""
    assert _is_group(group)
    assert _help_without_example([group]) == []


def _is_group(path: list[str]) -> bool:
    """Whether `asup PATH` is a group of commands (the root included)."""
    command: Any = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return hasattr(command, "commands")
