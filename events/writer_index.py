"""The writer index: what a writer needs to append without reading the whole log.

`LOG.index.json` holds the heads as of byte `size` (last seq and digest, each stream's
version and digest) and the log's window of recent ids. A writer saves it now and then
(it can be large: one entry per stream), not after every batch: opening a log loads it
and catches up by reading and verifying only what follows `size`. It is used only under
the high-water mark's trust (`events.head_record`), and only if the record ending at
`size` carries `last_h`. It is a cache: losing it costs a read of the log, never data.
Fold checkpoints (`projections.fold`) embed the same snapshot of the heads.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
from blake3 import blake3

from events.atomic import read_small, write_atomic
from events.chain import ChainState, StreamHead
from events.errors import DECODE_ERRORS
from events.fs import OS, FileSystem
from events.record import TRAILER_LEN

FORMAT = 4  # 4: one window of recent ids for the whole log, bounded in total
MAX_BYTES = 1 << 30


class HeadIndex(msgspec.Struct, forbid_unknown_fields=True):
    """`digest` covers every other field, so a bit-rotted or edited index is not used."""

    format: int
    log_id: str
    size: int
    last_seq: int
    last_h: str
    streams: dict[str, tuple[int, str]]
    recent: list[tuple[str, str, int, int, int]]  # stream, id, seq, sv, offset; oldest first
    digest: str = ""

    def content_digest(self) -> str:
        return "blake3:" + blake3(msgspec.json.encode(msgspec.structs.replace(self, digest=""))).hexdigest()


def index_path(log_path: Path) -> Path:
    return log_path.with_name(log_path.name + ".index.json")


def snapshot(chain: ChainState, size: int) -> HeadIndex:
    """The chain's heads as of byte `size` of its log."""
    assert chain.log_id is not None
    index = HeadIndex(
        format=FORMAT,
        log_id=chain.log_id,
        size=size,
        last_seq=chain.last_seq,
        last_h=chain.last_h,
        streams={name: (head.sv, head.h) for name, head in chain.streams.items()},
        recent=chain.recent_entries(),
    )
    return msgspec.structs.replace(index, digest=index.content_digest())


def restore(index: HeadIndex, id_window: int) -> ChainState:
    chain = ChainState(id_window)
    chain.log_id = index.log_id
    chain.last_seq = index.last_seq
    chain.last_h = index.last_h
    chain.streams = {name: StreamHead(sv, h) for name, (sv, h) in index.streams.items()}
    chain.remember_recent(index.recent)
    return chain


def encode(chain: ChainState, size: int) -> bytes:
    return msgspec.json.encode(snapshot(chain, size))


def save(log_path: Path, chain: ChainState, size: int, fs: FileSystem = OS) -> int:
    """Replace the index; its size in bytes. Raises `io_failed` (or `usage`) naming the
    index file. Not fsynced: a crash that loses it costs a read of the log, never data."""
    data = encode(chain, size)
    write_atomic(index_path(log_path), data, sync=False, fs=fs)
    return len(data)


def decode(data: bytes) -> HeadIndex | None:
    """The index in `data` when it is one whose own digest holds, else None."""
    try:
        index = msgspec.json.decode(data, type=HeadIndex)
    except DECODE_ERRORS:
        return None
    if index.format != FORMAT or index.digest != index.content_digest() or index.size < TRAILER_LEN + 1:
        return None
    return index


def load(log_path: Path, fs: FileSystem = OS) -> HeadIndex | None:
    """The saved index, or None (absent, damaged, over-long, planted through a link)."""
    data = read_small(index_path(log_path), MAX_BYTES, fs)
    return None if data is None else decode(data)
