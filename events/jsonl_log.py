"""The JSONL file log: the embedded default store.

Write path (one writer, holding the flock): plan the batch in memory, one `os.write`
loop on an O_APPEND descriptor, fsync as the durability setting says, and only then
commit the heads and return (the ack). A failed write is cut back to where the batch
began and fences the writer; a failed fsync fences it too and is never retried (after
fsyncgate, a retried fsync can report success for lost pages).

Open path: take the lock, trust the head index if it matches the tail (else scan the
whole file), scan what follows it, and repair a torn tail: the torn bytes are copied to
`LOG.torn-<offset>` (fsynced) before the file is cut, and a `log_repaired` event records
it. Corruption anywhere else refuses the open.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path

from events import head_index
from events.atomic import write_all, write_atomic
from events.batch import plan
from events.chain import ChainHeads, ChainState, Position
from events.clock import Clock, SystemClock, format_ts
from events.digest import digest_bytes
from events.errors import AsupError, ErrorCode, os_error
from events.follow import follow_path
from events.lock import WriterLock
from events.payloads import Event, LogCreated, LogRepaired
from events.record import HEADER_STREAM, LOG_SCHEMA, Record
from events.scan import Problem, line_at, read_records, scan
from events.store import Pending, pending_for
from events.vocabulary import Durability

INDEX_EVERY = 64 << 20  # bytes appended between head-index saves


class JsonlLog(ChainHeads):
    """A JSONL log opened for append. Use `JsonlLog.open(path)`; close it (or `with`)."""

    def __init__(self, path: Path, chain: ChainState, fd: int, lock: WriterLock, durability: Durability, clock: Clock) -> None:
        self.path = path
        self._chain = chain
        self._fd = fd
        self._lock = lock
        self._durability = durability
        self._clock = clock
        self._size = os.fstat(fd).st_size
        self._indexed_at = 0
        self._fenced: str | None = None
        self.repaired: LogRepaired | None = None

    # --- opening -------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: Path | str,
        *,
        log_id: str | None = None,
        durability: Durability = Durability.BATCH,
        clock: Clock | None = None,
        lock_timeout: float = 0.0,
        id_window: int = 64,
    ) -> JsonlLog:
        path = Path(path)
        lock = WriterLock(path)
        lock.acquire(lock_timeout)
        try:
            chain, torn = _recover(path, id_window)
            fd = _open_fd(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, "cannot open for append")
        except BaseException:
            lock.release()
            raise
        log = cls(path, chain, fd, lock, durability, clock or SystemClock())
        try:
            log._start(log_id or path.stem, torn)
        except BaseException:
            log._abandon()
            raise
        return log

    def _start(self, log_id: str, torn: LogRepaired | None) -> None:
        chain = self._chain
        if chain.log_id is None:
            chain.log_id = log_id
            self._append([Pending(HEADER_STREAM, LogCreated(log_id=log_id, schema=LOG_SCHEMA))])
            _fsync_dir(self.path)
        elif self._durability is not Durability.NONE:
            _io(self.path, "fsync", os.fsync, self._fd)  # what an earlier writer wrote but never synced is acknowledged from now on
        if torn is not None:
            self.repaired = torn
            self._append([Pending(HEADER_STREAM, torn)])

    def _abandon(self) -> None:
        """Release what a failed open took; the file is left as the failure left it."""
        os.close(self._fd)
        self._fd = -1
        self._lock.release()

    # --- the store interface ---------------------------------------------------------

    def append_batch(self, items: Sequence[Pending]) -> list[Position]:
        return self._append(items)

    def append(self, stream: str, events: Sequence[Event], expected_version: int | None = None) -> list[Position]:
        return self._append(pending_for(stream, events, expected_version))

    def read(self, from_seq: int = 1) -> Iterator[Record]:
        return read_records(self.path, from_seq)

    def read_stream(self, stream: str) -> Iterator[Record]:
        return (record for record in read_records(self.path) if record.stream == stream)

    def follow(self, from_seq: int = 1) -> AsyncIterator[Record]:
        return follow_path(self.path, from_seq)

    def close(self) -> None:
        if self._fd < 0:
            return
        try:
            if self._fenced is None:
                if self._durability is not Durability.NONE:
                    _io(self.path, "fsync", os.fsync, self._fd)
                self._save_index()
        finally:
            os.close(self._fd)
            self._fd = -1
            self._lock.release()

    def __enter__(self) -> JsonlLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the write path --------------------------------------------------------------

    def _append(self, items: Sequence[Pending]) -> list[Position]:
        if self._fd < 0:
            raise AsupError(ErrorCode.WRITER_CLOSED, "the log is closed", file=str(self.path))
        if self._fenced is not None:
            raise AsupError(ErrorCode.IO_FAILED, f"writer fenced after {self._fenced}; reopen the log", file=str(self.path))
        batch = plan(self._chain, items, format_ts(self._clock.now_ns()), self._line_at)
        if batch.data:
            start = self._size
            self._write(batch.data)
            batch.commit(self._chain, start)
            if self._size - self._indexed_at >= INDEX_EVERY:
                self._save_index()
                self._indexed_at = self._size
        return batch.positions

    def _save_index(self) -> None:
        # The index is a cache and the batch is already acknowledged: a failed save must not
        # fail the append or the close. The index left behind is the previous one, which
        # `head_index.load` still trusts only if it matches the log, so nothing stale is used.
        with contextlib.suppress(AsupError):
            head_index.save(self.path, self._chain, self._size)

    def _line_at(self, offset: int) -> bytes:
        with self.path.open("rb") as fh:
            return line_at(fh, offset)

    def _write(self, data: bytearray) -> None:
        start = self._size
        try:
            if self._durability is Durability.ALWAYS:
                begin = 0
                while (end := data.find(b"\n", begin) + 1) > 0:  # a line at a time, each synced
                    write_all(self._fd, memoryview(data)[begin:end])
                    os.fsync(self._fd)
                    begin = end
            else:
                write_all(self._fd, memoryview(data))
                if self._durability is Durability.BATCH:
                    os.fsync(self._fd)
        except OSError as exc:
            self._fence(start, f"{exc.strerror or exc}")
            raise AsupError(ErrorCode.IO_FAILED, f"append failed ({exc}); nothing acknowledged", file=str(self.path)) from exc
        self._size = start + len(data)

    def _fence(self, start: int, why: str) -> None:
        self._fenced = why
        with contextlib.suppress(OSError):  # the reopen's scan quarantines whatever is left
            os.ftruncate(self._fd, start)


def _io(path: Path, what: str, call: Callable[[int], None], fd: int) -> None:
    try:
        call(fd)
    except OSError as exc:
        raise AsupError(ErrorCode.IO_FAILED, f"{what} failed: {exc.strerror or exc}", file=str(path)) from exc


def _fsync_dir(path: Path) -> None:
    fd = _open_fd(path.parent, os.O_RDONLY, "cannot open the directory")
    try:
        _io(path.parent, "directory fsync", os.fsync, fd)
    finally:
        os.close(fd)


def _recover(path: Path, id_window: int) -> tuple[ChainState, LogRepaired | None]:
    """The heads of an existing log (or a fresh chain), with a torn tail quarantined."""
    if not path.exists() or path.stat().st_size == 0:
        return ChainState(id_window), None
    loaded = head_index.load(path, id_window)
    chain, offset = loaded if loaded is not None else (ChainState(id_window), 0)
    try:
        result = scan(path, chain, offset=offset)
    except OSError as exc:
        raise os_error(exc, "cannot read", path) from exc
    problem = result.problem
    if problem is None:
        return chain, None
    if problem.kind != "torn_tail":
        raise problem.error(str(path))
    return chain, _quarantine(path, problem)


def _open_fd(path: Path, flags: int, doing: str) -> int:
    try:
        return os.open(path, flags, 0o644)
    except OSError as exc:
        raise os_error(exc, doing, path) from exc


def _cut(path: Path, offset: int) -> None:
    fd = _open_fd(path, os.O_WRONLY, "cannot open to cut the torn tail")
    try:
        _io(path, "cut of the torn tail", lambda fd: os.ftruncate(fd, offset), fd)
        _io(path, "fsync", os.fsync, fd)
    finally:
        os.close(fd)


def _quarantine(path: Path, problem: Problem) -> LogRepaired:
    with path.open("rb") as fh:
        fh.seek(problem.offset)
        torn = fh.read()
    target = path.with_name(f"{path.name}.torn-{problem.offset}")
    suffix = 0
    while target.exists() and target.read_bytes() != torn:
        suffix += 1
        target = path.with_name(f"{path.name}.torn-{problem.offset}.{suffix}")
    write_atomic(target, torn)  # fsynced, and its directory, before a byte of the log is cut
    _cut(path, problem.offset)
    return LogRepaired(
        offset=problem.offset,
        length=len(torn),
        torn_digest=digest_bytes(torn),
        quarantine=target.name,
        reason=problem.reason,
    )
