"""What a transfer leaves beside its target, and what an operator sees while it runs.

After its terminal state is recorded a transfer tidies up: a completed one leaves only the
artifact (no lease, checkpoint or temp file), a failed one leaves what a resume or an
operator needs (its bytes and checkpoint) but no empty temp file and no lease file. The
lease file is removed only while its flock is held, and a taker that locked a removed file
opens the name again, so two holders never coexist. A long sync shows a progress bar on a
terminal, never in a pipe. A resume that cannot be honoured is refused before anything is
recorded.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from engine.directory_target import DirectoryHandle
from engine.layout import Layout
from engine.stores import DirectoryStore
from events.observations import BundleFile
from tests.cli import asup_argv, run_asup

CLASS = ("--artifact-class", "conformance_fixture_bundle", "--mode", "hardened")


def beside(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_a_completed_sync_leaves_only_the_artifact(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(os.urandom(300_000))
    done = run_asup("sync", "a.bin", "out/a.bin", *CLASS, "--chunk-size", "65536", "--log", "l.jsonl", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert beside(tmp_path / "out") == ["a.bin"]


def test_a_conflict_at_the_final_name_leaves_no_empty_temp_file(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(os.urandom(100_000))
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.bin").write_bytes(b"someone else's")
    done = run_asup("sync", "a.bin", "out/a.bin", *CLASS, "--log", "l.jsonl", cwd=tmp_path)
    assert done.returncode == 1 and "conflict_detected" in done.stdout
    assert beside(tmp_path / "out") == ["a.bin"]
    assert (tmp_path / "out" / "a.bin").read_bytes() == b"someone else's"


def test_a_failed_transfer_keeps_its_bytes_and_checkpoint_but_not_its_lease_file(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(os.urandom(300_000))
    argv = ("sync", "a.bin", "out/a.bin", "--artifact-class", "conformance_fixture_bundle", "--mode", "strict")
    done = run_asup(*argv, "--chunk-size", "65536", "--fault", "interruption@2", "--log", "l.jsonl", cwd=tmp_path)
    assert done.returncode == 1 and "retry_exhausted" in done.stdout
    assert beside(tmp_path / "out") == [".a.bin.asup-ckpt.json", ".a.bin.asup-tmp"]
    assert (tmp_path / "out" / ".a.bin.asup-tmp").stat().st_size == 2 * 65536


def test_a_lease_removed_while_a_taker_waited_is_taken_afresh_never_twice(tmp_path: Path) -> None:
    """The taker locked the inode its holder then unlinked: it opens the name again and holds
    the new file's lock, so a third taker is refused."""
    store = DirectoryStore(tmp_path)
    layout = Layout([BundleFile("", 10, "blake3:" + "0" * 64)])
    first = store.open("a.bin", layout, "file")
    lease = first.lease("first")
    assert lease is not None
    second = store.open("a.bin", layout, "file")
    assert isinstance(second, DirectoryHandle)
    real_flock = second._flock
    calls: list[int] = []

    def flock_after_the_holder_left(fd: int) -> bool:
        if not calls:  # the holder tidies up (unlinking the name under its lock) and leaves meanwhile
            first.tidy(completed=True)
            lease.release()
        calls.append(fd)
        return real_flock(fd)

    second._flock = flock_after_the_holder_left  # type: ignore[method-assign]
    taken = second.lease("second")
    assert taken is not None and len(calls) == 2, "the orphaned inode's lock did not count"
    third = store.open("a.bin", layout, "file")
    assert third.lease("third") is None
    assert (tmp_path / ".a.bin.asup-lease").is_file()
    for handle in (first, second, third):
        handle.close()


