"""Artifact stores: where bytes come from and go to. The directory store is the default;
the interface is small so a NATS object store can follow.

Target protocol: bytes go to a hidden temporary artifact (`.NAME.asup-tmp`), checkpoints
to `.NAME.asup-ckpt.json` (atomic), and only `finalize` (fsync, rename, fsync the
directory) makes `NAME` appear — so a failed transfer never leaves a half artifact under
the final name. A lease (`.NAME.asup-lease`, flock) keeps a second sync away.
"""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path
from typing import Protocol

from blake3 import blake3

from engine.layout import MANIFEST_NAME, Layout, bundle_digest, check_name, manifest_bytes
from events import strict_json
from events.atomic import write_atomic
from events.digest import open_regular
from events.errors import AsupError, ErrorCode
from events.observations import BundleFile

HASH_BLOCK = 1 << 20


class TransportInterrupted(Exception):
    """Raised by a target store when the transport drops mid-chunk: nothing was committed."""


class LateAck(Exception):
    """Raised by a target store when an acknowledgement for chunk `chunk` arrives late."""

    def __init__(self, chunk: int) -> None:
        super().__init__(f"late acknowledgement for chunk {chunk}")
        self.chunk = chunk


class Lease(Protocol):
    def release(self) -> None: ...


class SourceStore(Protocol):
    def manifest(self, name: str) -> tuple[str, list[BundleFile]]:
        """(kind, files): kind 'file' (one entry, path '') or 'bundle'."""
        ...

    def read(self, name: str, layout: Layout, offset: int, length: int) -> bytes: ...


class TargetStore(Protocol):
    def lease(self, name: str, holder: str) -> Lease | None: ...

    def epoch(self, name: str) -> str: ...

    def write(self, name: str, layout: Layout, offset: int, data: bytes) -> tuple[int, str]:
        """Write at `offset`; return (contiguous bytes held, the epoch right after)."""
        ...

    def temp_size(self, name: str, layout: Layout) -> int: ...

    def digest_temp(self, name: str, layout: Layout, kind: str) -> tuple[str, int]: ...

    def final_digest(self, name: str, kind: str) -> tuple[str, int] | None: ...

    def finalize(self, name: str, layout: Layout, kind: str) -> None: ...

    def prepare_temp(self, name: str, layout: Layout, kind: str, size: int) -> None: ...

    def save_checkpoint(self, name: str, data: bytes) -> str: ...

    def load_checkpoint(self, path: str) -> bytes: ...


def file_digest(path: Path) -> tuple[str, int]:
    hasher = blake3(max_threads=blake3.AUTO)  # large files hash on every core
    size = 0
    with open_regular(path) as fh:
        while block := fh.read(HASH_BLOCK):
            hasher.update(block)
            size += len(block)
    return "blake3:" + hasher.hexdigest(), size


class FileLease:
    def __init__(self, fd: int) -> None:
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


