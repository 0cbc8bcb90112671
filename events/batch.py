"""Turning pending events into committed lines: the sequencer's one job.

Shared by every store so that all of them write the same bytes. Nothing here touches
the chain state: a batch is planned against it, written by the store, and only then
committed (so a failed write or a stale expectation leaves the heads as they were).
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
from blake3 import blake3

from events.chain import ChainState, Position
from events.errors import AsupError, ErrorCode
from events.record import LINE_HEADS, LINE_TRAILER, MAX_LINE, SCHEMA_VERSION, TRAILER_LEN
from events.store import Pending

_ENCODER = msgspec.json.Encoder()


class Batch:
    def __init__(self) -> None:
        self.data = bytearray()
        self.positions: list[Position] = []
        self.new: list[tuple[str, int, str, str, int]] = []  # stream, sv, h, id, seq

    def commit(self, chain: ChainState) -> None:
        chain.remember_all(self.new)


def plan(chain: ChainState, items: Sequence[Pending], ts: str) -> Batch:
    """Encode `items` after the chain's heads; raises `conflict_detected` on a stale expectation.

    The hot path of every append: each payload is encoded once (for its id and its line),
    the timestamp once per batch, and one hasher is reset rather than made per event.
    """
    log_id = chain.log_id
    assert log_id is not None, "a log has a header before any append"
    batch = Batch()
    data, positions, new = batch.data, batch.positions, batch.new
    heads: dict[str, tuple[int, str]] = {}
    ids: dict[tuple[str, str], Position] = {}
    seq = chain.last_seq
    encode = _ENCODER.encode
    ts_json = encode(ts)
    hasher = blake3()  # one per call: a shared one would not be thread-safe
    reset, update, hexdigest = hasher.reset, hasher.update, hasher.hexdigest
    keys: dict[str, tuple[bytes, bytes]] = {}  # stream -> (its id-hash prefix, its JSON): once per stream
    for item in items:
        stream = item.stream
        got = heads.get(stream)
        sv_now, prev = got if got is not None else (chain.version(stream), chain.prev_of(stream))
        key = keys.get(stream)
        if key is None:
            key = keys[stream] = (f"{log_id}\x00{stream}\x00".encode(), encode(stream))
        expected = item.expected_version
        payload = encode(item.event)
        event_id = item.id
        if not event_id:
            reset()
            update(b"%b%d\x00" % (key[0], (sv_now if expected is None else expected) + 1))
            update(payload)
            event_id = "e-" + hexdigest(12)  # == derive_event_id(...), without a second encode
        # A derived id at the stream's next version cannot be stored yet: only an explicit id or
        # an expectation behind the stream (a retry, or a stale writer) needs the lookup.
        if item.id or (expected is not None and expected != sv_now):
            seen = ids.get((stream, event_id)) or chain.find_recent(stream, event_id)
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
        head = LINE_HEADS.get(type(item.event))
        if head is None:
            raise AsupError(ErrorCode.BAD_INPUT, f"{type(item.event).__name__} is not a registered event type")
        # derived ids and digests are hex: quoting is their JSON encoding; a caller's id may need escapes
        id_json = encode(event_id) if item.id else b'"%b"' % event_id.encode()
        prefix = head % (SCHEMA_VERSION, seq, key[1], sv, id_json, ts_json, payload, b'"%b"' % prev.encode())
        if len(prefix) + TRAILER_LEN + 1 > MAX_LINE:
            raise AsupError(ErrorCode.BAD_INPUT, f"event {type(item.event).__name__} encodes to more than {MAX_LINE} bytes")
        reset()
        update(prefix)
        digest = hexdigest()
        data += prefix
        data += LINE_TRAILER % digest.encode()
        h = "blake3:" + digest
        position = Position(seq, stream, sv)
        heads[stream] = (sv, h)
        if item.id or expected is not None:
            ids[(stream, event_id)] = position
        positions.append(position)
        new.append((stream, sv, h, event_id, seq))
    return batch
