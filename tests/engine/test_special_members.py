"""Nothing is dropped or followed silently: a bundle member that is not a regular file or a
directory is refused before anything is recorded, and `asup evidence build` never follows a
link (or reads a FIFO) in its root: it refuses, naming it, and seals nothing."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

from engine.stores import DirectoryStore
from events.errors import AsupError, ErrorCode
from tests.cli import run_asup


def _bundle(tmp_path: Path) -> Path:
    bundle = tmp_path / "src" / "bundle"
    (bundle / "sub").mkdir(parents=True)
    (bundle / "a.bin").write_bytes(b"a" * 1000)
    (bundle / "sub" / "b.bin").write_bytes(b"b" * 2000)
    return bundle


def _plant(where: Path, kind: str, outside: Path) -> None:
    if kind == "FIFO":
        os.mkfifo(where)
    elif kind == "socket":
        server = socket.socket(socket.AF_UNIX)
        server.bind(str(where))
        server.close()
    elif kind == "symlink":
        where.symlink_to(outside)


@pytest.mark.parametrize("kind", ["FIFO", "socket", "symlink"])
def test_a_bundle_member_that_is_not_a_regular_file_is_refused(tmp_path: Path, kind: str) -> None:
    """The manifest names the member and what it is; a FIFO never blocks the read."""
    bundle = _bundle(tmp_path)
    outside = tmp_path / "outside.bin"
    outside.write_bytes(b"secret")
    _plant(bundle / "sub" / "odd", kind, outside)
    store = DirectoryStore(tmp_path / "src")
    with pytest.raises(AsupError) as refused:
        store.manifest("bundle")
    assert refused.value.code is ErrorCode.USAGE and refused.value.file == str(bundle / "sub" / "odd")
    assert kind.lower() in refused.value.message.lower() or "socket" in refused.value.message


def test_sync_of_a_bundle_with_a_fifo_is_one_usage_line_and_records_nothing(tmp_path: Path) -> None:
    """Through the CLI: exit 2, one line naming the FIFO, no log written, no target."""
    bundle = _bundle(tmp_path)
    os.mkfifo(bundle / "pipe")
    log = tmp_path / "logs" / "t.jsonl"
    run = run_asup(
        "sync", str(bundle), str(tmp_path / "out" / "bundle"), "--artifact-class", "conformance_fixture_bundle", "--mode", "strict",
        "--log", str(log), cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert run.stderr.count("\n") == 1 and "pipe" in run.stderr and "FIFO" in run.stderr and "Traceback" not in run.stderr
    assert not log.exists() and not (tmp_path / "out" / "bundle").exists()


@pytest.mark.parametrize("kind", ["symlink", "FIFO"])
def test_evidence_build_never_follows_a_link_out_of_its_root(tmp_path: Path, kind: str) -> None:
    """A link to a file outside the root (or a FIFO) in the evidence root: exit 2 naming it, no pack, the outside file unread."""
    root = tmp_path / "root"
    (root / "asupersync" / "v1").mkdir(parents=True)
    (root / "notes.txt").write_text("kept")
    outside = tmp_path / "outside.secret"
    outside.write_bytes(b"not for the pack")
    _plant(root / "planted", kind, outside)
    run = run_asup("evidence", "build", "--root", str(root), cwd=tmp_path)
    assert run.returncode == 2, run.stderr
    assert "planted" in run.stderr and "evidence root" in run.stderr and "Traceback" not in run.stderr
    assert not (root / "asupersync" / "v1" / "asupersync_final_evidence_pack_v1.json").exists()
    assert outside.read_bytes() == b"not for the pack"
