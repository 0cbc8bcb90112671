"""The head index: a small side file so opening a large log for append needs no rescan.

`LOG.head.json` holds the heads as of byte `size` (last seq and digest, per-stream
version and digest, the recent-id windows). On open it is trusted only if the log's
record ending at `size` carries `last_h`; then only the bytes after `size` are scanned.
Anything else (missing, unreadable, log truncated or rewritten) rebuilds it from a full
scan. It is a cache: losing it costs time, never data.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
from blake3 import blake3

from events.atomic import write_atomic
from events.chain import ChainState, StreamHead
from events.record import TRAILER_LEN

FORMAT = 3  # 2: with a digest over the content; 3: recent ids carry their line's offset


class HeadIndex(msgspec.Struct, forbid_unknown_fields=True):
    """`digest` covers every other field, so a bit-rotted or edited index is rebuilt."""

    format: int
    log_id: str
    size: int
    last_seq: int
    last_h: str
    streams: dict[str, tuple[int, str]]
    recent: dict[str, list[tuple[str, int, int, int]]]  # id, seq, sv, offset
    digest: str = ""

    def content_digest(self) -> str:
        return "blake3:" + blake3(msgspec.json.encode(msgspec.structs.replace(self, digest=""))).hexdigest()


def index_path(log_path: Path) -> Path:
    return log_path.with_name(log_path.name + ".head.json")


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
        recent={name: [(i, *at) for i, at in window.items()] for name, window in chain.windows.items()},
    )
    return msgspec.structs.replace(index, digest=index.content_digest())


def restore(index: HeadIndex, id_window: int) -> ChainState:
    chain = ChainState(id_window)
    chain.log_id = index.log_id
    chain.last_seq = index.last_seq
    chain.last_h = index.last_h
    chain.streams = {name: StreamHead(sv, h) for name, (sv, h) in index.streams.items()}
    if id_window:
        chain.windows = {name: {i: (q, v, o) for i, q, v, o in window[-id_window:]} for name, window in index.recent.items()}
    return chain


def save(log_path: Path, chain: ChainState, size: int) -> None:
    """Replace the index; raises `io_failed` (or `usage`) naming the index file.

    Not fsynced: a crash that loses it costs a rescan, never data."""
    write_atomic(index_path(log_path), msgspec.json.encode(snapshot(chain, size)), sync=False)


def load(log_path: Path, id_window: int) -> tuple[ChainState, int] | None:
    """The chain state and the offset to scan from, or None when the index can't be trusted."""
    try:
        index = msgspec.json.decode(index_path(log_path).read_bytes(), type=HeadIndex)
    except (OSError, msgspec.MsgspecError):
        return None
    if index.format != FORMAT or index.digest != index.content_digest() or not matches_tail(log_path, index):
        return None
    return restore(index, id_window), index.size


def matches_tail(log_path: Path, index: HeadIndex) -> bool:
    if index.size < TRAILER_LEN + 1:
        return False
    try:
        with log_path.open("rb") as fh:
            if fh.seek(0, 2) < index.size:
                return False
            fh.seek(index.size - 67)
            tail = fh.read(67)
    except OSError:
        return False
    return tail == index.last_h.removeprefix("blake3:").encode() + b'"}\n'
