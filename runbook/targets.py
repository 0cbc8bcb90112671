"""DST as an operator names it, resolved for the writing commands (sync, sync-batch,
resume): a path (an artifact of the directory store there) or an artifact of a JetStream
object-store bucket, `nats://HOST:PORT/BUCKET[?OPTIONS]#NAME` (`engine.object_url`). A URL
is checked here, before anything is read or recorded; nothing connects until the
transfer opens the artifact."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from engine.object_url import parse_target
from engine.stores import DirectoryStore
from events.errors import AsupError, ErrorCode
from events.jetstream.url import is_url

if TYPE_CHECKING:
    from engine.object_store import ObjectStore  # nats-py is imported only for a bucket URL

TARGET_HELP = "Target: a path (appears only once the transfer completes), or an object-store artifact nats://HOST:PORT/BUCKET#NAME"


class Target:
    """One artifact to write: its store, its name there, and the target path the intent
    records (`recorded`: a Path, which the intent makes absolute, or the URL text)."""

    def __init__(self, given: str, name: str, recorded: Path | str, store: DirectoryStore | ObjectStore) -> None:
        self.given = given  # as the operator wrote it (a path normalised): a derived transfer id hashes this
        self.name = name
        self.recorded = recorded
        self.store = store

    def checkpoint_ref(self) -> str:
        """What the store's `load_checkpoint` reads for this artifact (its last part is
        what a transfer records as the checkpoint's name)."""
        if not isinstance(self.store, DirectoryStore):
            return self.store.checkpoint_ref(self.name)
        return str(self.store.checkpoint_path(self.name))

    def saved_checkpoint(self) -> str | None:
        """`checkpoint_ref()` when a checkpoint is saved there, else None."""
        if not isinstance(self.store, DirectoryStore):
            return self.store.saved_checkpoint(self.name)
        ref = self.checkpoint_ref()
        return ref if os.path.lexists(ref) else None

    def close(self) -> None:
        """The store's connection, if it made one. Closing one whose server went away has
        nothing to report: what the transfer met is said already."""
        if not isinstance(self.store, DirectoryStore):
            with contextlib.suppress(AsupError):
                self.store.close()


def target_of(
    text: str,
    *,
    what: str = "DST",
    file: str | None = None,
    line: int | None = None,
    field: str | None = None,
    shared: dict[str, ObjectStore] | None = None,
) -> Target:
    """The target `text` names (`what`: the argument or field it came from, named by a
    malformed URL's usage error; `file`, `line`, `field`: where it was read, when not
    from the command line). `shared` keeps one store per bucket URL, so the lines of a
    batch share its connections."""
    if not is_url(text):
        path = Path(text)
        return Target(str(path), path.name, path, DirectoryStore(path.parent))
    try:
        bucket, name = parse_target(text)
    except AsupError as exc:
        if file is None:
            raise AsupError(ErrorCode.USAGE, f"{what}: {exc.message}", file=text) from None
        raise AsupError(ErrorCode.USAGE, f"{what} {text!r}: {exc.message}", file=file, line=line, field=field) from None
    store = shared.get(bucket.text) if shared is not None else None
    if store is None:
        from engine.object_store import ObjectStore

        store = ObjectStore(bucket.text)  # connects only when the transfer opens the artifact
        if shared is not None:
            shared[bucket.text] = store
    return Target(text, name, store.target_path(name), store)


@contextlib.contextmanager
def shared_stores() -> Iterator[dict[str, ObjectStore]]:
    """The object stores `target_of(..., shared=)` opens, one per bucket URL, all closed
    afterwards (a lost server's closing has nothing to add)."""
    stores: dict[str, ObjectStore] = {}
    try:
        yield stores
    finally:
        for store in stores.values():
            with contextlib.suppress(AsupError):
                store.close()
