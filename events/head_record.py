"""The high-water mark: a small head record beside the log, refreshed after every batch.

`LOG.head.json` says what the last writer acknowledged: the last seq, the acknowledged
size and the last digest, and the file's device, inode, size, mtime_ns and ctime_ns right
after its batch. It is written under the writer lock after the batch's fsync, so it never
leads what is durable; it is not fsynced itself (it may lag). It is a cache of a promise:
a failed save removes it rather than leave a stale mark.

Saving it is one `pwrite` of a fixed 512-byte slot (the JSON padded with spaces) into a
file the writer keeps open, not a rename: replacing a file by rename costs ~0.7 ms on ext4
(it flushes the new file's data first), on every batch. One sector at offset 0 is written
whole or not at all on a crash, and the digest catches anything else (then there is no
mark, as after a failed save). The file has two slots. A writer's first save, one save a
second after that, and the one at close are durable: the whole file is replaced (temp,
fsync, rename, directory fsync) with the record in both slots. Every other save rewrites
only the hot slot (offset 512) in place. A reader takes the slot with the highest seq
whose digest holds, so a power cut that garbles unsynced writes still leaves the durable
slot, lagging by at most about a second of batches. The file is opened `O_NOFOLLOW` and used only while it is a
regular file with one link that the name still points to; anything else at the name is
removed and a new file created.

It decides two things. A file shorter than the mark is a rollback (refused, before any
torn-tail rule). And the log's prefix up to the mark may go unverified only when the
record's own digest holds, the record ending at its size carries its last digest, and the
file's stamps are the record's: nothing but asup's own appends changed the file since.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from pathlib import Path

import msgspec
from blake3 import blake3

from events.atomic import read_small, write_atomic
from events.errors import DECODE_ERRORS, AsupError, ErrorCode
from events.fs import OS, FileSystem

FORMAT = "asup.head/1"
MAX_BYTES = 4096  # two 512-byte slots (or one longer record): anything bigger is not one

Stamps = tuple[int, int, int, int, int]  # dev, ino, size, mtime_ns, ctime_ns


class HeadRecord(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    format: str
    log_id: str
    last_seq: int
    size: int
    last_h: str
    dev: int
    ino: int
    mtime_ns: int
    ctime_ns: int
    digest: str = ""

    def content_digest(self) -> str:
        return "blake3:" + blake3(msgspec.json.encode(msgspec.structs.replace(self, digest=""))).hexdigest()

    @property
    def stamps(self) -> Stamps:
        return (self.dev, self.ino, self.size, self.mtime_ns, self.ctime_ns)


def stamps_of(st: os.stat_result) -> Stamps:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def head_path(log_path: Path) -> Path:
    return log_path.with_name(log_path.name + ".head.json")


def make(log_id: str, last_seq: int, last_h: str, st: os.stat_result) -> HeadRecord:
    record = HeadRecord(FORMAT, log_id, last_seq, st.st_size, last_h, st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)
    return msgspec.structs.replace(record, digest=record.content_digest())


SLOT = 512  # bytes: one sector, so a crash leaves the old record or the new one
DURABLE_EVERY = 1.0  # seconds between fsyncs of the head record (and always its first save and at close)


def encode_slot(record: HeadRecord) -> bytes | None:
    """The record padded to SLOT bytes (ending in a newline), or None when it does not fit."""
    data = msgspec.json.encode(record)
    return data.ljust(SLOT - 1) + b"\n" if len(data) < SLOT else None


def save(log_path: Path, record: HeadRecord, fs: FileSystem = OS) -> bool:
    """Replace the head record by rename (a writer uses `HeadFile`); on any failure remove it
    instead (no stale mark). True: saved."""
    try:
        write_atomic(head_path(log_path), encode_slot(record) or msgspec.json.encode(record), sync=False, fs=fs)
        return True
    except AsupError:
        remove(log_path, fs)
        return False


class HeadFile:
    """A writer's head record (see the module doc): slot 0 durable, slot 1 hot."""

    def __init__(self, log_path: Path, dir_fd: int, fs: FileSystem = OS) -> None:
        self._log_path = log_path
        self.path = head_path(log_path)
        self._dir_fd = dir_fd
        self._fs = fs
        self._fd = -1
        self._id: tuple[int, int] = (0, 0)
        self._synced_at: float | None = None  # monotonic time of the last durable save
        self._last: bytes | None = None  # the last slot written hot only

    def save(self, record: HeadRecord) -> bool:
        """Write `record`; on any failure remove the file instead (no stale mark). True: saved."""
        data = encode_slot(record)
        if data is None:
            self.close()
            return save(self._log_path, record, self._fs)
        try:
            due = self._synced_at is None or time.monotonic() - self._synced_at >= DURABLE_EVERY
            fd = None if due else self._current()
            if fd is None:
                self._save_durable(data)
                return True
            if self._fs.pwrite(fd, data, SLOT) == len(data):
                self._last = data
                return True
        except (OSError, AsupError):
            pass
        self.close()
        with contextlib.suppress(OSError):
            self._fs.unlink(self.path.name, dir_fd=self._dir_fd)
        return False

    def _current(self) -> int | None:
        """The open file while its name still points to it (reopened if the name moved to
        another of asup's files); None when there is none to write in place."""
        try:
            st = self._fs.stat(self.path.name, dir_fd=self._dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if self._fd >= 0 and (st.st_dev, st.st_ino) == self._id:
            return self._fd
        self.close()
        if not (stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and st.st_size == 2 * SLOT):
            return None  # not asup's two-slot file: the durable save replaces it, never writes through it
        fd = self._fs.open(self.path.name, os.O_RDWR | os.O_NOFOLLOW, dir_fd=self._dir_fd)
        opened = self._fs.fstat(fd)
        if (opened.st_dev, opened.st_ino) != (st.st_dev, st.st_ino) or opened.st_nlink != 1:
            self._fs.close(fd)
            return None
        self._fd, self._id = fd, (opened.st_dev, opened.st_ino)
        return fd

    def sync(self) -> None:
        """Make the last save durable (a writer does at close); a failure loses only a cache."""
        if self._last is not None:
            with contextlib.suppress(AsupError, OSError):
                self._save_durable(self._last)

    def _save_durable(self, data: bytes) -> None:
        # Now and then, not per batch: under a power cut that garbles unsynced writes, a durable
        # mark (even one that lags) is what tells a garbled tail from an acknowledged record.
        # The whole file is replaced (fsynced, renamed, directory fsynced), with the record in
        # both slots; a cut before the rename leaves the previous file whole.
        self.close()
        with contextlib.suppress(FileNotFoundError):
            st = self._fs.stat(self.path.name, dir_fd=self._dir_fd, follow_symlinks=False)
            if not (stat.S_ISREG(st.st_mode) and st.st_nlink == 1):
                self._fs.unlink(self.path.name, dir_fd=self._dir_fd)  # not asup's: removed, never written through
        write_atomic(self.path, data + data, sync=True, fs=self._fs)
        self._synced_at, self._last = time.monotonic(), None

    def close(self) -> None:
        if self._fd >= 0:
            with contextlib.suppress(OSError):
                self._fs.close(self._fd)
            self._fd = -1


def remove(log_path: Path, fs: FileSystem = OS) -> None:
    with contextlib.suppress(OSError):
        fs.unlink(str(head_path(log_path)))


def load(log_path: Path, fs: FileSystem = OS) -> HeadRecord | None:
    """The latest head record that holds (of its slots, see `HeadFile`), or None when none
    does (absent, damaged, not asup's)."""
    data = read_small(head_path(log_path), MAX_BYTES, fs)
    if data is None:
        return None
    pieces = [data[i : i + SLOT] for i in range(0, len(data), SLOT)] if len(data) % SLOT == 0 else [data]
    held = [record for record in map(_decode, pieces) if record is not None]
    return max(held, key=lambda record: record.last_seq, default=None)


def _decode(data: bytes) -> HeadRecord | None:
    try:
        record = msgspec.json.decode(data, type=HeadRecord)
    except DECODE_ERRORS:
        return None
    if record.format != FORMAT or record.digest != record.content_digest():
        return None
    return record


def vouches_for(record: HeadRecord, st: os.stat_result, tail: bytes) -> bool:
    """The record vouches for the file's prefix: same stamps, and `tail` (the 67 bytes
    ending at its size) ends the record carrying its last digest."""
    return record.stamps == stamps_of(st) and tail == tail_of(record.last_h)


def tail_of(last_h: str) -> bytes:
    """The last bytes of the line whose digest is `last_h`: what ends at the mark."""
    return last_h.removeprefix("blake3:").encode() + b'"}\n'


TAIL_LEN = 67


def tail_at(log_path: Path, size: int) -> bytes:
    """The `TAIL_LEN` bytes of the log ending at byte `size` (b"" when there are none)."""
    if size < TAIL_LEN:
        return b""
    try:
        with log_path.open("rb") as fh:
            fh.seek(size - TAIL_LEN)
            return fh.read(TAIL_LEN)
    except OSError:
        return b""


def trusted(log_path: Path) -> HeadRecord | None:
    """The head record when it vouches for the log's prefix right now, else None."""
    record = load(log_path)
    if record is None:
        return None
    try:
        st = log_path.stat()
    except OSError:
        return None
    return record if vouches_for(record, st, tail_at(log_path, record.size)) else None


def rollback_error(log_path: Path, size: int, mark_size: int, mark_seq: int) -> AsupError:
    return AsupError(
        ErrorCode.LOG_ROLLBACK,
        f"the log is {size} bytes, shorter than its high-water mark of {mark_size} bytes (seq {mark_seq}): acknowledged "
        f"records are gone (rolled back or cut); restore them, or accept the cut with `asup log repair --force-tail {log_path}`",
        file=str(log_path),
        seq=mark_seq,
    )
