"""The directory store: artifacts as plain files, or bundle directories of files, under
one root. As a source it lists and reads them; as a target (`engine.target_store`) it opens
a `DirectoryHandle` (`engine.directory_target`) per artifact, whose files beside the
artifact are created and reused only safely, through the `FileSystem` given here (a test
hands it `FaultyFS`). `load_checkpoint` reads a checkpoint by its path, never through a
link or from a FIFO."""

from __future__ import annotations

import contextlib
import errno
import stat
from pathlib import Path

from blake3 import blake3

from engine.directory_target import DirectoryHandle, Generations
from engine.layout import MANIFEST_NAME, Layout, check_name
from engine.owned_files import check_own
from engine.target_reads import HASH_BLOCK, READ, read_all
from events import strict_json
from events.atomic import describe, refusal
from events.digest import open_regular
from events.errors import AsupError, ErrorCode
from events.fs import OS, FileSystem
from events.observations import BundleFile


def file_digest(path: Path) -> tuple[str, int]:
    digest, size, _ = chunk_digests(path, 0)
    return digest, size


def chunk_digests(path: Path, chunk_size: int) -> tuple[str, int, list[str]]:
    """(digest, size, the digest of each `chunk_size` piece) of the file at `path`, in one
    read of it: the precheck's pass also gives the digests the chunk commits record, so the
    bytes are not read and hashed again for them (chunk_size 0: no piece digests)."""
    hasher = blake3(max_threads=blake3.AUTO)  # large files hash on every core
    block_size = chunk_size or HASH_BLOCK
    size, pieces = 0, []
    with open_regular(path) as fh:
        while block := fh.read(block_size):
            hasher.update(block)
            size += len(block)
            if chunk_size:
                pieces.append("blake3:" + blake3(block, max_threads=blake3.AUTO).hexdigest())
    return "blake3:" + hasher.hexdigest(), size, pieces


class DirectoryStore:
    """A directory of artifacts: the source side reads them, the target side (`open`) writes them."""

    def __init__(self, root: Path | str, fs: FileSystem = OS) -> None:
        self.root = Path(root)
        self.fs = fs
        self._generations = Generations()  # shared by every handle: a resumed session goes on counting

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

    def owned_paths(self, name: str, layout: Layout, kind: str) -> list[Path]:
        """Every path this store creates for artifact `name` (the first leftovers directory
        standing for all of them): what a planted-name test must plant at."""
        paths = [self.temp_path(name), self._hidden(name, "asup-lease"), self.checkpoint_path(name)]
        if kind == "bundle":
            temp = self.temp_path(name)
            dirs = sorted({"/".join(f.path.split("/")[:i]) for f in layout.files for i in range(1, f.path.count("/") + 1)})
            paths += [self._hidden(name, "asup-leftovers-1"), *(temp / d for d in dirs), *(temp / f.path for f in layout.files)]
            paths.append(temp / MANIFEST_NAME)
        return paths

    # --- source side -------------------------------------------------------------------

    def manifest(self, name: str, *, hashed: bool = True) -> tuple[str, list[BundleFile]]:
        path = self.path(name)
        if path.is_symlink() or not path.exists():
            raise AsupError(ErrorCode.USAGE, "source artifact is missing or a symlink", file=str(path))
        if path.is_file():
            if not hashed:  # the caller was given the checksum: the precheck hashes it
                return "file", [BundleFile("", path.stat().st_size, "")]
            digest, size = file_digest(path)
            return "file", [BundleFile("", size, digest)]
        if not path.is_dir():
            raise AsupError(ErrorCode.USAGE, "source artifact is neither a file nor a directory", file=str(path))
        return "bundle", self._bundle_files(path)

    def hash_chunks(self, name: str, chunk_size: int) -> tuple[str, int, list[str]]:
        """A file artifact's (digest, size, chunk digests) in one pass (`chunk_digests`)."""
        path = self.path(name)
        if path.is_symlink() or not path.is_file():
            raise AsupError(ErrorCode.USAGE, "source artifact is missing, a symlink or not a file", file=str(path))
        return chunk_digests(path, chunk_size)

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
            rel = layout.files[index].path
            fd = self.fs.open(str(base / rel if rel else base), READ)  # a FIFO swapped in must not block
            try:
                parts.append(self.fs.pread(fd, take, at))
            finally:
                self.fs.close(fd)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    # --- target side --------------------------------------------------------------------

    def open(self, name: str, layout: Layout, kind: str) -> DirectoryHandle:
        if kind not in ("file", "bundle"):
            raise AsupError(ErrorCode.USAGE, f"artifact kind {kind!r} is neither 'file' nor 'bundle'")
        name = check_name(name)
        self._refuse_planted(name, layout, kind)
        return DirectoryHandle(self.fs, self.root, name, layout, kind, self._generations)

    def _refuse_planted(self, name: str, layout: Layout, kind: str) -> None:
        """Something planted at a name this store will create (a link, a FIFO, a hardlink, a
        directory where a file goes) is refused here, before the transfer records anything; the
        handle checks each name again as it creates or reuses it, for what appears meanwhile."""
        temp = self.temp_path(name)
        dirs = {temp} | {temp / d for f in layout.files for d in _parents(f.path)} if kind == "bundle" else set()
        for path in self.owned_paths(name, layout, kind):
            if path.name.startswith(f".{Path(name).name}.asup-leftovers-"):
                continue  # a taken leftovers name is skipped, never reused
            try:
                st = self.fs.stat(str(path), follow_symlinks=False)
            except FileNotFoundError:
                continue
            except OSError as exc:  # a file where a directory of the path should be
                raise refusal("a file where a directory goes", path) from exc
            if path in dirs:
                if not stat.S_ISDIR(st.st_mode):
                    raise refusal(describe(st) if not stat.S_ISREG(st.st_mode) else "a file where a directory goes", path)
            else:
                check_own(st, path)

    def load_checkpoint(self, ref: str) -> bytes:
        """The checkpoint file `ref`, bounded; a link or special file there is refused, never read."""
        try:
            fd = self.fs.open(ref, READ)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise refusal("a symlink", ref) from exc
            raise AsupError(ErrorCode.USAGE, f"cannot read checkpoint: {exc.strerror or exc}", file=ref) from exc
        try:
            if not stat.S_ISREG(self.fs.fstat(fd).st_mode):
                raise refusal("a special file", ref)
            data = read_all(self.fs, fd, strict_json.MAX_DOCUMENT + 1)
        except OSError as exc:
            raise AsupError(ErrorCode.USAGE, f"cannot read checkpoint: {exc.strerror or exc}", file=ref) from exc
        finally:
            with contextlib.suppress(OSError):
                self.fs.close(fd)
        if len(data) > strict_json.MAX_DOCUMENT:
            raise AsupError(ErrorCode.USAGE, f"invalid checkpoint: the file is over the {strict_json.MAX_DOCUMENT}-byte limit", file=ref)
        return data


def _parents(rel: str) -> list[str]:
    """The directories of a bundle member's path: `a/b/c` -> `a`, `a/b`."""
    parts = rel.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]