class DirectoryStore:
    """A directory of artifacts: plain files, or bundle directories of files."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)
        self._generations: dict[str, tuple[str, int]] = {}  # name -> (raw stamp, generation)

    # --- paths ---------------------------------------------------------------------

    def path(self, name: str) -> Path:
        return self.root / check_name(name)

    def _hidden(self, name: str, suffix: str) -> Path:
        final = self.path(name)
        return final.with_name(f".{final.name}.{suffix}")

    def temp_path(self, name: str) -> Path:
        return self._hidden(name, "asup-tmp")

    def checkpoint_path(self, name: str) -> Path:
        return self._hidden(name, "asup-ckpt.json")

    # --- source side -------------------------------------------------------------------

    def manifest(self, name: str) -> tuple[str, list[BundleFile]]:
        path = self.path(name)
        if path.is_symlink() or not path.exists():
            raise AsupError(ErrorCode.USAGE, "source artifact is missing or a symlink", file=str(path))
        if path.is_file():
            digest, size = file_digest(path)
            return "file", [BundleFile("", size, digest)]
        if not path.is_dir():
            raise AsupError(ErrorCode.USAGE, "source artifact is neither a file nor a directory", file=str(path))
        return "bundle", self._bundle_files(path)

    def _bundle_files(self, root: Path) -> list[BundleFile]:
        files = []
        for item in sorted(root.rglob("*")):
            mode = item.lstat().st_mode
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                kind = "a symlink" if stat.S_ISLNK(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a socket or device"
                why = f"bundle member is {kind}: a bundle holds only regular files and directories"
                raise AsupError(ErrorCode.USAGE, why, file=str(item))
            if item.name != MANIFEST_NAME:
                digest, size = file_digest(item)
                files.append(BundleFile(item.relative_to(root).as_posix(), size, digest))
        return files

    def read(self, name: str, layout: Layout, offset: int, length: int) -> bytes:
        base = self.path(name)
        parts = []
        for index, at, take in layout.pieces(offset, length):
            fd = os.open(_member(base, layout, index), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a FIFO swapped in must not block
            try:
                parts.append(os.pread(fd, take, at))
            finally:
                os.close(fd)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    # --- target side --------------------------------------------------------------------

    def lease(self, name: str, holder: str) -> Lease | None:
        path = self._hidden(name, "asup-lease")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        os.ftruncate(fd, 0)
        os.pwrite(fd, holder.encode(), 0)
        return FileLease(fd)

    def epoch(self, name: str) -> str:
        """Who last changed the target, as a deterministic token: `g<N>` while the target is
        as this store last left it (N counts our own writes), `g<N>+foreign` once its
        (inode, size, mtime) of the temp or final artifact moved under someone else's hand.
        Raw stamps vary run to run; tokens do not, so the same seed gives the same log."""
        raw = self._raw_stamp(name)
        known = self._generations.setdefault(name, (raw, 0))
        return f"g{known[1]}" if raw == known[0] else f"g{known[1]}+foreign"

    def _raw_stamp(self, name: str) -> str:
        return "/".join(_stamp(path) for path in (self.temp_path(name), self.path(name)))

    def _own_write(self, name: str) -> str:
        generation = self._generations.get(name, ("", 0))[1] + 1
        self._generations[name] = (self._raw_stamp(name), generation)
        return f"g{generation}"

    def write(self, name: str, layout: Layout, offset: int, data: bytes) -> tuple[int, str]:
        temp = self.temp_path(name)
        temp.parent.mkdir(parents=True, exist_ok=True)
        done = 0
        for index, at, take in layout.pieces(offset, len(data)):
            member = _member(temp, layout, index)
            member.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(member, os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                os.pwrite(fd, data[done : done + take], at)
            finally:
                os.close(fd)
            done += take
        return self.temp_size(name, layout), self._own_write(name)

    def temp_size(self, name: str, layout: Layout) -> int:
        """Contiguous bytes of the stream the temp artifact holds from offset 0."""
        temp = self.temp_path(name)
        total = 0
        for index, f in enumerate(layout.files):
            member = _member(temp, layout, index)
            size = member.stat().st_size if member.exists() else 0
            total += min(size, f.size)
            if size < f.size:
                break
        return total

    def prepare_temp(self, name: str, layout: Layout, kind: str, size: int) -> None:
        """Make the temporary artifact hold exactly the first `size` committed bytes: every
        member exists (empty files included), bytes past the cursor are cut (they were never
        committed), and files that are not members (leftovers of an earlier transfer) are
        moved out to `.NAME.asup-leftovers-<n>/` so they can never be published."""
        temp = self.temp_path(name)
        temp.parent.mkdir(parents=True, exist_ok=True)
        if kind == "bundle":
            temp.mkdir(exist_ok=True)
            self._move_leftovers(name, layout)
        for index, f in enumerate(layout.files):
            member = _member(temp, layout, index)
            member.parent.mkdir(parents=True, exist_ok=True)
            keep = max(0, min(f.size, size - layout.starts[index]))
            fd = os.open(member, os.O_WRONLY | os.O_CREAT, 0o644)
            try:
                if os.fstat(fd).st_size > keep:
                    os.ftruncate(fd, keep)
            finally:
                os.close(fd)

    def _move_leftovers(self, name: str, layout: Layout) -> None:
        temp = self.temp_path(name)
        members = {f.path for f in layout.files}
        strays = [p for p in temp.rglob("*") if p.is_file() and p.relative_to(temp).as_posix() not in members]
        if not strays:
            return
        n = 1
        while (aside := self._hidden(name, f"asup-leftovers-{n}")).exists():
            n += 1
        for stray in strays:
            target = aside / stray.relative_to(temp)
            target.parent.mkdir(parents=True, exist_ok=True)
            stray.rename(target)

    def digest_temp(self, name: str, layout: Layout, kind: str) -> tuple[str, int]:
        return _digest(self.temp_path(name), layout, kind)

    def final_digest(self, name: str, kind: str) -> tuple[str, int] | None:
        final = self.path(name)
        if not final.exists():
            return None
        if kind == "file":
            return file_digest(final) if final.is_file() else ("blake3:-", 0)
        if not final.is_dir():
            return ("blake3:-", 0)
        files = self._bundle_files(final)  # the bytes there now, not what its manifest claims
        return bundle_digest(files), sum(f.size for f in files)

    def finalize(self, name: str, layout: Layout, kind: str) -> None:
        temp, final = self.temp_path(name), self.path(name)
        if kind == "bundle":
            for index in range(len(layout.files)):
                _fsync_path(_member(temp, layout, index))
            write_atomic(temp / MANIFEST_NAME, manifest_bytes(layout.files))  # published last
        else:
            _fsync_path(temp)
        if final.exists():
            raise AsupError(ErrorCode.CONFLICT_DETECTED, "the final artifact appeared during the transfer", file=str(final))
        temp.rename(final)
        _fsync_path(final.parent)

    # --- checkpoints ----------------------------------------------------------------------

    def save_checkpoint(self, name: str, data: bytes) -> str:
        path = self.checkpoint_path(name)
        # not fsynced: the chunk bytes it counts are not synced before finalize either, so a
        # synced checkpoint could promise bytes a crash lost (the final digest check catches both)
        write_atomic(path, data, sync=False)
        return str(path)

    def load_checkpoint(self, path: str) -> bytes:
        return strict_json.read(Path(path), what="checkpoint", code=ErrorCode.USAGE)


def _stamp(path: Path) -> str:
    """(inode, size, mtime) of a file, or of every file of a bundle directory, hashed."""
    try:
        if not path.is_dir():
            st = path.stat()
            return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
        stamps = [f"{p.relative_to(path)}={_stamp(p)}" for p in sorted(path.rglob("*")) if p.is_file()]
        return "dir:" + blake3("\n".join(stamps).encode()).hexdigest()[:16]
    except FileNotFoundError:
        return "-"


def _member(base: Path, layout: Layout, index: int) -> Path:
    rel = layout.files[index].path
    return base / rel if rel else base


def _digest(base: Path, layout: Layout, kind: str) -> tuple[str, int]:
    if kind == "file":
        return file_digest(base) if base.is_file() else ("blake3:-", 0)
    files = []
    for index, f in enumerate(layout.files):
        member = _member(base, layout, index)
        digest, size = file_digest(member) if member.is_file() else ("blake3:-", 0)
        files.append(BundleFile(f.path, size, digest))
    return bundle_digest(files), sum(f.size for f in files)


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
