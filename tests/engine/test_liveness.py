"""The stale check (`engine.liveness`): held while an flock is held, stale once nobody holds
it or the lease is gone, unknown without a path or for another host's lease; it never
creates, writes, follows a link or blocks on a FIFO, whatever is planted at the lease name."""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import threading
from collections import Counter
from pathlib import Path

import msgspec

from engine.directory_target import DirectoryHandle, Generations
from engine.layout import Layout
from engine.liveness import Liveness, Verdict, check, holder_for, lease_path, parse_holder
from engine.stores import DirectoryStore
from events.observations import BundleFile
from events.testing import FaultyFS
from tests.reliability.crashloop import report

NAME = "a.bin"
LAYOUT = Layout([BundleFile("", 4, "blake3:-")])
READ_ONLY_OPS = {"open", "close", "stat", "fstat", "pread", "flock"}


def handle(root: Path) -> DirectoryHandle:
    opened = DirectoryStore(root).open(NAME, LAYOUT, "file")
    assert isinstance(opened, DirectoryHandle)
    return opened


def checked(target: Path, fs: FaultyFS | None = None) -> Verdict:
    """`check`, in a thread: a probe that blocked (a FIFO opened for reading) fails the test instead of hanging it."""
    out: list[Verdict] = []
    probe = threading.Thread(target=lambda: out.append(check(str(target)) if fs is None else check(str(target), fs=fs)), daemon=True)
    probe.start()
    probe.join(10)
    assert not probe.is_alive(), "the stale check blocked"
    return out[0]


def test_the_lease_file_names_its_holder(tmp_path: Path) -> None:
    h = handle(tmp_path)
    lease = h.lease(holder_for("t-1", 1_780_000_000_000_000_000))
    assert lease is not None
    held = json.loads((tmp_path / f".{NAME}.asup-lease").read_bytes())
    assert held["transfer_id"] == "t-1" and held["pid"] == os.getpid() and held["host"] == socket.gethostname()
    assert held["started"] == "2026-05-28T20:26:40.000000Z"
    boot = Path("/proc/sys/kernel/random/boot_id")
    assert held["boot_id"] == (boot.read_text().strip() if boot.exists() else "")
    lease.release()
    h.close()


def test_a_held_lease_is_held_and_a_released_one_stale(tmp_path: Path) -> None:
    target = tmp_path / NAME
    h = handle(tmp_path)
    lease = h.lease(holder_for("t-1", 0))
    assert lease is not None
    verdict = checked(target)
    assert verdict.liveness is Liveness.HELD and f"pid {os.getpid()}" in verdict.detail
    assert h.lease(holder_for("t-2", 0)) is None  # the probe let go at once: still one holder, and it is the first
    lease.release()
    verdict = checked(target)
    assert verdict.liveness is Liveness.STALE and "is gone" in verdict.detail
    again = h.lease(holder_for("t-3", 0))  # and the probe never keeps a stale lease from being taken
    assert again is not None
    again.release()
    h.close()


def test_no_lease_no_directory_and_no_path(tmp_path: Path) -> None:
    assert checked(tmp_path / NAME).liveness is Liveness.STALE
    assert checked(tmp_path / "gone" / NAME).liveness is Liveness.STALE
    assert check("").liveness is Liveness.UNKNOWN


