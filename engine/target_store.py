"""The target store protocol: where an artifact's bytes go.

    store.open(name, layout, kind) -> handle     one artifact of the target, kind 'file' | 'bundle'
    store.load_checkpoint(ref) -> bytes          a checkpoint a handle saved, by the ref it returned

    handle.lease(holder) -> Lease | None         exclusive while held (None: another holds it); holder: `engine.liveness.holder_for`
    handle.lease_holder() -> str                 who holds it, in words (pid, host, since)
    handle.epoch() -> str                        `g<N>`, or `g<N>+foreign` once another hand changed it
    handle.held() -> Held                        contiguous bytes of the unpublished artifact; the final's digest
    handle.prepare(cursor)                       hold exactly the first `cursor` bytes; leftovers set aside
    handle.write(offset, data) -> (held, epoch)  bytes at a stream offset
    handle.digest() -> (digest, size)            of what `publish` would publish
    handle.publish()                             the final name appears, whole, or CONFLICT_DETECTED
    handle.checkpoint(data) -> ref               saved beside the artifact, atomically
    handle.tidy(completed)                       after the terminal state is recorded: what nobody needs goes
    handle.close()

Bytes go to a hidden unpublished artifact; nothing appears under the final name until
`publish`, which never replaces what is there. `engine.testing.target_store_contract`
states all of it as tests every store passes (the directory store now, a JetStream object
store later).
"""

from __future__ import annotations

from typing import Literal, Protocol

import msgspec

from engine.layout import Layout

Kind = Literal["file", "bundle"]
Digest = tuple[str, int]  # (`blake3:<hex>`, bytes)
UNKNOWN: Digest = ("blake3:-", 0)  # what is there is not an artifact of ours (a link, a special file)


class TransportInterrupted(Exception):
    """Raised by a target store when the transport drops mid-chunk: nothing was committed."""


class LateAck(Exception):
    """Raised by a target store when an acknowledgement for chunk `chunk` arrives late."""

    def __init__(self, chunk: int) -> None:
        super().__init__(f"late acknowledgement for chunk {chunk}")
        self.chunk = chunk


class Held(msgspec.Struct, frozen=True):
    """What the target holds now: `size` contiguous bytes of the unpublished artifact from
    offset 0, and `final`, the digest of what is under the final name (None: nothing)."""

    size: int
    final: Digest | None


class Lease(Protocol):
    def release(self) -> None: ...


class TargetHandle(Protocol):
    def lease(self, holder: str) -> Lease | None: ...

    def lease_holder(self) -> str:
        """Who holds the lease (for a `lease_checked` that did not get it)."""
        ...

    def epoch(self) -> str:
        """A deterministic token: equal to the one the last own write returned while nobody
        else changed the artifact; ending `+foreign` once someone did."""
        ...

    def held(self) -> Held: ...

    def prepare(self, cursor: int) -> None:
        """Make the unpublished artifact hold exactly the first `cursor` bytes: every member
        present (empty ones too), bytes past the cursor cut, anything of an earlier transfer
        that is no member set aside where `publish` never takes it."""
        ...

    def write(self, offset: int, data: bytes) -> tuple[int, str]:
        """Write `data` at stream `offset`; (contiguous bytes held, the epoch right after)."""
        ...

    def digest(self) -> Digest: ...

    def publish(self) -> None:
        """Make the final name appear atomically with the unpublished artifact; an
        `AsupError(CONFLICT_DETECTED)` when anything is there already (never replaced)."""
        ...

    def checkpoint(self, data: bytes) -> str:
        """Save `data` as this artifact's checkpoint (atomic); a ref `load_checkpoint` reads."""
        ...

    def tidy(self, completed: bool) -> None:
        """After the transfer's terminal state is recorded, while the lease is held: remove
        what nobody needs (a completed transfer's checkpoint, a failed one's empty
        unpublished artifact, the lease's own file); keep what a resume needs."""
        ...

    def close(self) -> None: ...


class Forwarding:
    """A handle that passes every call to `inner`: a wrapper (fault injection, a test's
    planting) overrides only the calls it changes."""

    def __init__(self, inner: TargetHandle) -> None:
        self.inner = inner

    def lease(self, holder: str) -> Lease | None:
        return self.inner.lease(holder)

    def lease_holder(self) -> str:
        return self.inner.lease_holder()

    def epoch(self) -> str:
        return self.inner.epoch()

    def held(self) -> Held:
        return self.inner.held()

    def prepare(self, cursor: int) -> None:
        self.inner.prepare(cursor)

    def write(self, offset: int, data: bytes) -> tuple[int, str]:
        return self.inner.write(offset, data)

    def digest(self) -> Digest:
        return self.inner.digest()

    def publish(self) -> None:
        self.inner.publish()

    def checkpoint(self, data: bytes) -> str:
        return self.inner.checkpoint(data)

    def tidy(self, completed: bool) -> None:
        self.inner.tidy(completed)

    def close(self) -> None:
        self.inner.close()


class TargetStore(Protocol):
    def open(self, name: str, layout: Layout, kind: str) -> TargetHandle: ...

    def load_checkpoint(self, ref: str) -> bytes: ...
