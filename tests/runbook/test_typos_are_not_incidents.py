"""Malformed input is a usage error that records nothing: a typo in an artifact class used to
be an `unsupported_capability` incident (P0), a malformed checksum an
`integrity_precheck_failed` one (P1) with the bad string stored in the intent."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli import run_asup

SYNC = ["sync", "src.bin", "out/x.bin", "--mode", "strict", "--log", "t.jsonl"]


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--artifact-class", "conformance_fixture_bundl"], "unknown artifact class 'conformance_fixture_bundl'"),
        (["--artifact-class", "migration_manifest", "--expected-checksum", "blake3:zz"], "is not a checksum"),
        (["--artifact-class", "migration_manifest", "--expected-checksum", "sha256:" + "0" * 64], "is not a checksum"),
        (["--artifact-class", "migration_manifest", "--seed", str(2**64)], "beyond 64 bits"),
        (["--artifact-class", "migration_manifest", "--adapter", "ful"], "unknown adapter profile 'ful'"),
    ],
)
def test_a_typo_is_a_usage_error_and_nothing_is_recorded(tmp_path: Path, extra: list[str], says: str) -> None:
    (tmp_path / "src.bin").write_bytes(b"x" * 5000)
    done = run_asup(*SYNC, *extra, cwd=tmp_path)
    assert done.returncode == 2, done.stdout + done.stderr
    assert says in done.stderr and done.stderr.count("\n") == 1
    assert not (tmp_path / "t.jsonl").exists() and not (tmp_path / "out").exists()


def test_a_well_formed_checksum_that_differs_is_still_the_precheck_outcome(tmp_path: Path) -> None:
    (tmp_path / "src.bin").write_bytes(b"x" * 5000)
    done = run_asup(*SYNC, "--artifact-class", "migration_manifest", "--expected-checksum", "blake3:" + "0" * 64, cwd=tmp_path)
    assert done.returncode == 1 and "integrity_precheck_failed" in done.stdout + done.stderr
