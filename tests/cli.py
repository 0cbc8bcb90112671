"""The asup CLI in a real process, started by the interpreter running the tests.

`python -m runbook` instead of a path to the `asup` script, so the tests pass wherever the
venv lives, or with none. The script itself is checked by CI, which installs the built
wheel into a fresh venv and runs `asup` outside the repository.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

ASUP: tuple[str, ...] = (sys.executable, "-m", "runbook")


def asup_argv(*args: str) -> list[str]:
    """The command line of `asup ARGS...` for subprocess."""
    return [*ASUP, *args]


def run_asup(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`asup ARGS...` in `cwd`, output captured, without the terminal-width and colour overrides."""
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "NO_COLOR")}
    return subprocess.run(asup_argv(*args), cwd=cwd, env=env, capture_output=True, text=True, timeout=60, check=False)


def asup_untraced(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`asup ARGS...`, output captured, failing the test if a Python traceback reached the user."""
    done = subprocess.run(asup_argv(*args), cwd=cwd, capture_output=True, text=True, timeout=180, check=False)
    assert "Traceback" not in done.stdout + done.stderr, done.stderr
    return done


def seeded_file(path: Path, size: int, seed: int = 1) -> Path:
    """`size` seeded random bytes at `path` (its directories made): a source to sync."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(random.Random(seed).randbytes(size))
    return path
