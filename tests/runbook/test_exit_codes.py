"""The exit codes are written once, in `ExitCode` and `EXIT_MEANINGS`: `asup --help` and the
README list every member from there, and every error code maps to one of them."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from events.errors import EXIT_CODES, EXIT_MEANINGS, ErrorCode, ExitCode, exit_codes_help
from runbook.cli import app

README = Path(__file__).resolve().parents[2] / "README.md"


def _words(text: str) -> str:
    return " ".join(text.split())


def test_every_exit_code_has_one_meaning() -> None:
    """EXIT_MEANINGS describes exactly the ExitCode members, each in one non-empty line."""
    assert set(EXIT_MEANINGS) == set(ExitCode)
    assert all(meaning and "\n" not in meaning for meaning in EXIT_MEANINGS.values())


def test_root_help_lists_every_exit_code() -> None:
    """`asup --help` carries the generated sentence, with every member's number and meaning."""
    result = CliRunner(env={"COLUMNS": "400"}).invoke(app, ["--help"])
    assert result.exit_code == 0
    shown = _words(result.stdout)
    assert exit_codes_help() in shown
    for code in ExitCode:
        assert f"{int(code)} {EXIT_MEANINGS[code]}" in shown


def test_readme_exit_code_sentence_matches_the_enum() -> None:
    """The README's exit-code sentence is the generated one, word for word."""
    text = _words(README.read_text())
    assert exit_codes_help() in text
    assert text.count("Exit codes:") == 1


def test_every_error_code_maps_to_a_documented_exit_code() -> None:
    """Each ErrorCode has an exit code, and none is OK: an error never exits 0."""
    assert set(EXIT_CODES) == set(ErrorCode)
    assert ExitCode.OK not in EXIT_CODES.values()
