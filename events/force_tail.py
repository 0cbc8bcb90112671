"""`asup log repair --force-tail`: the operator's explicit choice to cut a damaged log back.

Automatic repair only ever cuts a torn tail (damage where no acknowledged record can be).
Anything else (a bad record before the high-water mark, a record that does not chain, a
rollback) is refused until an operator decides. This is that decision: the log is cut
back to its last valid record, the bytes cut are kept in `LOG.forced-<offset>` (fsynced
before the cut), the head record and writer index are dropped (they describe the longer
log), and a `tail_forced` record naming the seqs cut is appended. Readers, tail and fold
checkpoints then see a clean, shorter log. A file that is not an asup log is never cut.
"""

from __future__ import annotations

import os
from pathlib import Path

from events import head_record, lock, writer_index
from events.atomic import create_new
from events.chain import ChainState
from events.clock import Clock
from events.digest import digest_bytes
from events.errors import AsupError, ErrorCode, os_error
from events.jsonl_log import JsonlLog, not_an_asup_log
from events.payloads import TailForced
from events.record import HEADER_STREAM
from events.scan import scan
from events.store import Pending


def force_tail(path: Path, *, lock_timeout: float | None = None, clock: Clock | None = None) -> TailForced | None:
    """Cut `path` back to its last valid record and record it; None when nothing is wrong."""
    lock_timeout = lock.default_timeout() if lock_timeout is None else lock_timeout
    real = Path(os.path.realpath(path))
    mark = head_record.load(real)
    size = real.stat().st_size
    chain = ChainState()
    result = scan(real, chain, mark=None)
    problem = result.problem
    rollback = mark is not None and mark.log_id == chain.log_id and (size < mark.size or chain.last_seq < mark.last_seq)
    if problem is None and not rollback:
        return None
    if problem is not None and problem.offset == 0:
        foreign = not_an_asup_log(path, lambda: real.open("rb"))
        if foreign is not None:
            raise foreign
    cut_at = result.valid_size
    torn, name = _cut(real, path, cut_at, size, lock_timeout)
    lines = torn.count(b"\n") + (0 if torn.endswith(b"\n") or not torn else 1)
    last_cut = max(chain.last_seq + lines, mark.last_seq if mark is not None else 0)
    forced = TailForced(
        offset=cut_at,
        length=len(torn),
        torn_digest=digest_bytes(torn),
        quarantine=name,
        first_seq_cut=chain.last_seq + 1 if last_cut > chain.last_seq else 0,
        last_seq_cut=last_cut if last_cut > chain.last_seq else 0,
        reason=problem.reason if problem is not None else "rollback",
    )
    with JsonlLog.open(path, lock_timeout=lock_timeout, clock=clock) as log:
        log.append_batch([Pending(HEADER_STREAM, forced)])
    return forced


def _cut(real: Path, path: Path, cut_at: int, size: int, lock_timeout: float) -> tuple[bytes, str]:
    """Under the writer lock: keep the bytes after `cut_at`, cut them, drop the side files."""
    try:
        fd = os.open(real, os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        raise os_error(exc, "cannot open to cut", path) from exc
    try:
        lock.acquire(fd, path, lock_timeout)
        if os.fstat(fd).st_size != size:
            raise AsupError(ErrorCode.LOG_LOCKED, "the log changed while it was verified (a writer is active); try again", file=str(path))
        torn = os.pread(fd, size - cut_at, cut_at)
        name = ""
        if torn:
            name = f"{real.name}.forced-{cut_at}"
            if not create_new(real.with_name(name), torn):
                name = f"{real.name}.forced-{cut_at}-{digest_bytes(torn)[7:23]}"
                create_new(real.with_name(name), torn)
        head_record.remove(real)
        try:
            writer_index.index_path(real).unlink(missing_ok=True)
            os.ftruncate(fd, cut_at)
            os.fsync(fd)
        except OSError as exc:
            raise os_error(exc, "cannot cut the log", path) from exc
        return torn, name
    finally:
        os.close(fd)  # and with it the lock
