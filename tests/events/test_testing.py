"""The test helpers ship in the package: `events.testing` imports without pytest, and its
contract suite, which needs pytest, says so when pytest is missing."""

from __future__ import annotations

import subprocess
import sys

BLOCK_PYTEST = "import sys; sys.modules['pytest'] = None\n"  # the import of pytest then fails, as in an install without it


def run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", BLOCK_PYTEST + code], capture_output=True, text=True, check=False, timeout=60)


def test_helpers_import_without_pytest() -> None:
    """events.testing (MemoryLog, StepClock, transition) imports and works where pytest is not installed."""
    done = run(
        "from events.testing import MemoryLog, StepClock, tags, transition\n"
        "log = MemoryLog('x', clock=StepClock())\n"
        "log.append('s', [transition('t-1'), transition('t-2')])\n"
        "print(tags(list(log.read())))\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout == "['t-1', 't-2']\n"


def test_the_contract_suite_names_pytest_when_it_is_missing() -> None:
    """Importing the store contract suite without pytest fails with a message that says to install pytest."""
    done = run("import events.testing.store_contract\n")
    assert done.returncode == 1
    assert "events.testing.store_contract is a pytest suite: install pytest to run it" in done.stderr
