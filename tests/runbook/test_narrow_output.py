"""Tables on a narrow terminal fold their cells: no id, path, primitive or reason code is
cut to an ellipsis, whatever the width."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from runbook.cli import app

RUNNER = CliRunner()


@pytest.fixture(scope="module")
def failing_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    log = tmp_path_factory.mktemp("narrow") / "a-long-directory-name-for-the-transfers-log.jsonl"
    result = RUNNER.invoke(app, ["scenario", "run", "retry_exhausted", "--log", str(log), "--seed", "3"])
    assert result.exit_code == 0, result.output
    return log


COMMANDS: dict[str, list[str]] = {
    "contract matrix": ["contract", "show", "matrix"],
    "contract state-machine": ["contract", "show", "state-machine"],
    "contract profiles": ["contract", "show", "profiles"],
    "scenario list": ["scenario", "list"],
    "status": ["status", "{log}"],
    "log stats": ["log", "stats", "{log}"],
    "replay": ["replay", "{log}"],
}


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_tables_fold_instead_of_cutting(name: str, failing_log: Path) -> None:
    """At 50 columns the command's tables show every cell whole (folded), never with an ellipsis."""
    argv = [arg.replace("{log}", str(failing_log)) for arg in COMMANDS[name]]
    result = RUNNER.invoke(app, argv, env={"COLUMNS": "50", "TTY_COMPATIBLE": "1", "NO_COLOR": "1"})  # a terminal, 50 wide
    assert result.exit_code in (0, 1), result.output
    assert "┃" in result.stdout or "│" in result.stdout, "the command printed no table"
    assert "…" not in result.stdout, result.stdout
