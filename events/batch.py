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
from events.payloads import Event
from events.record import LINE_HEADS, LINE_TRAILER, MAX_LINE, SCHEMA_VERSION, TRAILER_LEN, genesis, stream_tag
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


def _derived_head(head: bytes) -> bytes:
    """`head` for a line whose id is derived: the version baked in, the id a prefix and its
    version, `prev` quoted in place (derived ids and digests need no escapes)."""
    for old, new in ((b'"v":%d', b'"v":%d' % SCHEMA_VERSION), (b'"id":%b', b'"id":"%b%d"'), (b'"prev":%b', b'"prev":"%b"')):
        assert head.count(old) == 1, (head, old)
        head = head.replace(old, new)
    return head


DERIVED_HEADS = {payload: _derived_head(head) for payload, head in LINE_HEADS.items()}


StreamKey = tuple[bytes, bytes, str]  # a stream's id prefix `e-<tag>-` (bytes and str) and its name's JSON


def stream_key(chain: ChainState, stream: str) -> StreamKey:
    """The stream's id prefix and JSON, kept in the chain: its tag is a hash, and at many
    streams each event of a batch may be on a stream of its own."""
    key = chain.keys.get(stream)
    if key is None:
        assert chain.log_id is not None
        prefix = f"e-{stream_tag(chain.log_id, stream)}-"
        key = chain.keys[stream] = (prefix.encode(), _ENCODER.encode(stream), prefix)
    return key


def plan(chain: ChainState, items: Sequence[Pending], ts: str, line_at: LineAt) -> Batch:
    """Encode `items` after the chain's heads; raises `conflict_detected` on a stale expectation.

    The hot path of every append: each payload is encoded once, the timestamp once per
    batch, one hasher is reset rather than made per event, and a derived id costs a format
    (its stream's tag is hashed once per chain, `stream_key`: at 1,000 streams in batches
    of 1,000 each event may be a stream's only one in its batch). An item expecting a
    version the stream has passed is a retry only if the event stored at that version is
    the same event (read back with `line_at`); a different one is a stale writer's, and conflicts.
    """
    log_id = chain.log_id
    assert log_id is not None, "a log has a header before any append"
    batch = Batch()
    data, new = batch.data, batch.new
    add_position, add_new = batch.positions.append, new.append
    heads: dict[str, tuple[int, str]] = {}
    ids: dict[tuple[str, str], tuple[Position, bytes]] = {}  # this batch's ids that a later item may repeat
    seq = chain.last_seq
    encode = _ENCODER.encode
    ts_json = encode(ts)
    hasher = blake3()  # one per call: a shared one would not be thread-safe
    reset, update, hexdigest = hasher.reset, hasher.update, hasher.hexdigest
    head_of, key_of, derived_heads, trailer = chain.streams.get, chain.keys.get, DERIVED_HEADS, LINE_TRAILER
    longest = MAX_LINE - TRAILER_LEN - 1
    for item in items:
        stream, event, explicit, expected = item.stream, item.event, item.id, item.expected_version
        got = heads.get(stream)
        if got is None:
            stored = head_of(stream)
            sv_now, prev = (stored.sv, stored.h) if stored is not None else (0, genesis(log_id, stream))
        else:
            sv_now, prev = got
        key = key_of(stream) or stream_key(chain, stream)
        payload = encode(event)
        # A derived id at the stream's next version cannot be stored yet: only an explicit id or
        # an expectation behind the stream (a retry, or a stale writer) needs the lookup.
        if explicit or (expected is not None and expected != sv_now):
            event_id = explicit or f"{key[2]}{(sv_now if expected is None else expected) + 1}"
            seen = _seen(chain, batch, ids, stream, event_id, None if explicit else payload, line_at)
            if seen is not None:
                add_position(seen)
                continue
            if expected is not None and expected != sv_now:
                raise AsupError(
                    ErrorCode.CONFLICT_DETECTED,
                    f"stream {stream!r} is at version {sv_now}, the append expected {expected}; nothing was written",
                )
        seq += 1
        sv = sv_now + 1
        if explicit:
            prefix = _explicit_prefix(event, seq, key[1], sv, encode(explicit), ts_json, payload, prev)
            event_id = explicit
        else:
            head = derived_heads.get(type(event))
            if head is None:
                raise AsupError(ErrorCode.BAD_INPUT, f"{type(event).__name__} is not a registered event type")
            prefix = head % (seq, key[1], sv, key[0], sv, ts_json, payload, prev.encode())
            event_id = f"{key[2]}{sv}"
        if len(prefix) > longest:
            raise AsupError(ErrorCode.BAD_INPUT, f"event {type(event).__name__} encodes to more than {MAX_LINE} bytes")
        reset()
        update(prefix)
        digest = hexdigest()
        offset = len(data)
        data += prefix
        data += trailer % digest.encode()
        h = "blake3:" + digest
        position = Position(seq, stream, sv)
        heads[stream] = (sv, h)
        if explicit or expected is not None:
            ids[(stream, event_id)] = (position, payload)
        add_position(position)
        add_new((stream, sv, h, event_id, seq, offset))
    return batch


def _explicit_prefix(
    event: Event, seq: int, stream_json: bytes, sv: int, id_json: bytes, ts_json: bytes, payload: bytes, prev: str
) -> bytes:
    """The line before its trailer for an event with a caller's id (which may need escapes)."""
    head = LINE_HEADS.get(type(event))
    if head is None:
        raise AsupError(ErrorCode.BAD_INPUT, f"{type(event).__name__} is not a registered event type")
    return head % (SCHEMA_VERSION, seq, stream_json, sv, id_json, ts_json, payload, b'"%b"' % prev.encode())


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
