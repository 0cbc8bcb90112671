"""The JSONL file log: the embedded default store, shared by any number of processes.

Each batch runs under the writer lock (an exclusive flock on the log file itself,
`events.lock`): take it, check the path still names this inode, catch up with what other
processes appended since this writer's last batch, plan, one `os.write` loop on an
O_APPEND descriptor, fsync as the durability setting says, commit the heads, refresh the
head record (`events.head_record`), release, and only then return (the ack). A failed
write is cut back to where the batch began and fences the writer; a failed fsync fences it
too and is never retried (after fsyncgate, a retried fsync can report success for lost pages).

Catching up trusts the prefix only as DESIGN says: the head record's stamps are the
file's (nothing but asup's appends changed it) and the record at its size carries its
digest. Otherwise the lock is released and the whole log verified outside it before the
batch goes on. A file shorter than its high-water mark is a rollback, refused. Damage
where no acknowledged record can be (`events.scan`) is a torn tail: its bytes are copied
to `LOG.torn-<offset>` (fsynced) before the file is cut, and a `log_repaired` record
appended; anything else refuses the write. All file I/O goes through `events.fs`.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from events import head_record, lock, segments, writer_index
from events.atomic import create_new, open_dir, read_small, settle_leftover, write_all
from events.batch import plan
from events.chain import DEFAULT_ID_WINDOW, ChainHeads, ChainState, Position, StreamHead
from events.clock import Clock, SystemClock, format_ts
from events.digest import digest_bytes
from events.errors import AsupError, ErrorCode, os_error
from events.follow import follow_path
from events.fs import OS, FileSystem
from events.head_record import HeadRecord, Stamps, stamps_of
from events.payloads import Event, LogCreated, LogRepaired
from events.record import HEADER_STREAM, LOG_SCHEMA, MAX_LINE, Record
from events.scan import Problem, ScanResult, read_records, scan
from events.schema import decode_line
from events.store import Pending, pending_for
from events.vocabulary import Durability

ID_WINDOW = DEFAULT_ID_WINDOW
INDEX_EVERY = 32 << 20  # bytes appended between writer-index saves (and at least 8x the index's own size)
RETRIES = 5  # full verifies in a row before a writer gives up on a log that keeps changing
HEADER_START = b'{"type":"log_created","v":'

SIDE_SUFFIXES = (".head.json", ".index.json", ".lock")  # caches beside a log (".lock": what older versions left)

_Work = Callable[[], list[Position]]
_FdCall = Callable[[int], None]
_Reader = Callable[[], BinaryIO]


class _Untrusted(Exception):
    """Under the lock: the file changed in a way asup's head record does not vouch for."""


