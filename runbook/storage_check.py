"""Runbook section D (asup's own, beyond the reference): a transfer failed closed with
`io_failed`. Its step looks at the storage the failure names as it is now — the
directory there, whether it takes a write (an unnamed O_TMPFILE file, so nothing is left
behind), and its free space against the bytes still to move — next to what was recorded."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from pathlib import Path

from engine.object_url import parse_target
from events.errors import AsupError
from events.jetstream.url import is_url
from events.observations import Intent, StoreFailed


def directory_of(failed: StoreFailed, intent: Intent | None) -> Path:
    """Where the failure happened: the recorded absolute path's directory when the intent
    has one (the failure's own path is as the CLI was given it, relative to its cwd)."""
    recorded = intent.source_path if failed.where == "source" and intent else intent.target_path if intent else ""
    return Path(recorded or failed.path or ".").parent


def bucket_now(target: str) -> tuple[bool, str]:
    """(a server of the bucket takes a connection now, what was found) for an object-store
    target: a TCP connect, no request (the triage reads, it asks the store nothing)."""
    try:
        bucket, _ = parse_target(target)
    except AsupError as exc:
        return False, f"{target}: {exc.message}"
    for server in bucket.url.servers:
        host, _, port = server.removeprefix("nats://").rpartition(":")
        with contextlib.suppress(OSError), socket.create_connection((host, int(port)), timeout=1.0):
            return True, f"{target}: the object store's server {host}:{port} takes a connection now"
    return False, f"{target}: none of the object store's servers takes a connection now"


def takes_a_write(directory: Path) -> str | None:
    """None when a file can be created in `directory` now, else why not (the OS's words)."""
    try:
        fd = os.open(directory, os.O_TMPFILE | os.O_WRONLY, 0o600)
    except OSError as exc:
        if exc.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
            return (exc.strerror or str(exc)).lower()
        return None if os.access(directory, os.W_OK) else "permission denied"
    with contextlib.suppress(OSError):
        os.close(fd)
    return None


def free_bytes(directory: Path) -> int:
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


def storage_now(failed: StoreFailed, intent: Intent | None, committed: int) -> tuple[bool, str]:
    """(healthy now, what was found) for the storage `failed` names."""
    if failed.where == "target" and intent is not None and is_url(intent.target_path):
        return bucket_now(intent.target_path)
    directory = directory_of(failed, intent)
    if not directory.is_dir():
        return False, f"{directory} is not a directory now"
    if failed.where == "source":
        source = Path(intent.source_path) if intent and intent.source_path else None
        readable = source is not None and os.access(source, os.R_OK)
        return readable, f"{directory}: the source is {'readable' if readable else 'not readable'} now"
    why = takes_a_write(directory)
    need = max(0, (intent.size if intent else 0) - committed)
    free = free_bytes(directory)
    found = f"{directory}: {'takes a write' if why is None else why}, {free} bytes free, {need} still to move"
    return why is None and free >= need, found
