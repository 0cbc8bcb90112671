"""The shipped contract artifacts load and are sound; a malformed copy is a clear one-line
error naming its file and field, in the library and through `asup contract validate`."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from engine.contracts import (
    MATRIX_FILE,
    PROFILES_FILE,
    STATE_MACHINE_FILE,
    contract_dir,
    load_matrix,
    load_profiles,
    load_state_machine,
)
from events.errors import AsupError, ErrorCode
from events.vocabulary import TERMINAL_STATES, Mode, ReasonCode, State, Trigger
from runbook.cli import app

Doc = dict[str, Any]


def test_shipped_contracts_load() -> None:
    """The three shipped files load: 5 artifact classes, 23 transitions, 5 adapter profiles."""
    matrix = load_matrix()
    machine = load_state_machine()
    profiles = load_profiles()
    assert [e.operation_id for e in matrix.capability_matrix] == [f"ASUP-CAP-00{i}" for i in range(1, 6)]
    assert len(set(matrix.artifact_classes)) == 5
    assert len(machine.state_machine.transition_table) == 23
    assert {p.name for p in profiles.profiles} == {"full", "legacy_protocol", "sha256_only", "small_chunks", "minimal"}


def test_state_machine_speaks_the_vocabulary() -> None:
    """The table's states, terminal states and triggers are the vocabulary's; it starts in idle."""
    spec = load_state_machine().state_machine
    assert set(spec.states) == set(State)
    assert set(spec.terminal_states) == set(TERMINAL_STATES)
    assert spec.initial_state is State.IDLE
    assert set(spec.events) <= set(Trigger)
    assert set(spec.reason_codes) == set(ReasonCode)


def test_every_non_terminal_state_is_reachable_from_idle() -> None:
    """Following the table's rows from idle reaches every state, terminal ones included."""
    spec = load_state_machine().state_machine
    reached = {spec.initial_state}
    frontier = [spec.initial_state]
    while frontier:
        state = frontier.pop()
        for row in spec.transition_table:
            if row.from_state == state and row.to_state not in reached:
                reached.add(row.to_state)
                frontier.append(row.to_state)
    assert {s for s in spec.states if s not in spec.terminal_states} <= reached
    assert reached == set(spec.states)


def test_every_failed_closed_row_has_a_reason_code() -> None:
    """A row into failed_closed names its reason code, and only such rows carry one."""
    rows = load_state_machine().state_machine.transition_table
    into_failed = [r for r in rows if r.to_state is State.FAILED_CLOSED]
    assert into_failed
    assert all(r.reason_code is not None for r in into_failed)
    assert all(r.reason_code is None for r in rows if r.to_state is not State.FAILED_CLOSED)


def test_every_reason_code_is_reachable_by_the_table_or_the_policy() -> None:
    """Every reason code of the vocabulary is produced by some row or by the invalid-trigger policy."""
    spec = load_state_machine().state_machine
    produced = {r.reason_code for r in spec.transition_table if r.reason_code is not None}
    produced.add(spec.invalid_trigger_policy.non_terminal.reason_code)
    assert produced == set(ReasonCode)
    assert spec.invalid_trigger_policy.non_terminal.to_state is State.FAILED_CLOSED
    assert spec.invalid_trigger_policy.terminal.event is Trigger.TRIGGER_REJECTED


def test_terminal_states_have_no_exits() -> None:
    """No row leaves completed or failed_closed."""
    spec = load_state_machine().state_machine
    assert not [r for r in spec.transition_table if r.from_state in spec.terminal_states]


def test_matrix_is_fail_closed_and_strict_has_no_retries() -> None:
    """Every class requires BLAKE3, is fail-closed in both modes, and strict allows zero attempts."""
    for entry in load_matrix().capability_matrix:
        assert "asupersync::checksum::verify_blake3" in {p.id for p in entry.asupersync_primitives}
        assert entry.behavior(Mode.STRICT).max_attempts == 0
        for mode in Mode:
            assert entry.behavior(mode).mode is mode
            assert entry.behavior(mode).unsupported_capability_policy == "fail_closed"


