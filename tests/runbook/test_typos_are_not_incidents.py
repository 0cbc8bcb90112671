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


@pytest.mark.parametrize("chunk", ["1024", str(64 << 20)])
def test_a_chunk_size_no_class_allows_is_a_usage_error(tmp_path: Path, chunk: str) -> None:
    (tmp_path / "src.bin").write_bytes(b"x" * 5000)
    done = run_asup(*SYNC, "--artifact-class", "migration_manifest", "--chunk-size", chunk, cwd=tmp_path)
    assert done.returncode == 2 and "outside what any artifact class allows (4096..8388608)" in done.stderr
    assert not (tmp_path / "t.jsonl").exists()


def test_a_chunk_size_this_adapter_refuses_is_a_negotiation_outcome_naming_the_bound(tmp_path: Path) -> None:
    (tmp_path / "src.bin").write_bytes(b"x" * 5000)
    argv = [*SYNC, "--artifact-class", "migration_manifest", "--adapter", "small_chunks", "--chunk-size", str(1 << 20)]
    done = run_asup(*argv, "--json", cwd=tmp_path)
    assert done.returncode == 1 and "capability_mismatch" in done.stdout
    log = (tmp_path / "t.jsonl").read_text()
    assert "allows chunk_size in [4096, 65536], requested 1048576" in log


def test_an_unknown_primitive_in_an_intent_file_is_a_usage_error_naming_the_field(tmp_path: Path) -> None:
    (tmp_path / "src.bin").write_bytes(b"x" * 5000)
    intent = '{"requested": [{"id": "asupersync::remote::sync_manifset", "version": 1, "params": {}}]}'
    (tmp_path / "intent.json").write_text(intent)
    done = run_asup(*SYNC, "--artifact-class", "migration_manifest", "--intent", "intent.json", cwd=tmp_path)
    assert done.returncode == 2
    assert "unknown primitive 'asupersync::remote::sync_manifset'" in done.stderr and "$.requested[0].id" in done.stderr
    assert not (tmp_path / "t.jsonl").exists()


@pytest.mark.parametrize("target", ["bundle/copy", "bundle"])
def test_a_target_inside_the_source_bundle_is_refused(tmp_path: Path, target: str) -> None:
    (tmp_path / "bundle").mkdir()
    (tmp_path / "bundle" / "a.bin").write_bytes(b"x" * 5000)
    argv = ["sync", "bundle", target, "--artifact-class", "conformance_fixture_bundle", "--mode", "strict", "--log", "t.jsonl"]
    done = run_asup(*argv, cwd=tmp_path)
    assert done.returncode == 2 and "pick a target outside it" in done.stderr
    assert sorted(p.name for p in (tmp_path / "bundle").iterdir()) == ["a.bin"] and not (tmp_path / "t.jsonl").exists()


def test_log_verify_calls_another_tools_jsonl_not_an_asup_log(tmp_path: Path) -> None:
    (tmp_path / "other.jsonl").write_text('{"a": 1}\n{"b": 2}\n')
    done = run_asup("log", "verify", "other.jsonl", cwd=tmp_path)
    assert done.returncode == 2 and "not_an_asup_log" in done.stderr and "DAMAGED" not in done.stdout
    assert (tmp_path / "other.jsonl").read_text() == '{"a": 1}\n{"b": 2}\n'
