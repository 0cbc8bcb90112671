"""Writing sidecars: a set of files published whole, or not at all.

`Publish` puts each file at its final name as a file asup created (`create_new`: temp,
fsync, link, never replacing), after keeping what was there aside (`move_aside`:
`NAME.<suffix>-<n>`, never replacing either); a symlink, FIFO, directory or hardlinked
file at one of the names is refused, never followed or moved. If any step fails, what it
did is undone in reverse (the new files removed, the kept ones renamed back), so the final
names hold the old sidecar or the whole new one. `write_sidecar` publishes the fragments
first and the manifest last; a new manifest never names a fragment that is not in place.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from pathlib import Path

from engine.durability import MAX_SLOTS, Encoded, Manifest, fragment_path, manifest_bytes
from events.atomic import create_new, move_aside, open_dir, read_small, refuse_foreign, settle_leftover, write_atomic
from events.errors import AsupError, ErrorCode
from events.fs import OS, FileSystem


class Publish:
    """Files replaced as one change; use as a context manager (an exception undoes it)."""

    def __init__(self, suffix: str, fs: FileSystem = OS) -> None:
        self.suffix = suffix
        self.fs = fs
        self.kept: list[tuple[Path, Path]] = []  # (final name, where its old file was kept)
        self.placed: list[Path] = []

    def __enter__(self) -> Publish:
        return self

    def __exit__(self, kind: object, error: object, tb: object) -> None:
        if error is not None:
            self.rollback()

    def put(self, path: Path, data: bytes) -> None:
        """`data` at `path`; what was there (asup's own regular file) kept aside first."""
        self._refuse_foreign(path)
        if self.exists(path):
            self.kept.append((path, move_aside(path, self.suffix, self.fs)))
        try:
            published = create_new(path, data, self.fs)
        except BaseException:
            if read_small(path, len(data), self.fs) == data:  # linked before a later step failed: ours to undo
                self.placed.append(path)
            raise
        if not published:
            raise AsupError(ErrorCode.USAGE, "something appeared at a name asup was writing; remove it", file=str(path))
        self.placed.append(path)
        settle_leftover(path, self.fs)  # a temp name a failed unlink left as a second link: the next replace would refuse it

    def keep_aside(self, path: Path) -> Path:
        """Move asup's own file at `path` aside without a replacement (undone on failure too)."""
        self._refuse_foreign(path)
        kept = move_aside(path, self.suffix, self.fs)
        self.kept.append((path, kept))
        return kept

    def kept_paths(self) -> list[str]:
        return [str(kept) for _, kept in self.kept]

    def rollback(self) -> None:
        """Best effort: each step undone on its own, so one that fails leaves the others undone."""
        for path in reversed(self.placed):
            with contextlib.suppress(OSError, AsupError):
                self._at(path, self._unlink)
        for path, kept in reversed(self.kept):
            with contextlib.suppress(OSError, AsupError):
                self._at(path, functools.partial(self._restore, kept.name))
        self.placed.clear()
        self.kept.clear()

    def _unlink(self, dir_fd: int, name: str) -> None:
        self.fs.unlink(name, dir_fd=dir_fd)

    def _restore(self, kept: str, dir_fd: int, name: str) -> None:
        self.fs.rename_noreplace(kept, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)

    def _refuse_foreign(self, path: Path) -> None:
        self._at(path, lambda fd, _: refuse_foreign(fd, path, self.fs))

    def exists(self, path: Path) -> bool:
        try:
            self.fs.stat(str(path), follow_symlinks=False)
        except FileNotFoundError:
            return False
        return True

    def _at(self, path: Path, call: Callable[[int, str], object]) -> None:
        fd = open_dir(path.parent, self.fs, for_path=path)
        try:
            call(fd, path.name)
        finally:
            with contextlib.suppress(OSError):
                self.fs.close(fd)


def write_sidecar(path: Path, encoded: Encoded, fs: FileSystem = OS) -> list[str]:
    """Publish a new sidecar with its manifest at `path`; an older one is kept aside as
    `NAME.superseded-<n>` (returned). Fragments first, the manifest last."""
    with Publish("superseded", fs) as publish:
        if publish.exists(path):
            publish.keep_aside(path)  # first: from here no manifest names the old fragments
        for extra in [fragment_path(path, i) for i in range(len(encoded.files), MAX_SLOTS)]:
            if publish.exists(extra):  # a fragment of an older, wider sidecar would look like one of ours
                publish.keep_aside(extra)
        for index, data in enumerate(encoded.files):
            publish.put(fragment_path(path, index), data)
        publish.put(path, manifest_bytes(encoded.manifest))
        return publish.kept_paths()


def write_manifest(path: Path, manifest: Manifest, fs: FileSystem = OS) -> None:
    """Replace the manifest alone (a decode proof added): asup's own state file, by rename."""
    write_atomic(path, manifest_bytes(manifest), fs=fs)
