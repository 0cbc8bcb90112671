"""Turning pending events into committed lines: the sequencer's one job.

Shared by every store so that all of them write the same bytes. Nothing here touches
the chain state: a batch is planned against it, written by the store, and only then
committed (so a failed write or a stale expectation leaves the heads as they were).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import msgspec
from blake3 import blake3

from events.chain import ChainState, Position
from events.errors import AsupError, ErrorCode
from events.record import LINE_HEADS, LINE_TRAILER, MAX_LINE, SCHEMA_VERSION, TRAILER_LEN, stream_tag
from events.schema import payload_of
from events.store import Pending

_ENCODER = msgspec.json.Encoder()

LineAt = Callable[[int], bytes]
"""Reads the stored line starting at a byte offset of the log (for checking a retry)."""


class Batch:
    def __init__(self) -> None:
        self.data = bytearray()
        self.positions: list[Position] = []
        self.new: list[tuple[str, int, str, str, int, int]] = []  # stream, sv, h, id, seq, offset in `data`

    def commit(self, chain: ChainState, base: int) -> None:
        """Advance the chain past the written batch, whose bytes begin at offset `base`."""
        chain.remember_all(self.new, base)


def plan(chain: ChainState, items: Sequence[Pending], ts: str, line_at: LineAt) -> Batch:
    """Encode `items` after the chain's heads; raises `conflict_detected` on a stale expectation.

    The hot path of every append: each payload is encoded once, the timestamp once per
    batch, one hasher is reset rather than made per event, and a derived id costs a format
    (its stream's tag is hashed once per batch). An item expecting a version the stream has
    passed is a retry only if the event stored at that version is the same event (read back
    with `line_at`); a different one is a stale writer's, and conflicts.
    """
    log_id = chain.log_id
    assert log_id is not None, "a log has a header before any append"
    batch = Batch()
    data, positions, new = batch.data, batch.positions, batch.new
    heads: dict[str, tuple[int, str]] = {}
    ids: dict[tuple[str, str], tuple[Position, bytes]] = {}  # this batch's ids that a later item may repeat
    seq = chain.last_seq
    encode = _ENCODER.encode
    ts_json = encode(ts)
    hasher = blake3()  # one per call: a shared one would not be thread-safe
    reset, update, hexdigest = hasher.reset, hasher.update, hasher.hexdigest
    keys: dict[str, tuple[str, bytes]] = {}  # stream -> (its id prefix, its JSON): once per stream
    for item in items:
        stream = item.stream
        got = heads.get(stream)
        sv_now, prev = got if got is not None else (chain.version(stream), chain.prev_of(stream))
        key = keys.get(stream)
        if key is None:
            key = keys[stream] = (f"e-{stream_tag(log_id, stream)}-", encode(stream))  # derive_event_id(...) but the version
        expected = item.expected_version
        payload = encode(item.event)
        # A derived id at the stream's next version cannot be stored yet: only an explicit id or
        # an expectation behind the stream (a retry, or a stale writer) needs the lookup.
        if item.id or (expected is not None and expected != sv_now):
            event_id = item.id or f"{key[0]}{(sv_now if expected is None else expected) + 1}"
            seen = _seen(chain, batch, ids, stream, event_id, payload if not item.id else None, line_at)
            if seen is not None:
                positions.append(seen)
                continue
            if expected is not None and expected != sv_now:
                raise AsupError(
                    ErrorCode.CONFLICT_DETECTED,
                    f"stream {stream!r} is at version {sv_now}, the append expected {expected}; nothing was written",
                )
        seq += 1
        sv = sv_now + 1
        event_id = item.id or f"{key[0]}{sv}"
        head = LINE_HEADS.get(type(item.event))
        if head is None:
            raise AsupError(ErrorCode.BAD_INPUT, f"{type(item.event).__name__} is not a registered event type")
        # derived ids and digests need no escapes: quoting is their JSON encoding; a caller's id may need them
        id_json = encode(event_id) if item.id else b'"%b"' % event_id.encode()
        prefix = head % (SCHEMA_VERSION, seq, key[1], sv, id_json, ts_json, payload, b'"%b"' % prev.encode())
        if len(prefix) + TRAILER_LEN + 1 > MAX_LINE:
            raise AsupError(ErrorCode.BAD_INPUT, f"event {type(item.event).__name__} encodes to more than {MAX_LINE} bytes")
        reset()
        update(prefix)
        digest = hexdigest()
        offset = len(data)
        data += prefix
        data += LINE_TRAILER % digest.encode()
        h = "blake3:" + digest
        position = Position(seq, stream, sv)
        heads[stream] = (sv, h)
        if item.id or expected is not None:
            ids[(stream, event_id)] = (position, payload)
        positions.append(position)
        new.append((stream, sv, h, event_id, seq, offset))
    return batch


def _seen(
    chain: ChainState,
    batch: Batch,
    ids: dict[tuple[str, str], tuple[Position, bytes]],
    stream: str,
    event_id: str,
    payload: bytes | None,
    line_at: LineAt,
) -> Position | None:
    """The position `event_id` already holds in `stream`, if the event there is the same one
    (`payload` None: an explicit id, which is the caller's promise of sameness)."""
    planned = ids.get((stream, event_id))
    if planned is None and payload is not None:
        planned = _planned(batch, stream, event_id)
    if planned is not None:
        return planned[0] if payload is None or planned[1] == payload else None
    stored = chain.find_recent(stream, event_id)
    if stored is None:
        return None
    position, offset = stored
    return position if payload is None or payload_of(line_at(offset)) == payload else None


def _planned(batch: Batch, stream: str, event_id: str) -> tuple[Position, bytes] | None:
    """An event this batch planned under a derived id without indexing it in `ids` (the common
    path indexes only items with an id or an expectation): a later item of the batch expecting
    the version before it is its retry, as it would be in the next batch. Found by a scan that
    only an expectation behind the stream pays for."""
    for planned_stream, sv, _h, planned_id, seq, offset in batch.new:
        if planned_stream == stream and planned_id == event_id:
            line = bytes(batch.data[offset : batch.data.index(b"\n", offset)])
            return Position(seq, stream, sv), payload_of(line) or b""
    return None