def test_a_long_sync_shows_a_progress_bar_on_a_terminal_only(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(os.urandom(8_000_000))
    argv = asup_argv("sync", "a.bin", "out/a.bin", *CLASS, "--chunk-size", "65536", "--log", "l.jsonl")
    main, other = os.openpty()
    env = {**os.environ, "COLUMNS": "120", "TERM": "xterm"}
    env.pop("NO_COLOR", None)
    with Path(os.devnull).open("rb") as stdin:
        proc = subprocess.run(argv, cwd=tmp_path, stdin=stdin, stdout=subprocess.DEVNULL, stderr=other, env=env, timeout=120, check=False)
    os.close(other)
    seen = b""
    try:
        while chunk := os.read(main, 65536):
            seen += chunk
    except OSError:  # EIO: the terminal's other side is closed and drained
        pass
    os.close(main)
    assert proc.returncode == 0
    assert "━".encode() in seen and b"MB" in seen, seen[-400:]
    piped = run_asup("sync", "a.bin", "out/b.bin", *CLASS, "--chunk-size", "65536", "--log", "l.jsonl", cwd=tmp_path)
    assert piped.returncode == 0 and piped.stderr == ""


def test_a_resume_that_cannot_be_honoured_records_nothing(tmp_path: Path) -> None:
    """A missing checkpoint, one that is not JSON and a directory in its place: exit 2, one
    line naming it, the log byte for byte as it was."""
    (tmp_path / "a.bin").write_bytes(os.urandom(50_000))
    assert run_asup("sync", "a.bin", "out/a.bin", *CLASS, "--log", "l.jsonl", cwd=tmp_path).returncode == 0
    before = (tmp_path / "l.jsonl").read_bytes()
    (tmp_path / "garbage.json").write_text("not a checkpoint")
    (tmp_path / "dir.json").mkdir()
    for checkpoint in ("missing.json", "garbage.json", "dir.json"):
        done = run_asup("sync", "a.bin", "out/c.bin", *CLASS, "--log", "l.jsonl", "--resume", checkpoint, cwd=tmp_path)
        assert done.returncode == 2, (checkpoint, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and checkpoint in done.stderr and "Traceback" not in done.stderr
        assert (tmp_path / "l.jsonl").read_bytes() == before, checkpoint


def test_clean_removes_what_nothing_needs_and_keeps_what_a_resume_needs(tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(os.urandom(300_000))
    argv = ("sync", "a.bin", "out/a.bin", "--artifact-class", "conformance_fixture_bundle", "--mode", "strict")
    assert run_asup(*argv, "--chunk-size", "65536", "--fault", "interruption@2", "--log", "l.jsonl", cwd=tmp_path).returncode == 1
    out = tmp_path / "out"
    (out / ".b.bin.asup-tmp").write_bytes(b"")  # an empty temp and a lease file a killed process left
    (out / ".b.bin.asup-lease").write_text("{}")
    (out / ".c.bin.asup-leftovers-1").mkdir()
    dry = run_asup("clean", "out/a.bin", "out/b.bin", "out/c.bin", "--dry-run", "--json", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert beside(out) == [".a.bin.asup-ckpt.json", ".a.bin.asup-tmp", ".b.bin.asup-lease", ".b.bin.asup-tmp", ".c.bin.asup-leftovers-1"]
    done = run_asup("clean", "out/a.bin", "out/b.bin", "out/c.bin", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert beside(out) == [".a.bin.asup-ckpt.json", ".a.bin.asup-tmp", ".c.bin.asup-leftovers-1"]
    discarded = run_asup("clean", "out/a.bin", "--discard", cwd=tmp_path)
    assert discarded.returncode == 0 and beside(out) == [".c.bin.asup-leftovers-1"]


def test_clean_leaves_a_target_in_use_alone(tmp_path: Path) -> None:
    (tmp_path / ".a.bin.asup-tmp").write_bytes(b"")
    store = DirectoryStore(tmp_path)
    handle = store.open("a.bin", Layout([BundleFile("", 10, "blake3:" + "0" * 64)]), "file")
    assert handle.lease("a running transfer") is not None
    try:
        done = run_asup("clean", "a.bin", cwd=tmp_path)
        assert done.returncode == 1 and "in use" in done.stderr and len(done.stderr.strip().splitlines()) == 1
        assert beside(tmp_path) == [".a.bin.asup-lease", ".a.bin.asup-tmp"]
    finally:
        handle.close()