# --- malformed copies --------------------------------------------------------------------

Mutation = Callable[[Doc], None]


def _unknown_field(doc: Doc) -> None:
    doc["capability_matrix"][1]["surprise"] = True


def _wrong_type(doc: Doc) -> None:
    doc["capability_matrix"][0]["asupersync_primitives"][0]["version"] = "one"


def _terminal_exit(doc: Doc) -> None:
    rows = doc["state_machine"]["transition_table"]
    rows.append({"from_state": "completed", "event": "start", "to_state": "capability_check", "reason_code": None, "notes": "x"})


def _failed_closed_without_reason(doc: Doc) -> None:
    doc["state_machine"]["transition_table"][3]["reason_code"] = None


def _duplicate_row(doc: Doc) -> None:
    rows = doc["state_machine"]["transition_table"]
    rows.append(dict(rows[5]))


def _no_blake3(doc: Doc) -> None:
    primitives = doc["capability_matrix"][2]["asupersync_primitives"]
    doc["capability_matrix"][2]["asupersync_primitives"] = [p for p in primitives if p["id"] != "asupersync::checksum::verify_blake3"]


def _strict_retries(doc: Doc) -> None:
    doc["capability_matrix"][0]["strict_mode_behavior"]["max_attempts"] = 1


def _state_machine_unknown_field(doc: Doc) -> None:
    doc["state_machine"]["transition_table"][0]["guard"] = "always"


# (name, file, mutation, the field the error must name)
MUTATIONS: list[tuple[str, str, Mutation, str]] = [
    ("unknown_field", MATRIX_FILE, _unknown_field, "$.capability_matrix[1]"),
    ("unknown_row_field", STATE_MACHINE_FILE, _state_machine_unknown_field, "$.state_machine.transition_table[0]"),
    ("wrong_type", MATRIX_FILE, _wrong_type, "$.capability_matrix[0].asupersync_primitives[0].version"),
    ("terminal_exit", STATE_MACHINE_FILE, _terminal_exit, "$.state_machine.transition_table[23]"),
    ("failed_closed_without_reason", STATE_MACHINE_FILE, _failed_closed_without_reason, "$.state_machine.transition_table[3]"),
    ("duplicate_row", STATE_MACHINE_FILE, _duplicate_row, "$.state_machine.transition_table[23]"),
    ("class_without_blake3", MATRIX_FILE, _no_blake3, "$.capability_matrix[2]"),
    ("strict_max_attempts", MATRIX_FILE, _strict_retries, "$.capability_matrix[0].strict_mode_behavior"),
]
LOADERS: dict[str, Callable[[Path], object]] = {
    MATRIX_FILE: load_matrix,
    STATE_MACHINE_FILE: load_state_machine,
    PROFILES_FILE: load_profiles,
}


def _copy_contracts(tmp_path: Path) -> Path:
    root = tmp_path / "contract"
    root.mkdir()
    for name in (MATRIX_FILE, STATE_MACHINE_FILE, PROFILES_FILE):
        shutil.copyfile(contract_dir() / name, root / name)
    return root


def _mutate(root: Path, file: str, mutation: Mutation) -> Path:
    path = root / file
    doc = json.loads(path.read_text())
    mutation(doc)
    path.write_text(json.dumps(doc, indent=2))
    return path


