"""Setting aside what an earlier transfer left in a bundle's temp directory: everything
that is no member (nor a directory on a member's path) moves into a new
`.NAME.asup-leftovers-<n>/` beside it, made with `mkdir` at the first free n (a name
already there, whatever it is, is skipped, never reused or followed), so `publish` can
never take it. Nothing is deleted: an operator may want it."""

from __future__ import annotations

import stat
from collections.abc import Collection
from pathlib import Path

from engine.owned_files import Opened, own_dir, walk
from engine.target_reads import DIR
from events.atomic import make_dir_in
from events.errors import AsupError, ErrorCode
from events.fs import FileSystem

LIMIT = 10_000


def strays(fs: FileSystem, temp: int, members: Collection[str]) -> list[str]:
    """What under `temp` is neither a member nor a directory on a member's path (a stray
    directory is listed once, whole)."""
    dirs = {"/".join(p.split("/")[:i]) for p in members for i in range(1, p.count("/") + 1)}
    found: list[str] = []
    for rel, st in walk(fs, temp):
        if any(rel.startswith(d + "/") for d in found):
            continue
        if stat.S_ISDIR(st.st_mode) and rel in dirs:
            continue
        if rel in members and not stat.S_ISDIR(st.st_mode):
            continue  # a member: reused or refused when it is opened
        found.append(rel)
    return found


def set_aside(fs: FileSystem, parent: int, temp: int, members: Collection[str], final: Path) -> None:
    """Move the strays of `temp` (a bundle temp directory in `parent`) into a new
    leftovers directory beside the final artifact `final`."""
    moving = strays(fs, temp, members)
    if not moving:
        return
    with Opened(fs) as opened:
        aside, where = _new_dir(fs, opened, parent, final)
        for rel in moving:
            *dirs, leaf = rel.split("/")
            src, dst, at = temp, aside, where
            for part in dirs:
                at = at / part
                src = opened.keep(fs.open(part, DIR, dir_fd=src))
                dst = opened.keep(make_dir_in(dst, part, at, fs))
            fs.rename_noreplace(leaf, leaf, src_dir_fd=src, dst_dir_fd=dst)


def _new_dir(fs: FileSystem, opened: Opened, parent: int, final: Path) -> tuple[int, Path]:
    for n in range(1, LIMIT + 1):
        name = f".{final.name}.asup-leftovers-{n}"
        try:
            fs.mkdir(name, 0o755, dir_fd=parent)
        except FileExistsError:
            continue  # an earlier one, or anything planted there: never reused
        path = final.with_name(name)
        fd = own_dir(fs, parent, name, path, create=False)
        if fd is None:
            raise FileNotFoundError(2, "the directory just made is gone", str(path))
        return opened.keep(fd), path
    raise AsupError(ErrorCode.USAGE, f"{LIMIT} leftovers directories already: remove some", file=str(final))
