"""asup.toml defaults: below flags and ASUP_* variables, above built-in defaults; unknown keys refused."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from tests.cli import asup_argv, run_asup


def _checklist_root(cwd: Path, *args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = subprocess.run(asup_argv("checklist", "--json", *args), cwd=cwd, capture_output=True, text=True, env=env)
    root = json.loads(result.stdout)["root"] if result.stdout.strip() else ""
    return result.returncode, root, result.stderr


def test_asup_toml_sets_the_root_and_flags_and_env_win(tmp_path: Path) -> None:
    """root from asup.toml is used; ASUP_ROOT beats it; --root beats both."""
    (tmp_path / "asup.toml").write_text('root = "from-toml"\nlever = false\n')
    env = {k: v for k, v in os.environ.items() if k not in ("ASUP_ROOT", "ASUP_CONFIG")}
    assert _checklist_root(tmp_path, env=env)[1] == "from-toml"
    assert _checklist_root(tmp_path, env={**env, "ASUP_ROOT": "from-env"})[1] == "from-env"
    assert _checklist_root(tmp_path, "--root", "from-flag", env={**env, "ASUP_ROOT": "from-env"})[1] == "from-flag"


def test_unknown_keys_in_asup_toml_are_a_one_line_usage_error(tmp_path: Path) -> None:
    """A key asup does not know is refused, naming the file: exit 2, one line."""
    (tmp_path / "asup.toml").write_text("rooot = 'typo'\n")
    env = {k: v for k, v in os.environ.items() if k != "ASUP_CONFIG"}
    code, _, stderr = _checklist_root(tmp_path, env=env)
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1 and "asup.toml" in stderr and "rooot" in stderr


def test_a_broken_asup_toml_does_not_hide_the_help(tmp_path: Path) -> None:
    (tmp_path / "asup.toml").write_text("root = [\n")
    helped = run_asup("--help", cwd=tmp_path)
    assert helped.returncode == 0 and "Usage: asup" in helped.stdout
    assert "not a valid asup.toml" in helped.stderr  # still said, once
    other = run_asup("escalate", cwd=tmp_path)
    assert other.returncode == 2 and "not a valid asup.toml" in other.stderr
