"""The directory store: artifacts as plain files, or bundle directories of files.

As a target (`engine.target_store`), for an artifact `NAME` it keeps beside it:

    .NAME.asup-tmp               the unpublished artifact (a file, or a directory for a bundle)
    .NAME.asup-lease             the lease (an flock held on it)
    .NAME.asup-ckpt.json         the checkpoint (replaced atomically)
    .NAME.asup-leftovers-<n>/    what an earlier transfer left in a bundle's temp directory

Every one of them, and every member and subdirectory inside the temp directory, is created
new relative to a directory fd, or reused only when it is a regular file with one link (a
directory for a directory name), never through a link (`engine.owned_files`). `publish`
fsyncs the artifact, moves it to `NAME` with `renameat2(RENAME_NOREPLACE)` (something
there is a conflict, never replaced) and fsyncs the directory; a bundle's manifest is
written last, inside the temp directory. All file I/O goes through `fs` (`events.fs`), so a
test hands it `FaultyFS`. An OS failure is an `AsupError` naming the file.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
from collections.abc import Iterator
from pathlib import Path

from blake3 import blake3

from engine.layout import MANIFEST_NAME, Layout, bundle_digest, check_name, manifest_bytes
from engine.owned_files import Opened, check_own, open_own, own_dir, refusal, walk
from engine.target_store import UNKNOWN, Digest, Held
from events import strict_json
from events.atomic import make_dir_in, make_dirs, open_dir, write_all, write_atomic
from events.digest import open_regular
from events.errors import AsupError, ErrorCode, os_error
from events.fs import OS, FileSystem
from events.observations import BundleFile

HASH_BLOCK = 1 << 20
LEFTOVERS_LIMIT = 10_000
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
_READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK


def file_digest(path: Path) -> tuple[str, int]:
    hasher = blake3(max_threads=blake3.AUTO)  # large files hash on every core
    size = 0
    with open_regular(path) as fh:
        while block := fh.read(HASH_BLOCK):
            hasher.update(block)
            size += len(block)
    return "blake3:" + hasher.hexdigest(), size


class FileLease:
    def __init__(self, fs: FileSystem, fd: int) -> None:
        self._fs = fs
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            with contextlib.suppress(OSError):  # closing drops the flock whatever close reports
                self._fs.close(fd)


class DirectoryStore:
    """A directory of artifacts: the source side reads them, the target side (`open`) writes them."""

    def __init__(self, root: Path | str, fs: FileSystem = OS) -> None:
        self.root = Path(root)
        self.fs = fs
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
            rel = layout.files[index].path
            fd = os.open(base / rel if rel else base, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)  # a FIFO swapped in must not block
            try:
                parts.append(os.pread(fd, take, at))
            finally:
                os.close(fd)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    # --- target side --------------------------------------------------------------------

    def open(self, name: str, layout: Layout, kind: str) -> DirectoryHandle:
        if kind not in ("file", "bundle"):
            raise AsupError(ErrorCode.USAGE, f"artifact kind {kind!r} is neither 'file' nor 'bundle'")
        return DirectoryHandle(self, check_name(name), layout, kind)

    def load_checkpoint(self, ref: str) -> bytes:
        """The checkpoint file `ref`, bounded; a link or special file there is refused, never read."""
        try:
            fd = self.fs.open(ref, _READ)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise refusal("a symlink", ref) from exc
            raise AsupError(ErrorCode.USAGE, f"cannot read checkpoint: {exc.strerror or exc}", file=ref) from exc
        try:
            if not stat.S_ISREG(self.fs.fstat(fd).st_mode):
                raise refusal("a special file", ref)
            data = _read_all(self.fs, fd, strict_json.MAX_DOCUMENT + 1)
        except OSError as exc:
            raise AsupError(ErrorCode.USAGE, f"cannot read checkpoint: {exc.strerror or exc}", file=ref) from exc
        finally:
            with contextlib.suppress(OSError):
                self.fs.close(fd)
        if len(data) > strict_json.MAX_DOCUMENT:
            raise AsupError(ErrorCode.USAGE, f"invalid checkpoint: the file is over the {strict_json.MAX_DOCUMENT}-byte limit", file=ref)
        return data

    def epoch_token(self, name: str, raw: str) -> str:
        """`g<N>` while `raw` (the artifact's stamps) is as this store's own last write left
        it, `g<N>+foreign` once it moved under someone else's hand. Raw stamps vary run to
        run; tokens do not, so the same seed gives the same log. Counted per store, across
        handles: a resumed session in the same process goes on counting."""
        known = self._generations.setdefault(name, (raw, 0))
        return f"g{known[1]}" if raw == known[0] else f"g{known[1]}+foreign"

    def own_write(self, name: str, raw: str) -> str:
        generation = self._generations.get(name, ("", 0))[1] + 1
        self._generations[name] = (raw, generation)
        return f"g{generation}"


class DirectoryHandle:
    """One artifact of a `DirectoryStore` target (see the module docstring)."""

    def __init__(self, store: DirectoryStore, name: str, layout: Layout, kind: str) -> None:
        self._store = store
        self._fs = store.fs
        self._name = name
        self._layout = layout
        self._bundle = kind == "bundle"
        self.path = store.path(name)
        self._final = self.path.name
        self._temp = f".{self._final}.asup-tmp"
        self._lease_name = f".{self._final}.asup-lease"
        self.temp_path = self.path.with_name(self._temp)
        self._parent: int | None = None
        self._leases: list[FileLease] = []

    # --- the protocol -------------------------------------------------------------------

    def lease(self, holder: str) -> FileLease | None:
        path = self.path.with_name(self._lease_name)
        with self._io("cannot take the lease", path):
            parent = self._dir(create=True)
            opened = open_own(self._fs, parent, self._lease_name, path, os.O_RDWR, create=True)
            assert opened is not None
            fd = opened[0]
            try:
                self._fs.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._fs.close(fd)
                return None
            except BaseException:
                with contextlib.suppress(OSError):
                    self._fs.close(fd)
                raise
            lease = FileLease(self._fs, fd)
            self._leases.append(lease)
            self._fs.ftruncate(fd, 0)
            self._fs.pwrite(fd, holder.encode(), 0)
            return lease

    def epoch(self) -> str:
        return self._store.epoch_token(self._name, self._raw_stamp())

    def held(self) -> Held:
        with self._io("cannot read", self.temp_path):
            parent = self._dir_or_none(create=False)
            if parent is None:
                return Held(0, None)
            return Held(self._held_bytes(parent), self._final_digest(parent))

    def prepare(self, cursor: int) -> None:
        with self._io("cannot prepare", self.temp_path), Opened(self._fs) as opened:
            base = self._base(opened, create=True)
            assert base is not None
            if self._bundle:
                self._set_leftovers_aside(base)
            for index, f in enumerate(self._layout.files):
                keep = max(0, min(f.size, cursor - self._layout.starts[index]))
                fd, st = self._member(opened, base, index, os.O_WRONLY)
                try:
                    if st.st_size > keep:
                        self._fs.ftruncate(fd, keep)
                finally:
                    self._fs.close(fd)

    def write(self, offset: int, data: bytes) -> tuple[int, str]:
        with self._io("cannot write", self.temp_path), Opened(self._fs) as opened:
            base = self._base(opened, create=True)
            assert base is not None
            done = 0
            for index, at, take in self._layout.pieces(offset, len(data)):
                fd, _ = self._member(opened, base, index, os.O_WRONLY)
                try:
                    _pwrite_all(self._fs, fd, data[done : done + take], at)
                finally:
                    self._fs.close(fd)
                done += take
        held = self.held().size
        return held, self._store.own_write(self._name, self._raw_stamp())

    def digest(self) -> Digest:
        with self._io("cannot read", self.temp_path), Opened(self._fs) as opened:
            base = self._base(opened, create=False)
            if base is None:
                return UNKNOWN
            if not self._bundle:
                return self._digest_own(base, self._temp, self.temp_path)
            files = []
            for index, f in enumerate(self._layout.files):
                where = self._member_dir(opened, base, index, create=False)
                digest, size = UNKNOWN if where is None else self._digest_own(where[0], where[1], self.temp_path / f.path)
                files.append(BundleFile(f.path, size, digest))
            return bundle_digest(files), sum(f.size for f in files)

    def publish(self) -> None:
        with self._io("cannot publish", self.path), Opened(self._fs) as opened:
            parent = self._dir(create=True)
            if self._bundle:
                self._sync_bundle(opened, parent)
            else:
                self._sync_own(parent, self._temp, self.temp_path)
            try:
                self._fs.rename_noreplace(self._temp, self._final, src_dir_fd=parent, dst_dir_fd=parent)
            except FileExistsError:
                why = "the final artifact appeared during the transfer"
                raise AsupError(ErrorCode.CONFLICT_DETECTED, why, file=str(self.path)) from None
            self._fs.fsync(parent)

    def checkpoint(self, data: bytes) -> str:
        path = self._store.checkpoint_path(self._name)
        with self._io("cannot write", path):
            self._dir(create=True)
        # not fsynced: the chunk bytes it counts are not synced before publish either, so a
        # synced checkpoint could promise bytes a crash lost (the final digest check catches both)
        write_atomic(path, data, sync=False, fs=self._fs)
        return str(path)

    def close(self) -> None:
        for lease in self._leases:
            lease.release()
        self._leases = []
        if self._parent is not None:
            fd, self._parent = self._parent, None
            with contextlib.suppress(OSError):
                self._fs.close(fd)

    # --- directories --------------------------------------------------------------------

    @contextlib.contextmanager
    def _io(self, doing: str, path: Path) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            raise os_error(exc, doing, path) from exc

    def _dir(self, *, create: bool) -> int:
        """The fd of the directory the artifact is in (None-free: see `_dir_or_none`)."""
        fd = self._dir_or_none(create=create)
        if fd is None:
            raise FileNotFoundError(2, "no such directory", str(self.path.parent))
        return fd

    def _dir_or_none(self, *, create: bool) -> int | None:
        if self._parent is not None:
            return self._parent
        root = self._store.root
        if create:
            make_dirs(root)
        elif not root.is_dir():
            return None
        fd = open_dir(root, self._fs, for_path=self.path)
        for part in self._name.split("/")[:-1]:  # a nested name's directories, never through a link
            try:
                sub = own_dir(self._fs, fd, part, root / part, create=create)
            finally:
                self._fs.close(fd)
            if sub is None:
                return None
            fd, root = sub, root / part
        self._parent = fd
        return fd

    def _base(self, opened: Opened, *, create: bool) -> int | None:
        """The directory the members are in: the temp directory of a bundle, else the parent."""
        parent = self._dir_or_none(create=create)
        if parent is None or not self._bundle:
            return parent
        temp = own_dir(self._fs, parent, self._temp, self.temp_path, create=create)
        return None if temp is None else opened.keep(temp)

    def _member_dir(self, opened: Opened, base: int, index: int, *, create: bool) -> tuple[int, str] | None:
        """(fd of the directory member `index` is in, its last name), walking the bundle's
        subdirectories one component at a time without following a link."""
        rel = self._layout.files[index].path
        if not rel:
            return base, self._temp
        *dirs, leaf = rel.split("/")
        fd, at = base, self.temp_path
        for part in dirs:
            at = at / part
            sub = own_dir(self._fs, fd, part, at, create=create)
            if sub is None:
                return None
            fd = opened.keep(sub)
        return fd, leaf

    def _member(self, opened: Opened, base: int, index: int, flags: int) -> tuple[int, os.stat_result]:
        where = self._member_dir(opened, base, index, create=True)
        assert where is not None
        rel = self._layout.files[index].path
        found = open_own(self._fs, where[0], where[1], self.temp_path / rel if rel else self.temp_path, flags, create=True)
        assert found is not None
        return found

    # --- what is held -------------------------------------------------------------------

    def _held_bytes(self, parent: int) -> int:
        with Opened(self._fs) as opened:
            base = parent
            if self._bundle:
                temp = own_dir(self._fs, parent, self._temp, self.temp_path, create=False)
                if temp is None:
                    return 0
                base = opened.keep(temp)
            total = 0
            for index, f in enumerate(self._layout.files):
                size = self._member_size(opened, base, index)
                total += min(size, f.size)
                if size < f.size:
                    break
            return total

    def _member_size(self, opened: Opened, base: int, index: int) -> int:
        where = self._member_dir(opened, base, index, create=False)
        if where is None:
            return 0
        try:
            st = self._fs.stat(where[1], dir_fd=where[0], follow_symlinks=False)
        except FileNotFoundError:
            return 0
        rel = self._layout.files[index].path
        check_own(st, self.temp_path / rel if rel else self.temp_path)
        return st.st_size

    def _final_digest(self, parent: int) -> Digest | None:
        """What is under the final name, never read through a link: a link or special file
        there (or a bundle holding one) is UNKNOWN, not ours."""
        try:
            st = self._fs.stat(self._final, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None
        if not self._bundle:
            return self._digest_regular(parent, self._final) if stat.S_ISREG(st.st_mode) else UNKNOWN
        if not stat.S_ISDIR(st.st_mode):
            return UNKNOWN
        try:
            fd = self._fs.open(self._final, _DIR, dir_fd=parent)
        except OSError:
            return UNKNOWN
        try:
            return self._bundle_digest(fd)
        finally:
            with contextlib.suppress(OSError):
                self._fs.close(fd)

    def _bundle_digest(self, dir_fd: int) -> Digest:
        """The bytes there now, not what its manifest claims (manifests themselves excluded)."""
        files = []
        for rel, st in walk(self._fs, dir_fd):
            if stat.S_ISDIR(st.st_mode) or rel.rsplit("/", 1)[-1] == MANIFEST_NAME:
                continue
            if not stat.S_ISREG(st.st_mode):
                return UNKNOWN
            *dirs, leaf = rel.split("/")
            with Opened(self._fs) as opened:
                fd = dir_fd
                for part in dirs:
                    fd = opened.keep(self._fs.open(part, _DIR, dir_fd=fd))
                digest, size = self._digest_regular(fd, leaf)
            files.append(BundleFile(rel, size, digest))
        return bundle_digest(files), sum(f.size for f in files)

    def _digest_regular(self, dir_fd: int, name: str) -> Digest:
        try:
            fd = self._fs.open(name, _READ, dir_fd=dir_fd)
        except OSError:
            return UNKNOWN
        try:
            if not stat.S_ISREG(self._fs.fstat(fd).st_mode):
                return UNKNOWN
            return _hash_fd(self._fs, fd)
        finally:
            with contextlib.suppress(OSError):
                self._fs.close(fd)

    def _digest_own(self, dir_fd: int, name: str, path: Path) -> Digest:
        found = open_own(self._fs, dir_fd, name, path, os.O_RDONLY, create=False)
        if found is None:
            return UNKNOWN
        try:
            return _hash_fd(self._fs, found[0])
        finally:
            with contextlib.suppress(OSError):
                self._fs.close(found[0])

    # --- epoch ----------------------------------------------------------------------------

    def _raw_stamp(self) -> str:
        """(inode, size, mtime) of the temp and the final artifact (of every file of a bundle
        directory, hashed), by lstat: never through a link."""
        with self._io("cannot read", self.temp_path):
            parent = self._dir_or_none(create=False)
            if parent is None:
                return "-/-"
            return f"{self._stamp(parent, self._temp)}/{self._stamp(parent, self._final)}"

    def _stamp(self, parent: int, name: str) -> str:
        try:
            st = self._fs.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return "-"
        if not stat.S_ISDIR(st.st_mode):
            return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
        try:
            fd = self._fs.open(name, _DIR, dir_fd=parent)
        except (FileNotFoundError, NotADirectoryError):
            return "-"
        try:
            lines = [f"{rel}={s.st_ino}:{s.st_size}:{s.st_mtime_ns}" for rel, s in walk(self._fs, fd) if stat.S_ISREG(s.st_mode)]
        finally:
            with contextlib.suppress(OSError):
                self._fs.close(fd)
        return "dir:" + blake3("\n".join(lines).encode()).hexdigest()[:16]

    # --- leftovers and publishing -------------------------------------------------------

    def _set_leftovers_aside(self, temp: int) -> None:
        """Move what is no member (nor a directory on a member's path) out of the temp
        directory into a new `.NAME.asup-leftovers-<n>/`, so it can never be published."""
        members = {f.path for f in self._layout.files}
        dirs = {"/".join(p.split("/")[:i]) for p in members for i in range(1, p.count("/") + 1)}
        strays = []
        skip: tuple[str, ...] = ()
        for rel, st in walk(self._fs, temp):
            if skip and rel.startswith(skip):
                continue
            if stat.S_ISDIR(st.st_mode) and rel in dirs:
                continue
            if rel in members and not stat.S_ISDIR(st.st_mode):
                continue  # a member: reused or refused when it is opened
            strays.append(rel)
            skip = (*skip, rel + "/")  # a stray directory moves whole
        if strays:
            self._move_aside(temp, strays)

    def _move_aside(self, temp: int, strays: list[str]) -> None:
        parent = self._dir(create=True)
        with Opened(self._fs) as opened:
            aside, where = self._new_leftovers_dir(opened, parent)
            for rel in strays:
                *dirs, leaf = rel.split("/")
                src, dst, at = temp, aside, where
                for part in dirs:
                    at = at / part
                    src = opened.keep(self._fs.open(part, _DIR, dir_fd=src))
                    dst = opened.keep(make_dir_in(dst, part, at, self._fs))
                self._fs.rename_noreplace(leaf, leaf, src_dir_fd=src, dst_dir_fd=dst)

    def _new_leftovers_dir(self, opened: Opened, parent: int) -> tuple[int, Path]:
        for n in range(1, LEFTOVERS_LIMIT + 1):
            name = f".{self._final}.asup-leftovers-{n}"
            try:
                self._fs.mkdir(name, 0o755, dir_fd=parent)
            except FileExistsError:
                continue  # an earlier one, or anything planted there: never reused
            path = self.path.with_name(name)
            return opened.keep(own_dir(self._fs, parent, name, path, create=False) or _missing(path)), path
        raise AsupError(ErrorCode.USAGE, f"{LEFTOVERS_LIMIT} leftovers directories already: remove some", file=str(self.temp_path))

    def _sync_bundle(self, opened: Opened, parent: int) -> None:
        """fsync every member and directory of the temp bundle, then write its manifest last."""
        temp = own_dir(self._fs, parent, self._temp, self.temp_path, create=False)
        if temp is None:
            raise FileNotFoundError(2, "the unpublished bundle is gone", str(self.temp_path))
        base = opened.keep(temp)
        synced = {base}
        for index, f in enumerate(self._layout.files):
            where = self._member_dir(opened, base, index, create=False)
            if where is None:
                raise FileNotFoundError(2, "a member of the unpublished bundle is gone", str(self.temp_path / f.path))
            self._sync_own(where[0], where[1], self.temp_path / f.path)
            if where[0] not in synced:
                self._fs.fsync(where[0])
                synced.add(where[0])
        manifest = self.temp_path / MANIFEST_NAME
        found = open_own(self._fs, base, MANIFEST_NAME, manifest, os.O_WRONLY, create=True)
        assert found is not None
        fd, st = found
        try:
            if st.st_size:  # set aside by prepare: anything here now appeared since
                raise refusal("a file that appeared since the transfer began", manifest)
            write_all(fd, memoryview(manifest_bytes(self._layout.files)), self._fs)
            self._fs.fsync(fd)
        finally:
            self._fs.close(fd)
        self._fs.fsync(base)

    def _sync_own(self, dir_fd: int, name: str, path: Path) -> None:
        found = open_own(self._fs, dir_fd, name, path, os.O_RDONLY, create=False)
        if found is None:
            raise FileNotFoundError(2, "the unpublished artifact is gone", str(path))
        try:
            self._fs.fsync(found[0])
        finally:
            self._fs.close(found[0])


def _missing(path: Path) -> int:
    raise FileNotFoundError(2, "the directory just made is gone", str(path))


def _pwrite_all(fs: FileSystem, fd: int, data: bytes, offset: int) -> None:
    """Every byte of `data` at `offset` (a pwrite may take fewer than asked)."""
    while data:
        n = fs.pwrite(fd, data, offset)
        data, offset = data[n:], offset + n


def _read_all(fs: FileSystem, fd: int, limit: int) -> bytes:
    parts, size = [], 0
    while size < limit and (block := fs.pread(fd, min(HASH_BLOCK, limit - size), size)):
        parts.append(block)
        size += len(block)
    return b"".join(parts)


def _hash_fd(fs: FileSystem, fd: int) -> Digest:
    hasher = blake3(max_threads=blake3.AUTO)
    size = 0
    while block := fs.pread(fd, HASH_BLOCK, size):
        hasher.update(block)
        size += len(block)
    return "blake3:" + hasher.hexdigest(), size
