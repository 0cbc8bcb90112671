"""BLAKE3 digests, written `blake3:<64 hex>` everywhere."""

from __future__ import annotations

from pathlib import Path

from blake3 import blake3

PREFIX = "blake3:"
ZERO = PREFIX + "0" * 64


def digest_bytes(data: bytes | bytearray | memoryview) -> str:
    return PREFIX + blake3(data).hexdigest()


def digest_file(path: Path, chunk: int = 1 << 20) -> str:
    hasher = blake3()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            hasher.update(block)
    return PREFIX + hasher.hexdigest()
