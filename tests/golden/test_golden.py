"""Golden logs: what users see and what the log means, pinned byte for byte.

A failure here is a visible change of behaviour. If it is intended, run
`python -m tests.golden.regen`, review the diff of `tests/golden/expected/`, and commit it
with the change, saying why.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.golden.cases import CASES, DEMO, EXPECTED, HERE, SCENARIOS, SEED, asup, comparable, copy_inputs, run_case


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_inputs(tmp_path_factory.mktemp("golden"))


@pytest.fixture(scope="module")
def outputs(workdir: Path) -> dict[str, str]:
    """Every case run once, as real processes, on every core (they only read)."""
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        return dict(zip(CASES, pool.map(lambda name: run_case(name, workdir), CASES), strict=True))


@pytest.mark.parametrize("name", sorted(CASES))
def test_command_output_matches_golden(name: str, outputs: dict[str, str]) -> None:
    """Each command prints exactly its golden output and exits with its golden code."""
    expected = (EXPECTED / f"{name}.txt").read_text()
    assert outputs[name] == expected, f"golden {name} changed: run python -m tests.golden.regen and review the diff"


def test_every_golden_file_is_a_case() -> None:
    """No orphaned golden output: every expected file belongs to a case, and back."""
    assert {p.stem for p in EXPECTED.glob("*.txt")} == set(CASES)


def test_golden_inputs_write_nothing(workdir: Path, outputs: dict[str, str]) -> None:
    """Reading commands leave their inputs byte for byte as they were and create no file
    (no repair, no lock, no cache)."""
    for name in ("logs", "root"):
        assert _files(workdir / name) == _files(HERE / name)


def _files(top: Path) -> dict[str, bytes]:
    return {str(p.relative_to(top)): p.read_bytes() for p in sorted(top.rglob("*")) if p.is_file()}


def test_scenarios_rerecord_identically(tmp_path: Path) -> None:
    """Today's adapter records the golden scenario log again, record for record (only the
    environment fingerprint, and the digests that cover it, may differ by machine)."""
    (tmp_path / "logs").mkdir()
    result = asup(["scenario", "run", "all", "--seed", SEED, "--log", SCENARIOS], tmp_path)
    assert result.returncode == 0, result.stderr
    assert comparable(tmp_path / SCENARIOS) == comparable(HERE / SCENARIOS)


def test_demo_rerecords_identically(tmp_path: Path) -> None:
    """`asup log demo` writes the golden demo log again, record for record."""
    (tmp_path / "logs").mkdir()
    result = asup(["log", "demo", DEMO, "--seed", SEED], tmp_path)
    assert result.returncode == 0, result.stderr
    assert comparable(tmp_path / DEMO) == comparable(HERE / DEMO)


def test_damaged_logs_are_derived_from_the_scenarios(tmp_path: Path) -> None:
    """The damaged goldens are exactly the documented edits of the scenario log."""
    from tests.golden.regen import derive_damaged

    shutil.copy(HERE / SCENARIOS, tmp_path / "scenarios.jsonl")
    derive_damaged(tmp_path / "scenarios.jsonl")
    for name in ("bitflip", "torn", "extra_field", "newer_v"):
        assert (tmp_path / f"{name}.jsonl").read_bytes() == (HERE / "logs" / f"{name}.jsonl").read_bytes(), name


RECORD_DIGEST = re.compile(r"blake3:[0-9a-f]{64}")


def _stdout_json(case: str) -> Any:
    text = (EXPECTED / f"{case}.txt").read_text()
    return json.loads(RECORD_DIGEST.sub("D", text.split("--- stdout\n", 1)[1].split("--- stderr\n", 1)[0]))


def test_a_v1_log_reads_as_the_current_one() -> None:
    """The v1 recording of the scenarios folds and replays to what the current recording
    does, transfer for transfer (the current one has scenarios added since, at the end):
    upcasting an older record changes no projection. Only the per-record digests, which
    cover the raw bytes, differ."""
    older, now = _stdout_json("status_v1_json"), _stdout_json("status_scenarios_json")
    rows = {t["transfer_id"]: t for t in now["transfers"]["transfers"]}
    assert len(older["transfers"]["transfers"]) == 16
    assert [rows[t["transfer_id"]] for t in older["transfers"]["transfers"]] == older["transfers"]["transfers"]
    older, now = _stdout_json("replay_v1_json"), _stdout_json("replay_scenarios_json")
    replayed = {t["transfer_id"]: t for t in now["transfers"]}
    assert [replayed[t["transfer_id"]] for t in older["transfers"]] == older["transfers"]
