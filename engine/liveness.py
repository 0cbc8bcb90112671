"""Who holds a transfer's lease, and whether anyone still does.

The lease file `.NAME.asup-lease` beside a directory target holds one small JSON object
naming its holder (`LeaseHolder`): the transfer, the pid, the host, when the lease was taken
and the kernel's boot id, so a pid reused after a reboot is not taken for the holder. The
flock on it is what holds the lease; the text only says who took it last.

`check(target_path)` asks, from the outside and without creating or writing anything:

    held      an flock on the lease file is held: a live process is running the transfer
    stale     no live holder: the lock is free, the lease file is gone, or what is at its
              name is not asup's (a link, a FIFO: no asup process can hold a lease there)
    unknown   no target path recorded (a v1 log, a library caller), or the lease was taken
              on another host, where only a JetStream lease could tell

`check_kv(probe)` asks the same of a lease in a JetStream KV bucket (`engine.kv_leases`):
held while its entry lives, stale once it expired (its holder stopped renewing) or was
released, unknown when the bucket cannot be asked. `check` asks it for a target path
`nats://HOST:PORT/BUCKET#NAME` (an object-store target).

The probe takes `LOCK_SH|LOCK_NB` for an instant on an `O_RDONLY|O_NOFOLLOW|O_NONBLOCK`
descriptor, after `lstat` shows a regular file: a symlink is never followed, a FIFO or a
device is never opened. A lease taker racing the probe retries (see
`engine.directory_target`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shlex
import socket
import stat
from collections.abc import Iterable
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import msgspec

from engine.rules import default_rules
from events.atomic import describe
from events.clock import format_ts
from events.errors import AsupError
from events.fs import OS, FileSystem

BOOT_ID = Path("/proc/sys/kernel/random/boot_id")
MAX_LEASE = 4096  # bytes: a lease file longer than this is not one asup wrote
_DIR = os.O_RDONLY | os.O_DIRECTORY


class Liveness(StrEnum):
    HELD = "held"
    STALE = "stale"
    UNKNOWN = "unknown"


class LeaseHolder(msgspec.Struct, frozen=True, kw_only=True):
    """What a lease file says about the process that took it."""

    transfer_id: str
    pid: int
    host: str
    started: str  # UTC, RFC 3339, when the lease was taken
    boot_id: str = ""  # "" where /proc does not tell


class Verdict(msgspec.Struct, frozen=True):
    liveness: Liveness
    detail: str  # why, in an operator's words
    holder: LeaseHolder | None = None  # what the lease file says, when it could be read


def boot_id() -> str:
    try:
        return BOOT_ID.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""


def holder_for(transfer_id: str, at_ns: int) -> str:
    """The lease text for `transfer_id`, taken now by this process at clock reading `at_ns`."""
    held = LeaseHolder(transfer_id=transfer_id, pid=os.getpid(), host=socket.gethostname(), started=format_ts(at_ns), boot_id=boot_id())
    return msgspec.json.encode(held).decode()


def parse_holder(data: bytes) -> LeaseHolder | None:
    """The holder a lease file names; None for anything else (an older asup wrote the bare
    transfer id; a reader racing the writer may see a torn object)."""
    try:
        return msgspec.json.decode(data, type=LeaseHolder)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def describe_holder(data: bytes) -> str:
    """The `holder` of a `lease_checked` that found the lease taken: pid, host, since."""
    held = parse_holder(data)
    if held is None:
        return "another transfer"
    return f"pid {held.pid} on {held.host} since {held.started} (transfer {held.transfer_id})"


def lease_path(target_path: str) -> Path:
    target = Path(target_path)
    return target.with_name(f".{target.name}.asup-lease")


def check(target_path: str, *, fs: FileSystem = OS, host: str | None = None) -> Verdict:
    """Whether the transfer writing `target_path` still has a live lease holder (see the module docstring)."""
    if not target_path:
        return Verdict(Liveness.UNKNOWN, "no target path recorded (an older log or a library caller)")
    if target_path.startswith("nats://"):
        return _check_object_target(target_path)
    path = lease_path(target_path)
    try:
        dir_fd = fs.open(str(path.parent), _DIR)
    except FileNotFoundError:
        return Verdict(Liveness.STALE, f"no lease file: {path.parent} is gone")
    except OSError as exc:
        return Verdict(Liveness.UNKNOWN, f"cannot read {path.parent}: {os.strerror(exc.errno or 0)}")
    try:
        return _probe(fs, dir_fd, path, host if host is not None else socket.gethostname())
    finally:
        with contextlib.suppress(OSError):
            fs.close(dir_fd)


def _probe(fs: FileSystem, dir_fd: int, path: Path, host: str) -> Verdict:
    try:
        st = fs.stat(path.name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return Verdict(Liveness.STALE, f"no lease file at {path}")
    except OSError as exc:
        return Verdict(Liveness.UNKNOWN, f"cannot read {path}: {os.strerror(exc.errno or 0)}")
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        return Verdict(Liveness.STALE, f"{describe(st)} at the lease name {path}: not a lease asup holds")
    try:
        fd = fs.open(path.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=dir_fd)
    except FileNotFoundError:
        return Verdict(Liveness.STALE, f"no lease file at {path}")
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENXIO):  # swapped for a link or a special file since the lstat
            return Verdict(Liveness.STALE, f"a link or special file at the lease name {path}: not a lease asup holds")
        return Verdict(Liveness.UNKNOWN, f"cannot read {path}: {os.strerror(exc.errno or 0)}")
    try:
        return _locked(fs, fd, path, host)
    except OSError as exc:
        return Verdict(Liveness.UNKNOWN, f"cannot read {path}: {os.strerror(exc.errno or 0)}")
    finally:
        with contextlib.suppress(OSError):
            fs.close(fd)  # drops the probe's shared lock, if it got one


def _locked(fs: FileSystem, fd: int, path: Path, host: str) -> Verdict:
    st = fs.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        return Verdict(Liveness.STALE, f"{describe(st)} at the lease name {path}: not a lease asup holds")
    held = parse_holder(fs.pread(fd, MAX_LEASE, 0)) if st.st_size <= MAX_LEASE else None
    if held is not None and held.host != host:
        # an flock here says nothing about a process on another host
        return Verdict(Liveness.UNKNOWN, f"the lease was taken on {held.host}, not {host}", held)
    try:
        fs.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        who = f"pid {held.pid} since {held.started}" if held is not None else "a live process"
        return Verdict(Liveness.HELD, f"the lease is held ({who})", held)
    except OSError as exc:
        return Verdict(Liveness.UNKNOWN, f"cannot lock {path}: {os.strerror(exc.errno or 0)}", held)
    gone = f"its holder, pid {held.pid} on {held.host} since {held.started}, is gone" if held is not None else "its holder is gone"
    return Verdict(Liveness.STALE, f"nobody holds the lease: {gone}", held)


class KvProbe(Protocol):
    """A lease kept in a JetStream KV bucket (`engine.kv_leases.KvLeases.probe`)."""

    name: str

    def held_by(self) -> bytes | None:
        """The live entry's value (the holder JSON), None when nobody holds it; an AsupError when the bucket cannot be asked."""
        ...


