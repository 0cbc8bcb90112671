"""Artifact stores: where bytes come from (`SourceStore`) and go to (`TargetStore`, whose
protocol and handle are in `engine.target_store`). The directory store
(`engine.directory_store`) is both, and the default; the interface is small so a NATS
object store can follow. This module is where the rest of asup imports them from.
"""

from __future__ import annotations

from typing import Protocol

from engine.directory_store import DirectoryStore, file_digest
from engine.directory_target import DirectoryHandle, FileLease
from engine.layout import Layout
from engine.target_store import Digest, Held, Kind, LateAck, Lease, TargetHandle, TargetStore, TransportInterrupted
from events.observations import BundleFile

__all__ = [
    "Digest",
    "DirectoryHandle",
    "DirectoryStore",
    "FileLease",
    "Held",
    "Kind",
    "LateAck",
    "Lease",
    "SourceStore",
    "TargetHandle",
    "TargetStore",
    "TransportInterrupted",
    "file_digest",
]


class SourceStore(Protocol):
    def manifest(self, name: str, *, hashed: bool = True) -> tuple[str, list[BundleFile]]:
        """(kind, files): kind 'file' (one entry, path '') or 'bundle'. Not `hashed`: a
        file's entry has its size only (digest ""), for a caller given the checksum."""
        ...

    def hash_chunks(self, name: str, chunk_size: int) -> tuple[str, int, list[str]]:
        """A file artifact's (digest, size, digest of each chunk), in one read of it."""
        ...

    def read(self, name: str, layout: Layout, offset: int, length: int) -> bytes: ...
