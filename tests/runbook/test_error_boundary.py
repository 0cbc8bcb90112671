"""The error boundary: OS failures, a gate run that cannot complete and a failed decode
drill reach the operator as one `asup: FILE: code: message` line with a documented exit
code, never a traceback. The failures are real paths (a parent that is a regular file, a
target that is a directory), which stop root as well as anyone."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from engine import durability
from events.errors import AsupError, ErrorCode, ExitCode
from projections.artifact_paths import ArtifactPaths
from runbook import evidence
from runbook.gates import performance
from tests.projections.helpers import flip_fragment, invoke


def _one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("asup: "), stderr
    return lines[0]


@pytest.fixture
def log(tmp_path: Path) -> Path:
    """A log written by `asup scenario run`."""
    path = tmp_path / "log.jsonl"
    assert invoke("scenario", "run", "success", "--log", str(path)).exit_code == 0
    return path


@pytest.mark.parametrize("command", ["trace", "replay"])
def test_output_under_a_regular_file_is_one_usage_line(log: Path, tmp_path: Path, command: str) -> None:
    """`trace -o` / `replay --trace` into a path under a regular file exits 2 with one line naming the directory."""
    (tmp_path / "plain").write_bytes(b"")
    out = tmp_path / "plain" / "trace.jsonl"
    flag = "-o" if command == "trace" else "--trace"
    result = invoke(command, str(log), flag, str(out))
    assert result.exit_code == ExitCode.USAGE
    assert _one_error_line(result.stderr) == f"asup: {out.parent}: usage: cannot create the directory: File exists"


def test_gate_report_that_cannot_be_replaced_is_one_usage_line(tmp_path: Path) -> None:
    """A gate whose report path is occupied by a directory exits 2 naming the report, and records no gate event."""
    paths = ArtifactPaths(tmp_path / "root")
    report = paths.gates / "asupersync_capability_gate_report_v1.json"
    report.mkdir(parents=True)
    result = invoke("gate", "capability", "--root", str(paths.root))
    assert result.exit_code == ExitCode.USAGE
    assert _one_error_line(result.stderr).startswith(f"asup: {report}: usage: refusing to replace a directory")
    assert not paths.ops_log.exists()


def test_sync_into_a_path_under_a_regular_file_is_one_line(tmp_path: Path) -> None:
    """`asup sync` whose target directory runs through a regular file ends with one error line, not a traceback."""
    source = tmp_path / "src.bin"
    source.write_bytes(b"x" * 10_000)
    (tmp_path / "plain").write_bytes(b"")
    result = invoke(
        "sync", str(source), str(tmp_path / "plain" / "out.bin"), "--artifact-class", "conformance_fixture_bundle", "--mode", "strict",
        "--log", str(tmp_path / "log.jsonl"),
    )  # fmt: skip
    assert result.exit_code == ExitCode.USAGE
    assert str(tmp_path / "plain") in _one_error_line(result.stderr)


def _never_runs(variant: str, work: Callable[[], None]) -> float:
    return 1.0


def test_performance_run_that_does_not_complete_is_gate_failed() -> None:
    """A performance run whose transfer never completes raises gate_failed (exit 1) naming the run, not RuntimeError."""
    with pytest.raises(AsupError) as info:
        performance.run(pairs=2, warmup=0, size=4096, measure=_never_runs)
    assert info.value.code is ErrorCode.GATE_FAILED and info.value.exit_code == ExitCode.CHECK_FAILED
    assert "performance run 0-baseline did not complete (never ran)" in info.value.one_line()


def test_failed_decode_drill_is_recorded_not_raised(tmp_path: Path) -> None:
    """A drill with more than m damaged fragments fails closed: recorded as ok=false with the AsupError's line as detail."""
    paths = ArtifactPaths(tmp_path / "root")
    paths.v1.mkdir(parents=True)
    paths.pack.write_bytes(json.dumps({"rows": list(range(300))}).encode())
    evidence.encode_sidecar(paths, paths.pack, k=4, m=2, codec="isa_l_rs_vand")
    for index in (0, 1, 2):
        flip_fragment(paths.sidecar, index)
    event = evidence.run_drill(paths, paths.sidecar, paths.recovered, seed=1)
    assert not event.ok
    assert event.detail.startswith("corrupt_record: only 3 verified fragments, 4 needed")
    assert not paths.recovered.exists()
    assert durability.load_manifest(paths.sidecar).decode_proofs == []
