"""What the writing commands (sync, sync-batch, resume, scenario run) share about the log
they append to, a JSONL file or a `nats://` stream: opening it, and the message a failure
of its server (or of an object-store target's) mid-transfer ends with."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from events.atomic import make_dirs
from events.clock import Clock
from events.errors import AsupError, ErrorCode
from events.log_ref import LogRef, open_store
from events.store import LogStore

LOG_HELP = "The log to append to: a JSONL file, or a JetStream stream as nats://HOST:PORT/STREAM[?replicas=N&timeout=S]"


@contextlib.contextmanager
def open_log(ref: LogRef, *, log_id: str | None = None, clock: Clock | None = None) -> Iterator[LogStore]:
    """The log open for append, created when missing (a file's folder too: a stream has
    none), closed afterwards."""
    if ref.url is None:
        make_dirs(ref.path.parent)
    log = open_store(ref, log_id=log_id, clock=clock)
    try:
        yield log
    finally:
        log.close()


def lost_server(error: AsupError, ref: LogRef, resume_with: str) -> AsupError:
    """A transfer that lost its log's server: the same one line, saying how to continue.
    Other errors are returned as they are."""
    if error.code is not ErrorCode.LOG_UNREACHABLE or error.file != ref.text:
        return error
    message = f"{error.message}; the transfer stopped (what the server acknowledged is stored); once it is back: {resume_with}"
    return AsupError(error.code, message, file=error.file, line=error.line, field=error.field, seq=error.seq, errno=error.errno)


def lost_target_server(error: BaseException | None, ref: LogRef, resume_with: str) -> AsupError | None:
    """A transfer whose object-store target stopped answering (the failure recorded, as
    `io_failed`, in the log `ref` names): one line saying how to continue, exit 4 as for a
    lost log. None for any other store failure (the transfer's report says it)."""
    if not isinstance(error, AsupError) or error.code is not ErrorCode.LOG_UNREACHABLE:
        return None
    # the lease could not be released either: a resume is refused until it lapses
    message = (
        f"{error.message}; the transfer failed closed (io_failed, recorded in {ref.text}); "
        f"once the server is back and the transfer's lease has lapsed (a TTL after its last renewal): {resume_with}"
    )
    return AsupError(error.code, message, file=error.file)
