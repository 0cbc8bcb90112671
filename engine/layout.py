"""An artifact as a byte stream: a file, or a bundle directory seen as its files
concatenated in path order. A bundle's identity is its manifest (path, size, BLAKE3 of
each file); its checksum is the BLAKE3 of the manifest's canonical bytes."""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Sequence
from pathlib import PurePosixPath

import msgspec
from blake3 import blake3

from events.errors import AsupError, ErrorCode
from events.observations import BundleFile

MANIFEST_NAME = "bundle_manifest_v1.json"


def check_name(name: str, what: str = "artifact") -> str:
    """A relative, '/'-separated path that stays inside its root; else a usage error."""
    bad = (
        not name
        or "\x00" in name
        or "\\" in name
        or name.startswith("/")
        or len(name) > 1024
        or any(part in ("", ".", "..") for part in name.split("/"))
    )
    if bad:
        raise AsupError(ErrorCode.USAGE, f"{what} path {name!r} must be relative, '/'-separated and stay inside its root")
    return str(PurePosixPath(name))


def manifest_bytes(files: Sequence[BundleFile]) -> bytes:
    return msgspec.json.encode({"schema": "asup.bundle/1", "files": list(files)})


def bundle_digest(files: Sequence[BundleFile]) -> str:
    return "blake3:" + blake3(manifest_bytes(files)).hexdigest()


class Layout:
    """Where byte `offset` of the stream lives: (file index, offset in that file)."""

    def __init__(self, files: Sequence[BundleFile]) -> None:
        self.files = list(files)
        self.starts: list[int] = []
        total = 0
        for f in self.files:
            self.starts.append(total)
            total += f.size
        self.size = total

    def pieces(self, offset: int, length: int) -> Iterator[tuple[int, int, int]]:
        """(file index, offset in file, length) covering [offset, offset + length)."""
        end = min(offset + length, self.size)
        index = max(bisect.bisect_right(self.starts, offset) - 1, 0)
        while offset < end and index < len(self.files):
            start = self.starts[index]
            take = min(end, start + self.files[index].size) - offset
            if take > 0:
                yield index, offset - start, take
                offset += take
            index += 1
