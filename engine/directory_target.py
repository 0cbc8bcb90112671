"""One artifact of a directory store's target: the handle `DirectoryStore.open` returns.

For an artifact `NAME` it keeps beside it:

    .NAME.asup-tmp               the unpublished artifact (a file, or a directory for a bundle)
    .NAME.asup-lease             the lease: an flock held on it; its text names the holder (`engine.liveness`)
    .NAME.asup-ckpt.json         the checkpoint (replaced atomically, `events.atomic.write_atomic`)
    .NAME.asup-leftovers-<n>/    what an earlier transfer left in a bundle's temp (`engine.leftovers`)

Every one of them, and every member and subdirectory inside the temp directory (walked one
component at a time), is created new relative to a directory fd, or reused only when it is
a regular file with one link (a directory for a directory name), never through a link
(`engine.owned_files`). `publish` fsyncs the artifact (a bundle's manifest written last,
inside the temp directory), moves it to `NAME` with `renameat2(RENAME_NOREPLACE)`
(something there is a conflict, never replaced) and fsyncs the directory. All file I/O
goes through `fs`; an OS failure is an `AsupError` naming the file.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from engine import leftovers
from engine.layout import MANIFEST_NAME, Layout, bundle_digest, manifest_bytes
from engine.liveness import MAX_LEASE, describe_holder
from engine.owned_files import Opened, check_own, open_own, own_dir
from engine.target_reads import final_digest, hash_fd, stamp
from engine.target_store import UNKNOWN, Digest, Held
from events.atomic import make_dirs, open_dir, refusal, write_all, write_atomic
from events.errors import AsupError, ErrorCode, os_error
from events.fs import FileSystem
from events.observations import BundleFile

_LEASE_RETRIES = (0.005, 0.02, None)  # seconds between tries; None: the last try
_LEASE_REOPENS = 5  # a lease name removed under us this often is refused, not chased for ever


class FileLease:
    def __init__(self, fs: FileSystem, fd: int) -> None:
        self._fs = fs
        self._fd = fd

    @property
    def held(self) -> int:
        """The descriptor the flock is on (-1 once released)."""
        return self._fd

    def release(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            with contextlib.suppress(OSError):  # closing drops the flock whatever close reports
                self._fs.close(fd)


class Generations:
    """Epoch tokens: `g<N>` while an artifact's raw stamps are as this store's own last
    write left them, `g<N>+foreign` once they moved under someone else's hand. Raw stamps
    vary run to run; tokens do not, so the same seed gives the same log. Counted per store,
    across handles: a session resumed in the same process goes on counting."""

    def __init__(self) -> None:
        self._known: dict[str, tuple[str, int]] = {}  # name -> (raw stamp, generation)

    def token(self, name: str, raw: str) -> str:
        known = self._known.setdefault(name, (raw, 0))
        return f"g{known[1]}" if raw == known[0] else f"g{known[1]}+foreign"

    def own_write(self, name: str, raw: str) -> str:
        generation = self._known.get(name, ("", 0))[1] + 1
        self._known[name] = (raw, generation)
        return f"g{generation}"


class DirectoryHandle:
    """Artifact `name` (checked) under `root` (see the module docstring)."""

    def __init__(self, fs: FileSystem, root: Path, name: str, layout: Layout, kind: str, generations: Generations) -> None:
        self._fs = fs
        self._root = root
        self._name = name
        self._layout = layout
        self._bundle = kind == "bundle"
        self._generations = generations
        self.path = root / name
        self._final = self.path.name
        self._temp = f".{self._final}.asup-tmp"
        self._lease_name = f".{self._final}.asup-lease"
        self.temp_path = self.path.with_name(self._temp)
        self.checkpoint_path = self.path.with_name(f".{self._final}.asup-ckpt.json")
        self._parent: int | None = None
        self._leases: list[FileLease] = []

    # --- the protocol -------------------------------------------------------------------

    def lease(self, holder: str) -> FileLease | None:
        """Take the lease and write `holder` (see `engine.liveness.holder_for`) into it; None
        while another process holds it.

        Only its holder removes the lease file (`tidy`), while it holds the flock. A waiter
        that opened the file before that flocks an inode no name leads to any more, so a lock
        counts only when the name still leads to the inode locked; else it opens the name
        again. Without that check a third process could create a new file and hold a second
        lease on the same artifact at once."""
        path = self.path.with_name(self._lease_name)
        with self._io("cannot take the lease", path):
            parent = self._dir(create=True)
            for _ in range(_LEASE_REOPENS):
                found = open_own(self._fs, parent, self._lease_name, path, os.O_RDWR, create=True)
                assert found is not None
                fd = found[0]
                try:
                    taken = self._flock(fd)
                    current = taken and self._names(parent, self._lease_name, fd)
                except BaseException:
                    with contextlib.suppress(OSError):
                        self._fs.close(fd)
                    raise
                if not taken:
                    self._fs.close(fd)
                    return None
                if current:
                    break
                self._fs.close(fd)  # its holder removed it as we waited: the name is free or new
            else:
                raise refusal("a lease file that keeps being replaced", path)
            lease = FileLease(self._fs, fd)
            self._leases.append(lease)
            data = holder.encode()
            # written over the old text, then cut to it: a reader never sees an empty lease
            _pwrite_all(self._fs, fd, data, 0)
            self._fs.ftruncate(fd, len(data))
            return lease

    def _names(self, parent: int, name: str, fd: int) -> bool:
        """Whether `name` in `parent` still leads to the file `fd` is open on."""
        try:
            st = self._fs.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return False
        held = self._fs.fstat(fd)
        return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)

    def tidy(self, completed: bool) -> None:
        """After the transfer's terminal state is recorded: what nobody needs any more goes.
        Completed: the checkpoint. Failed before a byte was written: the empty temp file. Either
        way the lease file, while its flock is still held (see `lease`). A checkpoint and the
        bytes of a failed transfer stay: a resume or an operator needs them."""
        with self._io("cannot tidy", self.path):
            parent = self._dir_or_none(create=False)
            if parent is None:
                return
            if completed:
                self._remove_own(parent, self.checkpoint_path.name, self.checkpoint_path)
            elif not self._bundle and self._layout.size:
                self._remove_own(parent, self._temp, self.temp_path, only_empty=True)
            for lease in self._leases:
                if lease.held >= 0 and self._names(parent, self._lease_name, lease.held):
                    self._fs.unlink(self._lease_name, dir_fd=parent)

    def clean(self, *, discard: bool, dry_run: bool, own_lease: bool = False) -> list[tuple[str, str]]:
        """`asup clean`: asup's files beside the artifact, while this handle holds the lease,
        each as (path, what was done). An empty temp file goes, and a checkpoint with no bytes
        left to resume; an unfinished transfer's bytes and checkpoint stay unless `discard`;
        a bundle's unpublished tree and what was set aside (leftovers) always stay; the lease
        file goes last, under its lock (even in a dry run when `own_lease`: the caller's lease
        call made it)."""
        with self._io("cannot clean", self.path):
            parent = self._dir_or_none(create=False)
            if parent is None:
                return []
            done: list[tuple[str, str]] = []
            kept_bytes = self._clean_temp(parent, discard, dry_run, done)
            ckpt = self.checkpoint_path
            if self._lstat(parent, ckpt.name) is not None:
                if kept_bytes:
                    done.append((str(ckpt), "kept: an unfinished transfer resumes from it (--discard removes it)"))
                else:
                    done.append((str(ckpt), "removed: no bytes left to resume from"))
                    if not dry_run:
                        self._remove_own(parent, ckpt.name, ckpt)
            prefix = f".{self._final}.asup-leftovers-"
            for name in sorted(n for n in self._fs.listdir(parent) if n.startswith(prefix)):
                done.append((str(self.path.with_name(name)), "kept: set aside from an earlier transfer; yours to look at"))
            lease = self.path.with_name(self._lease_name)
            if self._lstat(parent, self._lease_name) is not None:
                done.append((str(lease), "removed"))
                if not dry_run or own_lease:
                    for held in self._leases:
                        if held.held >= 0 and self._names(parent, self._lease_name, held.held):
                            self._fs.unlink(self._lease_name, dir_fd=parent)
            return done

    def _clean_temp(self, parent: int, discard: bool, dry_run: bool, done: list[tuple[str, str]]) -> bool:
        """The temp's part of `clean`; whether bytes to resume from stay."""
        st = self._lstat(parent, self._temp)
        path = str(self.temp_path)
        if st is None:
            return False
        if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
            done.append((path, "kept: not a file asup made (a bundle's unpublished tree, or something else): look at it"))
            return True
        if st.st_size and not discard:
            done.append((path, f"kept: {st.st_size} bytes of an unfinished transfer (asup resume continues it; --discard removes it)"))
            return True
        done.append((path, "removed" if not st.st_size else f"removed: {st.st_size} bytes discarded"))
        if not dry_run:
            self._remove_own(parent, self._temp, self.temp_path)
        return False

    def _lstat(self, parent: int, name: str) -> os.stat_result | None:
        try:
            return self._fs.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def _remove_own(self, parent: int, name: str, path: Path, *, only_empty: bool = False) -> None:
        """Unlink asup's own regular file `name` (one link; empty when `only_empty`); anything
        else there is left as it is."""
        try:
            st = self._fs.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 1 and not (only_empty and st.st_size):
            self._fs.unlink(name, dir_fd=parent)

    def lease_holder(self) -> str:
        """Who holds the lease, as its file says (pid, host, since); "another transfer"
        when it cannot be read."""
        path = self.path.with_name(self._lease_name)
        try:
            with self._io("cannot read", path):
                found = open_own(self._fs, self._dir(create=False), self._lease_name, path, os.O_RDONLY, create=False)
                if found is None:
                    return describe_holder(b"")
                try:
                    return describe_holder(self._fs.pread(found[0], MAX_LEASE, 0))
                finally:
                    self._fs.close(found[0])
        except AsupError:
            return describe_holder(b"")  # the lease is refused either way; who holds it is a courtesy

    def _flock(self, fd: int) -> bool:
        """LOCK_EX|LOCK_NB, tried a few times: a stale check (`engine.liveness`) holds a
        shared lock on the file for an instant, and a transfer starting then must not take
        that for another holder."""
        for wait in _LEASE_RETRIES:
            try:
                self._fs.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if wait is None:
                    return False
                time.sleep(wait)
        return False

    def epoch(self) -> str:
        return self._generations.token(self._name, self._raw_stamp())

    def held(self) -> Held:
        with self._io("cannot read", self.temp_path):
            parent = self._dir_or_none(create=False)
            if parent is None:
                return Held(0, None)
            return Held(self._held_bytes(parent), final_digest(self._fs, parent, self._final, bundle=self._bundle))

    def prepare(self, cursor: int) -> None:
        with self._io("cannot prepare", self.temp_path), Opened(self._fs) as opened:
            base = self._base(opened, create=True)
            assert base is not None
            if self._bundle:
                members = [f.path for f in self._layout.files]
                leftovers.set_aside(self._fs, self._dir(create=True), base, members, self.path)
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
        return held, self._generations.own_write(self._name, self._raw_stamp())

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
        with self._io("cannot write", self.checkpoint_path):
            self._dir(create=True)
        # not fsynced: the chunk bytes it counts are not synced before publish either, so a
        # synced checkpoint could promise bytes a crash lost (the final digest check catches both)
        write_atomic(self.checkpoint_path, data, sync=False, fs=self._fs)
        return str(self.checkpoint_path)

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
        fd = self._dir_or_none(create=create)
        if fd is None:
            raise FileNotFoundError(2, "no such directory", str(self.path.parent))
        return fd

    def _dir_or_none(self, *, create: bool) -> int | None:
        """The fd of the directory the artifact is in, kept for the handle's life; None
        when it is not there and `create` is not asked (nothing is made by a read)."""
        if self._parent is not None:
            return self._parent
        root = self._root
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
        found = open_own(self._fs, where[0], where[1], self._member_path(index), flags, create=True)
        assert found is not None
        return found

    def _member_path(self, index: int) -> Path:
        rel = self._layout.files[index].path
        return self.temp_path / rel if rel else self.temp_path

    # --- reading our own files ------------------------------------------------------------

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
        check_own(st, self._member_path(index))
        return st.st_size

    def _digest_own(self, dir_fd: int, name: str, path: Path) -> Digest:
        found = open_own(self._fs, dir_fd, name, path, os.O_RDONLY, create=False)
        if found is None:
            return UNKNOWN
        try:
            return hash_fd(self._fs, found[0])
        finally:
            with contextlib.suppress(OSError):
                self._fs.close(found[0])

    def _raw_stamp(self) -> str:
        """The stamps of the temp and the final artifact, by lstat: never through a link."""
        with self._io("cannot read", self.temp_path):
            parent = self._dir_or_none(create=False)
            if parent is None:
                return "-/-"
            return f"{stamp(self._fs, parent, self._temp)}/{stamp(self._fs, parent, self._final)}"

    # --- publishing -----------------------------------------------------------------------

    def _sync_bundle(self, opened: Opened, parent: int) -> None:
        """fsync every member and directory of the temp bundle, then write its manifest last."""
        temp = own_dir(self._fs, parent, self._temp, self.temp_path, create=False)
        if temp is None:
            raise FileNotFoundError(2, "the unpublished bundle is gone", str(self.temp_path))
        base = opened.keep(temp)
        synced = {base}
        for index in range(len(self._layout.files)):
            where = self._member_dir(opened, base, index, create=False)
            if where is None:
                raise FileNotFoundError(2, "a member of the unpublished bundle is gone", str(self._member_path(index)))
            self._sync_own(where[0], where[1], self._member_path(index))
            if where[0] not in synced:
                self._fs.fsync(where[0])
                synced.add(where[0])
        self._write_manifest(base)
        self._fs.fsync(base)

    def _write_manifest(self, base: int) -> None:
        manifest = self.temp_path / MANIFEST_NAME
        found = open_own(self._fs, base, MANIFEST_NAME, manifest, os.O_WRONLY, create=True)
        assert found is not None
        fd, st = found
        try:
            if st.st_size:  # prepare set any earlier one aside: this appeared since
                raise refusal("a file that appeared since the transfer began", manifest)
            write_all(fd, memoryview(manifest_bytes(self._layout.files)), self._fs)
            self._fs.fsync(fd)
        finally:
            self._fs.close(fd)

    def _sync_own(self, dir_fd: int, name: str, path: Path) -> None:
        found = open_own(self._fs, dir_fd, name, path, os.O_RDONLY, create=False)
        if found is None:
            raise FileNotFoundError(2, "the unpublished artifact is gone", str(path))
        try:
            self._fs.fsync(found[0])
        finally:
            self._fs.close(found[0])


def _pwrite_all(fs: FileSystem, fd: int, data: bytes, offset: int) -> None:
    """Every byte of `data` at `offset` (a pwrite may take fewer than asked)."""
    while data:
        n = fs.pwrite(fd, data, offset)
        data, offset = data[n:], offset + n
