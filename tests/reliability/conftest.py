"""A directory for tests that open a log thousands of times."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from events.lock import filesystem_type

SHM = Path("/dev/shm")


@pytest.fixture
def memory_dir(tmp_path: Path) -> Iterator[Path]:
    """A fresh directory on tmpfs (/dev/shm) where there is one, else `tmp_path`.

    For sweeps whose thousands of repairs would otherwise spend most of their time in the
    fsyncs of a shared disk: what they check (which cut is refused, repaired or left) is the
    log's logic, and a fsync changes none of it."""
    if SHM.is_dir() and os.access(SHM, os.W_OK) and filesystem_type(SHM.stat().st_dev) == "tmpfs":
        with tempfile.TemporaryDirectory(dir=SHM, prefix="asup-test-") as directory:
            yield Path(directory)
    else:
        yield tmp_path
