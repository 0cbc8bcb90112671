"""What a store's failure means to a transfer: the I/O failure or refusal a store raised
after the intent was recorded, turned into the `store_failed` observation the adapter
records before it fails closed (so no failure leaves a transfer `syncing` for ever).

    Guarded(source)              a source store whose failures name where they happened
    GuardedHandle(handle)        the same for one target handle (its checkpoint apart)
    StoreFault                   what either raises: where, op and the observation to record

A failure of the log itself is not one of these: nothing can be recorded then.
"""

from __future__ import annotations

import contextlib
import errno as errnos
import os
from collections.abc import Iterator

from engine.layout import Layout
from engine.stores import SourceStore
from engine.target_store import Digest, Forwarding, Held, Lease
from events.errors import AsupError, ErrorCode
from events.observations import BundleFile, StoreFailed


class Refused(AsupError):
    """The target refused the transfer before anything of it was recorded (a planted name, a
    bad path): the one transfer is not run; in a batch, the others go on."""

    def __init__(self, error: AsupError) -> None:
        super().__init__(error.code, error.message, file=error.file, line=error.line, field=error.field, errno=error.errno)


class StoreFault(Exception):
    """A store call failed: `observed` is what the transfer records about it."""

    def __init__(self, observed: StoreFailed) -> None:
        super().__init__(observed.detail)
        self.observed = observed


def describe(exc: AsupError | OSError, where: str, op: str) -> StoreFailed:
    """The observation for `exc`: an OS failure (errno and path), a refusal of something
    planted at asup's names, or a conflict the store itself detected."""
    if isinstance(exc, OSError):
        code = exc.errno or 0
        path = str(exc.filename or "")
        detail = cause_line(code, exc.strerror or str(exc), path)
        return StoreFailed(kind="io", where=where, op=op, path=path, errno=code, error=_name(code), detail=detail)
    code = exc.errno or 0
    if exc.code is ErrorCode.CONFLICT_DETECTED:
        kind = "conflict"
    elif exc.code is ErrorCode.USAGE and not code:
        kind = "refused"  # something planted at a name asup owns appeared mid-transfer
    else:
        kind = "io"
    detail = cause_line(code, exc.message, exc.file or "") if code else f"{exc.message}: {exc.file}" if exc.file else exc.message
    return StoreFailed(kind=kind, where=where, op=op, path=exc.file or "", errno=code, error=_name(code), detail=detail)


def cause_line(code: int, what: str, path: str) -> str:
    """`no space left on device: out/x.bin`: the OS's words for `code`, then the path."""
    words = os.strerror(code) if code else what
    words = words[:1].lower() + words[1:]
    return f"{words}: {path}" if path else words


def _name(code: int) -> str:
    return errnos.errorcode.get(code, "") if code else ""


@contextlib.contextmanager
def _guard(where: str, op: str) -> Iterator[None]:
    try:
        yield
    except (AsupError, OSError) as exc:
        raise StoreFault(describe(exc, where, op)) from exc


class Guarded:
    """A source store whose failures are `StoreFault`s (where: source)."""

    def __init__(self, inner: SourceStore) -> None:
        self.inner = inner

    def manifest(self, name: str, *, hashed: bool = True) -> tuple[str, list[BundleFile]]:
        with _guard("source", "manifest"):
            return self.inner.manifest(name, hashed=hashed)

    def hash_chunks(self, name: str, chunk_size: int) -> tuple[str, int, list[str]]:
        with _guard("source", "manifest"):
            return self.inner.hash_chunks(name, chunk_size)

    def read(self, name: str, layout: Layout, offset: int, length: int) -> bytes:
        with _guard("source", "read"):
            return self.inner.read(name, layout, offset, length)


class GuardedHandle(Forwarding):
    """A target handle whose failures are `StoreFault`s (where: target, or checkpoint)."""

    def lease(self, holder: str) -> Lease | None:
        with _guard("target", "lease"):
            return self.inner.lease(holder)

    def epoch(self) -> str:
        with _guard("target", "epoch"):
            return self.inner.epoch()

    def held(self) -> Held:
        with _guard("target", "held"):
            return self.inner.held()

    def prepare(self, cursor: int) -> None:
        with _guard("target", "prepare"):
            self.inner.prepare(cursor)

    def write(self, offset: int, data: bytes) -> tuple[int, str]:
        with _guard("target", "write"):
            return self.inner.write(offset, data)

    def digest(self) -> Digest:
        with _guard("target", "digest"):
            return self.inner.digest()

    def publish(self) -> None:
        with _guard("target", "publish"):
            self.inner.publish()

    def checkpoint(self, data: bytes) -> str:
        with _guard("checkpoint", "write"):
            return self.inner.checkpoint(data)

    def tidy(self, completed: bool) -> None:
        with _guard("target", "tidy"):
            self.inner.tidy(completed)