def test_another_hosts_lease_is_unknown_and_an_older_asups_is_judged_by_its_lock(tmp_path: Path) -> None:
    lease = tmp_path / f".{NAME}.asup-lease"
    other = {"transfer_id": "t-1", "pid": 1, "host": "elsewhere.example", "started": "2026-05-28T20:26:40.000000Z"}
    lease.write_text(json.dumps(other))
    verdict = checked(tmp_path / NAME)
    assert verdict.liveness is Liveness.UNKNOWN and "elsewhere.example" in verdict.detail
    lease.write_text("t-1")  # what an asup before this one wrote: no host, so the lock decides
    assert checked(tmp_path / NAME).liveness is Liveness.STALE
    fd = os.open(lease, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        assert checked(tmp_path / NAME).liveness is Liveness.HELD
    finally:
        os.close(fd)


def test_the_check_only_reads(tmp_path: Path) -> None:
    """Through FaultyFS: no call that creates, writes, truncates, links or removes, and no O_CREAT."""
    h = handle(tmp_path)
    lease = h.lease(holder_for("t-1", 0))
    assert lease is not None
    for expected in (Liveness.HELD, Liveness.STALE):
        fs = FaultyFS()
        before = sorted(p.name for p in tmp_path.iterdir())
        assert check(str(tmp_path / NAME), fs=fs).liveness is expected
        assert {c.op for c in fs.trace} <= READ_ONLY_OPS
        assert not any("O_CREAT" in c.detail or "O_WRONLY" in c.detail or "O_RDWR" in c.detail for c in fs.calls("open"))
        assert sorted(p.name for p in tmp_path.iterdir()) == before
        lease.release()
    h.close()
    fs = FaultyFS()
    assert check(str(tmp_path / "absent.bin"), fs=fs).liveness is Liveness.STALE and not (tmp_path / ".absent.bin.asup-lease").exists()


def test_a_failing_read_is_unknown_never_an_error(tmp_path: Path) -> None:
    h = handle(tmp_path)
    lease = h.lease(holder_for("t-1", 0))
    assert lease is not None
    counting = FaultyFS()
    check(str(tmp_path / NAME), fs=counting)
    counts: Counter[str] = Counter()
    for n in range(1, counting.counted() + 1):
        fs = FaultyFS()
        fs.fail_at(n, errno.EIO)
        verdict = check(str(tmp_path / NAME), fs=fs)
        counts[verdict.liveness.value] += 1
        assert verdict.liveness is not Liveness.STALE, f"call {n} failing made a held lease look stale"
    lease.release()
    h.close()
    counts["faulted checks"] = counting.counted()
    report("a stale check's call failing (lease held)", counts)


def _plant(kind: str, at: Path, outside: Path, held_fd: list[int]) -> None:
    if kind == "symlink to a held lease":
        # if the check followed the link it would find the flock and say held
        outside.write_text(json.dumps({"transfer_id": "x", "pid": 1, "host": socket.gethostname(), "started": ""}))
        fd = os.open(outside, os.O_RDONLY)
        fcntl.flock(fd, fcntl.LOCK_EX)
        held_fd.append(fd)
        at.symlink_to(outside)
    elif kind == "dangling symlink":
        at.symlink_to(outside.with_name("nothing"))
    elif kind == "FIFO":
        os.mkfifo(at)
    elif kind == "symlink to a FIFO":
        os.mkfifo(outside)
        at.symlink_to(outside)
    elif kind == "hardlink":
        outside.write_text("t-1")
        os.link(outside, at)
    elif kind == "directory":
        at.mkdir()
    else:
        raise AssertionError(kind)


PLANTED = ["symlink to a held lease", "dangling symlink", "FIFO", "symlink to a FIFO", "hardlink", "directory"]


def test_something_planted_at_the_lease_name_is_never_followed_or_blocked_on(tmp_path: Path) -> None:
    """Each kind planted at the lease name: judged stale (no asup process can hold a lease
    there), the link's target untouched, nothing created beside it, the probe never blocked."""
    counts: Counter[str] = Counter()
    for kind in PLANTED:
        case = tmp_path / kind.replace(" ", "-")
        (case / "target").mkdir(parents=True)
        (case / "outside").mkdir()
        at = lease_path(str(case / "target" / NAME))
        outside = case / "outside" / "thing"
        held: list[int] = []
        _plant(kind, at, outside, held)
        try:
            outside_before = outside.lstat() if os.path.lexists(outside) else None
            verdict = checked(case / "target" / NAME)
            assert verdict.liveness is Liveness.STALE and "not a lease asup holds" in verdict.detail, (kind, verdict)
            if outside_before is not None:
                after = outside.lstat()
                assert (after.st_mtime_ns, after.st_size) == (outside_before.st_mtime_ns, outside_before.st_size), kind
            assert [p.name for p in (case / "target").iterdir()] == [at.name], kind
        finally:
            for fd in held:
                os.close(fd)
        counts["judged stale, never followed or blocked on"] += 1
    counts["kinds planted"] = len(PLANTED)
    report("things planted at a lease name, checked for staleness", counts)


def test_a_lease_taker_retries_past_a_probes_instant(tmp_path: Path) -> None:
    """The probe's shared lock lasts an instant; a transfer starting in that instant must not
    take it for another holder: the taker tries again."""
    fs = FaultyFS()
    fs.fail_at(1, errno.EWOULDBLOCK, ops={"flock"})
    h = DirectoryHandle(fs, tmp_path, NAME, LAYOUT, "file", Generations())
    lease = h.lease(holder_for("t-1", 0))
    assert lease is not None and len(fs.calls("flock")) == 2
    lease.release()
    h.close()


def test_a_torn_holder_text_is_no_holder() -> None:
    assert parse_holder(b'{"transfer_id":"t-1","pid":') is None
    assert parse_holder(msgspec.json.encode({"transfer_id": "t", "pid": 1, "host": "h", "started": "s"})) is not None
