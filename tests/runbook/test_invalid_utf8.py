"""Invalid UTF-8 inside a JSON string is bad input like any other: msgspec raises a bare
UnicodeDecodeError for it, which used to escape as a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli import run_asup
from tests.golden.cases import redigest

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "logs" / "scenarios.jsonl"
BAD = b"\xf4\x80"  # a truncated 4-byte sequence
SYNC = ["sync", "a.bin", "b.bin", "--artifact-class", "migration_manifest", "--mode", "strict"]


def test_digest_valid_line_with_invalid_utf8_is_corrupt(tmp_path: Path) -> None:
    """A re-sealed last record holding invalid UTF-8 is reported as corrupt with its line, exit 1."""
    lines = GOLDEN.read_bytes().splitlines(keepends=True)
    forged = redigest(lines[-1].replace(b'"data":{"transfer_id":"', b'"data":{"transfer_id":"' + BAD, 1))
    (tmp_path / "log.jsonl").write_bytes(b"".join([*lines[:-1], forged]))
    result = run_asup("log", "verify", "log.jsonl", cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"log.jsonl:{len(lines)}: corrupt_record" in result.stdout


@pytest.mark.parametrize(
    ("name", "argv"),
    [
        ("batch.jsonl", ["sync-batch", "batch.jsonl"]),
        ("plan.json", [*SYNC, "--fault-file", "plan.json"]),
        ("intent.json", [*SYNC, "--intent", "intent.json"]),
    ],
)
def test_operator_files_with_invalid_utf8_are_usage_errors(tmp_path: Path, name: str, argv: list[str]) -> None:
    """A batch, fault plan or intent file with invalid UTF-8 in a string is one usage line naming
    the file, exit 2, and nothing is recorded."""
    (tmp_path / "a.bin").write_bytes(b"payload\n")
    (tmp_path / name).write_bytes(b'{"source":"a' + BAD + b'"}\n')
    result = run_asup(*argv, "--log", "t.jsonl", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("asup: ") and name in result.stderr and result.stderr.count("\n") == 1
    assert not (tmp_path / "t.jsonl").exists()
