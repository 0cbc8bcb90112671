"""A log as the operator names it: a JSONL file's path or a `nats://` URL.

Writers get a `LogStore` from `open_store`. Readers (verify, status, replay, evidence …)
read files; for a URL, `readable` gives them a verified snapshot of the stream in a
private temporary file (the records up to its last sequence when asked), so every reader
works on both unchanged, and errors about the snapshot are reported against the URL.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import msgspec

from events.chain import DEFAULT_ID_WINDOW
from events.clock import Clock
from events.errors import AsupError, ErrorCode, ExitCode, os_error
from events.jetstream.url import LogUrl, is_url, parse
from events.scan import Problem
from events.store import LogStore
from events.vocabulary import Durability


class LogRef(msgspec.Struct, frozen=True):
    text: str  # as given: what messages name
    url: LogUrl | None = None

    @property
    def path(self) -> Path:
        """The file (a URL has none: check `url` first)."""
        assert self.url is None, f"{self.text} is a URL"
        return Path(self.text)


def log_ref(name: str | Path) -> LogRef:
    """The log `name` names; a malformed URL is a usage error before anything is opened."""
    text = str(name)
    return LogRef(text, parse(text)) if is_url(text) else LogRef(text)


def open_store(
    ref: LogRef,
    *,
    log_id: str | None = None,
    clock: Clock | None = None,
    durability: Durability = Durability.BATCH,
    lock_timeout: float | None = None,
    id_window: int = DEFAULT_ID_WINDOW,
    create: bool = True,
) -> LogStore:
    """The log open for append (created when missing and `create`)."""
    if ref.url is not None:
        from events.jetstream.log import JetStreamLog  # nats-py is imported only for a URL

        return JetStreamLog.open(ref.url, log_id=log_id, clock=clock, id_window=id_window, create=create)
    from events.jsonl_log import JsonlLog

    return JsonlLog.open(ref.path, log_id=log_id, clock=clock, durability=durability, lock_timeout=lock_timeout, id_window=id_window)


@contextlib.contextmanager
def readable(ref: LogRef) -> Iterator[Path]:
    """A file holding the log's records: the file itself, or for a URL a verified snapshot
    (removed afterwards). An AsupError naming the snapshot is re-raised naming the URL."""
    with readable_upto_damage(ref) as (path, damage):
        if damage is not None:
            raise damage
        yield path


@contextlib.contextmanager
def readable_upto_damage(ref: LogRef) -> Iterator[tuple[Path, AsupError | None]]:
    """`readable`, except that a stream damaged at some record gives the snapshot of the
    records before it and the damage (naming the URL and the seq), so that a verifier
    reports what it verified, as it does for a damaged file."""
    if ref.url is None:
        yield ref.path, None
        return
    folder = Path(tempfile.mkdtemp(prefix="asup-snapshot-"))  # mode 0700, a new name: nothing planted there
    snapshot = folder / f"{ref.url.stream}.jsonl"
    try:
        damage: AsupError | None = None
        try:
            write_snapshot(ref.url, snapshot)
        except AsupError as exc:
            if exc.seq is None or exc.exit_code is not ExitCode.CHECK_FAILED:  # unreachable, no such stream, not a log
                raise
            damage = exc
        yield snapshot, damage
    except AsupError as exc:
        if exc.file == str(snapshot):
            raise AsupError(exc.code, exc.message, file=ref.text, line=exc.line, field=exc.field, seq=exc.seq, errno=exc.errno) from exc
        raise
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def as_problem(damage: AsupError, offset: int) -> Problem:
    """The damage that ended a stream's snapshot (`readable_upto_damage`) as the problem a
    file's scan reports at the same record; `offset` is the snapshot's size."""
    kind = "schema_unsupported" if damage.code is ErrorCode.SCHEMA_UNSUPPORTED else "corrupt"
    seq = damage.seq or 0
    return Problem(kind, seq, offset, damage.code.value, damage.message, field=damage.field, seq=seq)


def write_snapshot(url: LogUrl, out: Path) -> int:
    """Write every record of the stream at `url`, verified, to the new file `out`
    (created, never replaced; fsynced); the number of records."""
    from events.jetstream.log import JetStreamLog

    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        count = 0
        try:
            with JetStreamLog.open(url, create=False, reader=True) as log, os.fdopen(fd, "wb", closefd=False) as fh:
                for line in log.verified_lines():
                    fh.write(line)
                    fh.write(b"\n")
                    count += 1
                fh.flush()
                os.fsync(fd)
        finally:
            os.close(fd)
    except OSError as exc:  # a full or unwritable $TMPDIR: named, where a bare OSError named nothing
        raise os_error(exc, f"cannot write the stream's local copy {out}", out) from exc
    return count