class JsonlLog(ChainHeads):
    """A JSONL log open for append. Use `JsonlLog.open(path)`; close it (or `with`)."""

    def __init__(self, path: Path, durability: Durability, clock: Clock, id_window: int, lock_timeout: float, fs: FileSystem) -> None:
        self.path = path
        self._real = Path(os.path.realpath(path))  # side files live beside the file a symlink names
        self._durability = durability
        self._clock = clock
        self._id_window = id_window
        self._lock_timeout = lock_timeout
        self._fs = fs
        self._chain = ChainState(id_window)
        self._size = 0  # bytes this writer has read and verified (or written)
        self._stamps: Stamps | None = None  # the file's stamps after this writer's last batch
        self._verified = False  # the prefix up to _size was just verified in full
        self._indexed_at = 0
        self._index_cost = 0
        self._fenced: str | None = None
        self._pending: list[LogRepaired] = []  # repairs whose records go out with the next batch
        self._synced = False  # this writer created the file whole (header and directory fsynced)
        self._opening = True  # still in open(): a full verify may fork workers
        self._dir_fd = -1
        self._fd = -1
        self._head: head_record.HeadFile | None = None
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
        lock_timeout: float | None = None,
        id_window: int = ID_WINDOW,
        fs: FileSystem = OS,
        verify: bool = False,
    ) -> JsonlLog:
        """Open (or create) the log at `path` for append. `verify`: verify the whole log first
        even when its head record vouches for it (`asup log repair` does). `lock_timeout`:
        seconds a batch waits for another process's (None: `events.lock.default_timeout()`)."""
        timeout = lock.default_timeout() if lock_timeout is None else lock_timeout
        log = cls(Path(path), durability, clock or SystemClock(), id_window, timeout, fs)
        try:
            log._attach(log_id or Path(path).stem, verify)
        except OSError as exc:  # a call the steps below do not name themselves (fstat, pread, listdir)
            log._abandon()
            raise os_error(exc, "cannot open the log", log.path) from exc
        except BaseException:
            log._abandon()
            raise
        return log

    def _attach(self, log_id: str, verify: bool) -> None:
        self._dir_fd = open_dir(self._real.parent, self._fs, for_path=self.path)
        self._head = head_record.HeadFile(self._real, self._dir_fd, self._fs)
        self._fd = self._open_or_create(log_id)
        lock.refuse_untrusted(self._fd, self.path, self._fs)
        if verify and not self._synced:
            self._verify_all()
        self._locked_step(lambda: self._start(log_id))
        self._opening = False

    def _open_or_create(self, log_id: str) -> int:
        try:
            return self._open_existing()
        except FileNotFoundError:
            pass
        if head_record.load(self._real, self._fs) is not None:
            raise AsupError(
                ErrorCode.LOG_ROLLBACK,
                f"the log is missing but its high-water mark {head_record.head_path(self.path).name} remains: restore the log, "
                "or remove the mark to start a new log",
                file=str(self.path),
            )
        self._synced = self._create(log_id)
        return self._open_existing()

    def _open_existing(self) -> int:
        try:
            fd = self._fs.open(self._real.name, os.O_RDWR | os.O_APPEND | os.O_NONBLOCK, dir_fd=self._dir_fd)
        except FileNotFoundError:
            raise
        except OSError as exc:
            raise os_error(exc, "cannot open for append", self.path) from exc
        mode = self._fs.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            self._fs.close(fd)
            raise AsupError(ErrorCode.USAGE, "not a regular file; a log is one", file=str(self.path))
        return fd

    def _create(self, log_id: str) -> bool:
        """A new log, created whole: the header in a temp file, fsynced, linked into place and
        the directory fsynced before anything is acknowledged. Losing the race to another
        creator is fine: its log is opened instead."""
        chain = ChainState(self._id_window)
        chain.log_id = log_id
        batch = plan(chain, [Pending(HEADER_STREAM, LogCreated(log_id=log_id, schema=LOG_SCHEMA))], self._now(), _no_line)
        return create_new(self._real, bytes(batch.data), self._fs)

    def _start(self, log_id: str) -> list[Position]:
        """Under the lock, after catching up: a header for an empty file, the records of
        repairs made now or left unrecorded by a crash, and the fsync that makes what an
        earlier writer wrote but never synced acknowledged from now on."""
        if self._chain.log_id is None:  # a 0-byte file or a cut header: a torn creation
            self._chain.log_id = log_id
            repairs, self._pending = self._pending, []
            self._write_batch([Pending(HEADER_STREAM, LogCreated(log_id=log_id, schema=LOG_SCHEMA))])
            self._pending = repairs
        self._pending.extend(self._unrecorded_quarantines())
        if self._pending:
            self.repaired = self._pending[-1]
            self._write_batch([])
        elif self._durability is not Durability.NONE and not self._synced:
            self._io("fsync", self._fs.fsync, self._fd)
        self._refresh_head()
        return []

    def _abandon(self) -> None:
        """Release what a failed open took; the file is left as the failure left it."""
        if self._head is not None:
            self._head.close()
        for fd in (self._fd, self._dir_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    self._fs.close(fd)
        self._fd = self._dir_fd = -1

    # --- the store interface ---------------------------------------------------------

    def append_batch(self, items: Sequence[Pending]) -> list[Position]:
        self._check_open()
        try:
            return self._locked_step(lambda: self._write_batch(items))
        except OSError as exc:  # a call the write path does not name itself: fence, as after a failed write
            self._fenced = self._fenced or f"{exc.strerror or exc}"
            raise AsupError(ErrorCode.IO_FAILED, f"log I/O failed: {exc.strerror or exc}; reopen the log", file=str(self.path)) from exc

    def append(self, stream: str, events: Sequence[Event], expected_version: int | None = None) -> list[Position]:
        return self.append_batch(pending_for(stream, events, expected_version))

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
                    self._io("fsync", self._fs.fsync, self._fd)
                self._save_index()
                if self._head is not None:
                    self._head.sync()
        finally:
            self._abandon()

    def __enter__(self) -> JsonlLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the lock and catching up ------------------------------------------------------

    def _locked_step(self, work: _Work) -> list[Position]:
        """Run `work` under the lock once this writer has caught up; verify the whole log
        outside the lock (and try again) when its prefix cannot be trusted."""
        for _ in range(RETRIES):
            lock.acquire(self._fd, self.path, self._lock_timeout, self._fs)
            try:
                self._catch_up()
                return work()
            except _Untrusted:
                pass
            finally:
                with contextlib.suppress(OSError):
                    lock.release(self._fd, self._fs)
            self._verify_all()
        raise AsupError(ErrorCode.IO_FAILED, "the log kept changing (not by asup) while it was verified", file=str(self.path))

    def _catch_up(self) -> None:
        """Under the lock: bring the heads to the end of the file, or raise `_Untrusted`."""
        st = self._same_inode()
        if self._stamps == stamps_of(st):
            return  # nothing but this writer touched the file since its last batch
        mark = head_record.load(self._real, self._fs)
        self._refuse_rollback(st, mark)
        if not self._verified:
            if mark is None or not head_record.vouches_for(mark, st, self._tail_at(mark.size)):
                raise _Untrusted
            if self._chain.log_id is None:
                self._load_index(mark)
        self._verified = False
        self._read_to_end(mark)
        self._stamps = stamps_of(self._fs.fstat(self._fd))

    def _same_inode(self) -> os.stat_result:
        """The open file's stat, after checking the path still names it (else `io_failed`:
        appends through this descriptor would go to a file nobody reads)."""
        st = self._fs.fstat(self._fd)
        try:
            named = self._fs.stat(self._real.name, dir_fd=self._dir_fd)
        except OSError:
            named = None
        if named is None or (named.st_dev, named.st_ino) != (st.st_dev, st.st_ino):
            raise AsupError(ErrorCode.IO_FAILED, "the log was replaced or removed while open; reopen it", file=str(self.path))
        return st

    def _refuse_rollback(self, st: os.stat_result, mark: HeadRecord | None) -> None:
        if mark is not None and mark.log_id != self._chain.log_id and self._chain.log_id is not None:
            mark = None  # another log's mark (a file moved in place): the full verify decides
        if mark is not None and st.st_size < mark.size:
            raise head_record.rollback_error(self.path, st.st_size, mark.size, mark.last_seq)
        if st.st_size < self._size:
            raise head_record.rollback_error(self.path, st.st_size, self._size, self._chain.last_seq)

    def _load_index(self, mark: HeadRecord) -> None:
        index = writer_index.load(self._real, self._fs)
        if index is None or index.log_id != mark.log_id or index.size > mark.size:
            raise _Untrusted
        if self._tail_at(index.size) != head_record.tail_of(index.last_h):
            raise _Untrusted
        self._chain = writer_index.restore(index, self._id_window)
        self._size = self._indexed_at = index.size

    def _read_to_end(self, mark: HeadRecord | None) -> None:
        result = scan(self._reader, self._chain, offset=self._size, mark=None if mark is None else mark.size)
        self._size = result.valid_size
        problem = result.problem
        if problem is None:
            return
        if problem.kind != "torn_tail":
            raise problem.error(str(self.path))
        self._pending.append(self._quarantine(problem))

    def _verify_all(self) -> None:
        """Outside the lock: verify the whole log from its first byte, as `asup log verify` does."""
        mark = head_record.load(self._real, self._fs)
        size = self._fs.fstat(self._fd).st_size
        chain, result = self._verified_in_parallel(size) or self._verified_in_sequence(mark)
        problem = result.problem
        if mark is not None and size < mark.size and (problem is None or problem.reason == "no_newline"):
            raise head_record.rollback_error(self.path, size, mark.size, mark.last_seq)  # cut back, not damaged
        if problem is not None and (problem.kind != "torn_tail" or problem.offset == 0):
            foreign = not_an_asup_log(self.path, self._reader)
            if foreign is not None:
                raise foreign
            if problem.kind != "torn_tail":
                raise problem.error(str(self.path))
        if mark is not None and chain.log_id == mark.log_id and self._tail_at(mark.size) != head_record.tail_of(mark.last_h):
            raise AsupError(
                ErrorCode.CORRUPT_RECORD,
                f"the record at the high-water mark (seq {mark.last_seq}, byte {mark.size}) is not the one acknowledged: "
                "the log was rewritten or replaced",
                file=str(self.path),
                seq=mark.last_seq,
            )
        self._chain, self._size, self._verified, self._stamps = chain, result.valid_size, True, None

    def _verified_in_sequence(self, mark: HeadRecord | None) -> tuple[ChainState, ScanResult]:
        chain = ChainState(self._id_window)
        return chain, scan(self._reader, chain, mark=None if mark is None else mark.size)

    def _verified_in_parallel(self, size: int) -> tuple[ChainState, ScanResult] | None:
        """A big log verified on every core (`events.segments`), its heads taken from the
        stitch and its recent ids from its last records; None when it is small, the file
        calls go through a test's seam (the workers read the file themselves), the log is
        already open (appends may run in a worker thread: no fork then), or anything is wrong
        (the sequential scan then decides and reports)."""
        if not self._opening or size < segments.PARALLEL_FROM or self._fs is not OS or segments.default_jobs() < 2:
            return None
        verdict = segments.verify_log(self._real, parallel_from=segments.PARALLEL_FROM)
        if verdict.problem is not None or verdict.heads is None or verdict.log_id is None or verdict.segments < 2:
            return None
        chain = ChainState(self._id_window)
        chain.log_id, chain.last_seq, chain.last_h = verdict.log_id, verdict.last_seq, verdict.last_h
        chain.streams = {name: StreamHead(sv, h) for name, (sv, h) in verdict.heads.items()}
        chain.remember_recent(self._last_ids(size))
        return chain, ScanResult(verdict.records, size, None)

    def _last_ids(self, size: int) -> list[tuple[str, str, int, int, int]]:
        """(stream, id, seq, sv, offset) of the log's last `id_window` records (already verified)."""
        if not self._id_window:
            return []
        start, block, base = size, 1 << 20, 0
        bodies: list[bytes] = []
        while start > 0 and len(bodies) <= self._id_window:
            start = max(0, start - block)
            block *= 2
            data = self._fs.pread(self._fd, size - start, start)
            cut = 0 if start == 0 else data.index(b"\n") + 1  # from the first whole line
            bodies, base = data[cut:].split(b"\n")[:-1], start + cut
        entries = []
        for body in bodies:
            record = decode_line(body)
            if isinstance(record, Record):
                entries.append((record.stream, record.id, record.seq, record.sv, base))
            base += len(body) + 1
        return entries[-self._id_window :]

    def _reader(self) -> BinaryIO:
        try:
            fd = self._fs.open(self._real.name, os.O_RDONLY | os.O_NONBLOCK, dir_fd=self._dir_fd)
        except OSError as exc:
            raise os_error(exc, "cannot read", self.path) from exc
        return os.fdopen(fd, "rb")

    def _tail_at(self, size: int) -> bytes:
        """The `TAIL_LEN` bytes ending at byte `size`."""
        if size < head_record.TAIL_LEN:
            return b""
        return self._fs.pread(self._fd, head_record.TAIL_LEN, size - head_record.TAIL_LEN)

    # --- repairs -----------------------------------------------------------------------

    def _quarantine(self, problem: Problem) -> LogRepaired:
        """Copy the torn bytes to a new quarantine file (fsynced), then cut the log back."""
        with self._reader() as fh:
            fh.seek(problem.offset)
            torn = fh.read()
        target = self._quarantine_name(problem.offset, torn)
        self._io("cut of the torn tail", lambda fd: self._fs.ftruncate(fd, problem.offset), self._fd)
        self._io("fsync", self._fs.fsync, self._fd)
        self._size = problem.offset
        return _repaired(problem.offset, torn, target, problem.reason)

    def _quarantine_name(self, offset: int, torn: bytes) -> str:
        """The name of a new quarantine file holding `torn` (an identical one is reused)."""
        for suffix in range(1000):
            name = f"{self._real.name}.torn-{offset}" + (f".{suffix}" if suffix else "")
            target = self._real.with_name(name)
            settle_leftover(target, self._fs)
            if create_new(target, torn, self._fs):
                return name
            if self._same_bytes(name, torn):
                return name
        raise AsupError(ErrorCode.IO_FAILED, f"too many quarantine files for offset {offset}", file=str(self.path))

    def _same_bytes(self, name: str, data: bytes) -> bool:
        return read_small(self._real.with_name(name), len(data), self._fs) == data

    def _unrecorded_quarantines(self) -> list[LogRepaired]:
        """Quarantine files cut at the log's current end whose record a crash prevented."""
        pattern = re.compile(re.escape(self._real.name) + r"\.torn-(\d+)(?:\.\d+)?")
        found = []
        for name in sorted(self._fs.listdir(self._dir_fd)):
            match = pattern.fullmatch(name)
            if match and int(match.group(1)) == self._size and all(p.quarantine != name for p in self._pending):
                settle_leftover(self._real.with_name(name), self._fs)
                torn = read_small(self._real.with_name(name), MAX_LINE << 6, self._fs)
                if torn is not None:  # not asup's own file (a link, a FIFO): nothing to vouch for
                    found.append(_repaired(self._size, torn, name, "unrecorded_cut"))
        return found

    # --- the write path --------------------------------------------------------------

    def _write_batch(self, items: Sequence[Pending]) -> list[Position]:
        """Under the lock, caught up: write the batch (after any pending repair records)."""
        repairs = [Pending(HEADER_STREAM, repaired) for repaired in self._pending]
        batch = plan(self._chain, [*repairs, *items], self._now(), self._line_at)
        if batch.data:
            start = self._size
            self._write(batch.data)
            batch.commit(self._chain, start)
            self._pending.clear()
            self._refresh_head()
            if self._size - self._indexed_at >= max(INDEX_EVERY, 8 * self._index_cost):
                self._save_index()
        return batch.positions[len(repairs) :]

    def _check_open(self) -> None:
        if self._fd < 0:
            raise AsupError(ErrorCode.WRITER_CLOSED, "the log is closed", file=str(self.path))
        if self._fenced is not None:
            raise AsupError(ErrorCode.IO_FAILED, f"writer fenced after {self._fenced}; reopen the log", file=str(self.path))

    def _write(self, data: bytearray) -> None:
        start = self._size
        fs = self._fs
        try:
            if self._durability is Durability.ALWAYS:
                begin = 0
                while (end := data.find(b"\n", begin) + 1) > 0:  # a line at a time, each synced
                    write_all(self._fd, memoryview(data)[begin:end], fs)
                    fs.fsync(self._fd)
                    begin = end
            else:
                write_all(self._fd, memoryview(data), fs)
                if self._durability is Durability.BATCH:
                    fs.fsync(self._fd)
        except OSError as exc:
            self._fence(start, f"{exc.strerror or exc}")
            why = exc.strerror or exc
            raise AsupError(ErrorCode.IO_FAILED, f"append failed ({why}); nothing acknowledged", file=str(self.path)) from exc
        self._size = start + len(data)

    def _fence(self, start: int, why: str) -> None:
        self._fenced = why
        with contextlib.suppress(OSError):  # the next opener quarantines whatever is left
            self._fs.ftruncate(self._fd, start)

    def _refresh_head(self) -> None:
        """The new high-water mark, after the batch's fsync (a failed save removes the old one)."""
        assert self._chain.log_id is not None and self._head is not None
        try:
            st = self._fs.fstat(self._fd)
        except OSError:
            head_record.remove(self._real, self._fs)
            return
        self._stamps = stamps_of(st)
        self._head.save(head_record.make(self._chain.log_id, self._chain.last_seq, self._chain.last_h, st))

    def _save_index(self) -> None:
        # A cache, and the batch is already acknowledged: a failed save must not fail the
        # append or the close. An index left behind is used only where it matches the log.
        if self._chain.log_id is None:
            return
        with contextlib.suppress(AsupError, OSError):
            self._index_cost = writer_index.save(self._real, self._chain, self._size, self._fs)
        self._indexed_at = self._size

    def _line_at(self, offset: int) -> bytes:
        """The stored line at byte `offset` (for checking a retry against what is there)."""
        if offset < 0:
            return b""
        data = b""
        while b"\n" not in data and len(data) < MAX_LINE:
            chunk = self._fs.pread(self._fd, 1 << 16, offset + len(data))
            if not chunk:
                break
            data += chunk
        return data.split(b"\n", 1)[0]

    def _now(self) -> str:
        return format_ts(self._clock.now_ns())

    def _io(self, what: str, call: _FdCall, fd: int) -> None:
        try:
            call(fd)
        except OSError as exc:
            raise AsupError(ErrorCode.IO_FAILED, f"{what} failed: {exc.strerror or exc}", file=str(self.path)) from exc


def drop_side_files(path: Path) -> None:
    """Forget the caches of the log that was at `path` (it was moved aside on purpose: a new
    log starts there, and the old one's high-water mark must not call that a rollback)."""
    for suffix in SIDE_SUFFIXES:
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def _repaired(offset: int, torn: bytes, quarantine: str, reason: str) -> LogRepaired:
    return LogRepaired(offset=offset, length=len(torn), torn_digest=digest_bytes(torn), quarantine=quarantine, reason=reason)


def _no_line(offset: int) -> bytes:
    return b""


def not_an_asup_log(path: Path, reader: _Reader) -> AsupError | None:
    """`not_an_asup_log` when the file's first line is not (the start of) an asup header."""
    with reader() as fh:
        first = fh.read(len(HEADER_START))
    if not first or HEADER_START.startswith(first) or first.startswith(HEADER_START) or first.count(0) == len(first):
        return None
    return AsupError(
        ErrorCode.NOT_AN_ASUP_LOG,
        "the file's first line is not an asup log header: not an asup log (asup never writes to it); pass a new path",
        file=str(path),
        line=1,
    )
