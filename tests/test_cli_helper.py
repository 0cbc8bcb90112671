"""Tests start the CLI one way (tests.cli), never by a path into a venv."""

from __future__ import annotations

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
VENV_PATHS = re.compile(r"""\.venv|bin/asup|with_name\(["']asup["']\)|/ ["']asup["']|["']-m["'], ["']runbook["']""")
HELPER = TESTS / "cli.py"  # the one place the command line is spelled


def test_no_test_builds_a_path_to_the_venv_or_the_asup_script() -> None:
    """No test module names `.venv`, `bin/asup`, the script beside the interpreter or `-m runbook`; tests.cli is the one way in."""
    here = Path(__file__).resolve()
    found = [
        f"{path.relative_to(TESTS)}:{number}"
        for path in sorted(TESTS.rglob("*.py"))
        if path not in (here, HELPER)
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if VENV_PATHS.search(line)
    ]
    assert found == []