@pytest.mark.parametrize(("name", "file", "mutation", "field"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_malformed_contract_is_bad_input_naming_file_and_field(
    tmp_path: Path, name: str, file: str, mutation: Mutation, field: str
) -> None:
    """A malformed copy raises AsupError(BAD_INPUT) whose one line names the file and the field."""
    path = _mutate(_copy_contracts(tmp_path), file, mutation)
    with pytest.raises(AsupError) as caught:
        LOADERS[file](path)
    error = caught.value
    assert error.code is ErrorCode.BAD_INPUT
    line = error.one_line()
    assert "\n" not in line
    assert str(path) in line
    assert field in line, f"{name}: {line}"
    assert error.exit_code == 2


@pytest.mark.parametrize("file", [MATRIX_FILE, STATE_MACHINE_FILE, PROFILES_FILE])
def test_contract_that_is_not_json_is_bad_input(tmp_path: Path, file: str) -> None:
    """A contract file that is not JSON is BAD_INPUT naming the file, not a crash or a default."""
    path = _copy_contracts(tmp_path) / file
    path.write_bytes(b'{"schema_version": "1.0.0", ')
    with pytest.raises(AsupError) as caught:
        LOADERS[file](path)
    assert caught.value.code is ErrorCode.BAD_INPUT
    assert str(path) in caught.value.one_line()
    assert "not JSON" in caught.value.one_line()


@pytest.mark.parametrize("file", [MATRIX_FILE, STATE_MACHINE_FILE, PROFILES_FILE])
def test_missing_contract_is_bad_input(tmp_path: Path, file: str) -> None:
    """A missing contract file is BAD_INPUT naming the file."""
    path = tmp_path / "nowhere" / file
    with pytest.raises(AsupError) as caught:
        LOADERS[file](path)
    assert caught.value.code is ErrorCode.BAD_INPUT
    assert str(path) in caught.value.one_line()


def test_empty_object_names_a_missing_field(tmp_path: Path) -> None:
    """An empty JSON object is refused with the first required field named, never filled with defaults."""
    path = _copy_contracts(tmp_path) / STATE_MACHINE_FILE
    path.write_text("{}")
    with pytest.raises(AsupError) as caught:
        load_state_machine(path)
    assert caught.value.code is ErrorCode.BAD_INPUT
    assert "schema_version" in caught.value.one_line()


# --- asup contract validate --------------------------------------------------------------


def test_cli_validate_shipped_contracts_exits_0() -> None:
    """`asup contract validate` on the shipped contracts exits 0 and counts them."""
    result = CliRunner().invoke(app, ["contract", "validate", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["valid"] is True
    assert (payload["artifact_classes"], payload["transitions"], payload["profiles"]) == (5, 23, 5)


def test_cli_validate_shipped_directory_explicitly_exits_0(tmp_path: Path) -> None:
    """`asup contract validate DIR` on an unmodified copy exits 0."""
    root = _copy_contracts(tmp_path)
    result = CliRunner().invoke(app, ["contract", "validate", str(root)])
    assert result.exit_code == 0, result.output
    assert "contracts valid" in result.stdout


@pytest.mark.parametrize(("name", "file", "mutation", "field"), MUTATIONS, ids=[m[0] for m in MUTATIONS])
def test_cli_validate_malformed_copy_exits_2_with_one_line(tmp_path: Path, name: str, file: str, mutation: Mutation, field: str) -> None:
    """`asup contract validate DIR` on a malformed copy exits 2 with one stderr line naming file and field."""
    root = _copy_contracts(tmp_path)
    path = _mutate(root, file, mutation)
    result = CliRunner().invoke(app, ["contract", "validate", str(root)])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("asup: ")
    assert str(path) in lines[0]
    assert field in lines[0]
    assert "bad_input" in lines[0]
    assert result.stdout == ""


def test_cli_validate_missing_directory_exits_2(tmp_path: Path) -> None:
    """`asup contract validate` on a directory without contracts exits 2 with one line naming the file."""
    result = CliRunner().invoke(app, ["contract", "validate", str(tmp_path)])
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1
    assert str(tmp_path / MATRIX_FILE) in lines[0]


def test_terminal_states_that_disagree_with_the_vocabulary_are_refused(tmp_path: Path) -> None:
    """A state machine contract that drops `completed` from its terminal states is BAD_INPUT, not a machine that lets completed move."""
    path = _mutate(_copy_contracts(tmp_path), STATE_MACHINE_FILE, _completed_not_terminal)
    with pytest.raises(AsupError) as caught:
        load_state_machine(path)
    assert caught.value.code is ErrorCode.BAD_INPUT
    assert "terminal_states" in caught.value.one_line()


def _completed_not_terminal(doc: Doc) -> None:
    doc["state_machine"]["terminal_states"] = ["failed_closed"]