def check_kv(probe: KvProbe) -> Verdict:
    """Whether a KV lease is held: an entry lives only while its holder renews it, so no
    entry means its holder released it or stopped renewing (died) more than a TTL ago."""
    try:
        value = probe.held_by()
    except AsupError as exc:
        return Verdict(Liveness.UNKNOWN, f"cannot ask the lease bucket: {exc}")
    if value is None:
        return Verdict(Liveness.STALE, f"no live lease {probe.name}: its holder released it or stopped renewing it (it expired)")
    held = parse_holder(value)
    who = f"pid {held.pid} on {held.host} since {held.started}" if held is not None else "another transfer"
    # a server cannot tell a live holder from one that died less than a TTL ago
    return Verdict(Liveness.HELD, f"the lease {probe.name} is held ({who}; it lapses a TTL after its holder stops renewing it)", held)


def _check_object_target(target_path: str) -> Verdict:
    """An object-store target's KV lease (`engine.object_store.ObjectStore.target_path`)."""
    from engine.kv_leases import target_probe  # only an object-store target pays for the NATS client

    try:
        probe = target_probe(target_path)
    except AsupError as exc:
        return Verdict(Liveness.UNKNOWN, exc.message)
    try:
        return check_kv(probe)
    finally:
        with contextlib.suppress(AsupError):
            probe.close()


class Viewed(Protocol):
    """What the stale check needs of a transfer's view (`projections.transfers.TransferView`)."""

    transfer_id: str
    state: Any
    target: str
    target_path: str
    started: str
    suspended: bool


def of_transfer(view: Viewed) -> Verdict | None:
    """The transfer's liveness now; None for a terminal one (nothing left to hold) and for a
    suspended one (stopped on purpose, its lease released: `suspended` says so already)."""
    if default_rules().is_terminal(view.state) or view.suspended:
        return None
    return check(view.target_path)


def resume_command(transfer_id: str, log: Path | str) -> str:
    """The command that continues a suspended, stale or io_failed transfer, quoted to paste into a shell."""
    return shlex.join(["asup", "resume", transfer_id, "--log", str(log)])


def stale_facts(views: Iterable[Viewed], log: Path | str) -> list[dict[str, Any]]:
    """One fact per stale transfer of `log`: what escalation's `stale_transfer` rule and
    triage report."""
    facts = []
    for view in sorted(views, key=lambda v: v.transfer_id):
        verdict = of_transfer(view)
        if verdict is not None and verdict.liveness is Liveness.STALE:
            facts.append(
                {
                    "log": str(log),
                    "transfer_id": view.transfer_id,
                    "state": str(view.state),
                    "target": view.target_path or view.target,
                    "started": view.started,
                    "detail": verdict.detail,
                    "resume_command": resume_command(view.transfer_id, log),
                }
            )
    return facts
