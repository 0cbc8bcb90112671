"""User data in human output is printed literally: never parsed as rich markup or emoji."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.cli import asup_argv

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "logs" / "scenarios.jsonl"


def _asup(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200", "NO_COLOR": "1"}
    return subprocess.run(asup_argv(*argv), cwd=cwd, env=env, capture_output=True, text=True, check=False)


@pytest.mark.parametrize("name", ["[/x].jsonl", "[bold]y.jsonl", "z:100:.jsonl"])
@pytest.mark.parametrize("verb", ["log verify", "status", "replay"])
def test_markup_like_paths_print_literally(tmp_path: Path, name: str, verb: str) -> None:
    """A log path that looks like a style tag or an emoji code is printed as it is, with no
    traceback (a closing tag `[/x]` used to crash the printer)."""
    (tmp_path / "[").mkdir()
    shutil.copy(GOLDEN, tmp_path / name)
    result = _asup(*verb.split(), name, cwd=tmp_path)
    assert "Traceback" not in result.stderr
    assert result.returncode in (0, 1), result.stderr
    if verb in ("log verify", "status"):
        assert name in result.stdout
