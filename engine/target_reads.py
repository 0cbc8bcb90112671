"""Reading what is beside a target without following a link: digests of the final
artifact (a file, or a bundle's tree) and of asup's own files, and the stamps the epoch is
made of. A link, FIFO, socket or device where an artifact should be reads as `UNKNOWN`
(`blake3:-`): not an artifact of ours, whatever it points to."""

from __future__ import annotations

import contextlib
import os
import stat

from blake3 import blake3

from engine.layout import MANIFEST_NAME, bundle_digest
from engine.owned_files import Opened, walk
from engine.target_store import UNKNOWN, Digest
from events.fs import FileSystem
from events.observations import BundleFile

HASH_BLOCK = 1 << 20
DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
READ = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK  # a FIFO swapped in must not block


def hash_fd(fs: FileSystem, fd: int) -> Digest:
    hasher = blake3(max_threads=blake3.AUTO)  # large files hash on every core
    size = 0
    while block := fs.pread(fd, HASH_BLOCK, size):
        hasher.update(block)
        size += len(block)
    return "blake3:" + hasher.hexdigest(), size


def read_all(fs: FileSystem, fd: int, limit: int) -> bytes:
    """Up to `limit` bytes of `fd` from its start."""
    parts, size = [], 0
    while size < limit and (block := fs.pread(fd, min(HASH_BLOCK, limit - size), size)):
        parts.append(block)
        size += len(block)
    return b"".join(parts)


def digest_regular(fs: FileSystem, dir_fd: int, name: str) -> Digest:
    """The digest of the regular file `name` in `dir_fd`; UNKNOWN for anything else."""
    try:
        fd = fs.open(name, READ, dir_fd=dir_fd)
    except OSError:
        return UNKNOWN
    try:
        if not stat.S_ISREG(fs.fstat(fd).st_mode):
            return UNKNOWN
        return hash_fd(fs, fd)
    finally:
        with contextlib.suppress(OSError):
            fs.close(fd)


def final_digest(fs: FileSystem, parent: int, name: str, *, bundle: bool) -> Digest | None:
    """What is under the final name `name` in `parent` (None: nothing): a file's digest, or
    a bundle's over the bytes there now (not what its manifest claims)."""
    try:
        st = fs.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return None
    if not bundle:
        return digest_regular(fs, parent, name) if stat.S_ISREG(st.st_mode) else UNKNOWN
    if not stat.S_ISDIR(st.st_mode):
        return UNKNOWN
    try:
        fd = fs.open(name, DIR, dir_fd=parent)
    except OSError:
        return UNKNOWN
    try:
        return tree_digest(fs, fd)
    finally:
        with contextlib.suppress(OSError):
            fs.close(fd)


def tree_digest(fs: FileSystem, dir_fd: int) -> Digest:
    """The bundle digest of every regular file under `dir_fd` (manifests excluded, as the
    source side does); UNKNOWN when it holds a link or a special file."""
    files = []
    for rel, st in walk(fs, dir_fd):
        if stat.S_ISDIR(st.st_mode) or rel.rsplit("/", 1)[-1] == MANIFEST_NAME:
            continue
        if not stat.S_ISREG(st.st_mode):
            return UNKNOWN
        *dirs, leaf = rel.split("/")
        with Opened(fs) as opened:
            fd = dir_fd
            for part in dirs:
                fd = opened.keep(fs.open(part, DIR, dir_fd=fd))
            digest, size = digest_regular(fs, fd, leaf)
        files.append(BundleFile(rel, size, digest))
    return bundle_digest(files), sum(f.size for f in files)


def stamp(fs: FileSystem, parent: int, name: str) -> str:
    """(inode, size, mtime) of `name` by lstat, or of every file of a directory, hashed; "-" when absent."""
    try:
        st = fs.stat(name, dir_fd=parent, follow_symlinks=False)
    except FileNotFoundError:
        return "-"
    if not stat.S_ISDIR(st.st_mode):
        return f"{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
    try:
        fd = fs.open(name, DIR, dir_fd=parent)
    except (FileNotFoundError, NotADirectoryError):
        return "-"
    try:
        lines = [f"{rel}={s.st_ino}:{s.st_size}:{s.st_mtime_ns}" for rel, s in walk(fs, fd) if stat.S_ISREG(s.st_mode)]
    finally:
        with contextlib.suppress(OSError):
            fs.close(fd)
    return "dir:" + blake3("\n".join(lines).encode()).hexdigest()[:16]
