"""Turning pending events into committed lines: the sequencer's one job.

Shared by every store so that all of them write the same bytes. Nothing here touches
the chain state: a batch is planned against it, written by the store, and only then
committed (so a failed write or a stale expectation leaves the heads as they were).
"""

from __future__ import annotations

from collections.abc import Sequence

from events.chain import ChainState, Position
from events.errors import AsupError, ErrorCode
from events.record import MAX_LINE, derive_event_id, encode_into, encode_payload
from events.store import Pending


class Batch:
    def __init__(self) -> None:
        self.data = bytearray()
        self.positions: list[Position] = []
        self.new: list[tuple[str, int, str, str, int]] = []  # stream, sv, h, id, seq
        self.line_ends: list[int] = []  # offsets in data just past each new line

    def commit(self, chain: ChainState) -> None:
        for stream, sv, h, event_id, seq in self.new:
            chain.remember(stream, sv, h, event_id, seq)
        if self.new:
            chain.last_seq = self.new[-1][4]
            chain.last_h = self.new[-1][2]


def plan(chain: ChainState, items: Sequence[Pending], ts: str) -> Batch:
    """Encode `items` after the chain's heads; raises `conflict_detected` on a stale expectation."""
    log_id = chain.log_id
    assert log_id is not None, "a log has a header before any append"
    batch = Batch()
    heads: dict[str, tuple[int, str]] = {}
    ids: dict[tuple[str, str], Position] = {}
    seq = chain.last_seq
    for item in items:
        stream = item.stream
        sv_now, prev = heads.get(stream) or (chain.version(stream), chain.prev_of(stream))
        base = sv_now if item.expected_version is None else item.expected_version
        event_id = item.id or derive_event_id(log_id, stream, base + 1, encode_payload(item.event))
        seen = ids.get((stream, event_id)) or chain.find_recent(stream, event_id)
        if seen is not None:
            batch.positions.append(seen)
            continue
        if item.expected_version is not None and item.expected_version != sv_now:
            raise AsupError(
                ErrorCode.CONFLICT_DETECTED,
                f"stream {stream!r} is at version {sv_now}, the append expected {item.expected_version}; nothing was written",
            )
        seq += 1
        start = len(batch.data)
        h = encode_into(batch.data, seq=seq, stream=stream, sv=sv_now + 1, event_id=event_id, ts=ts, data=item.event, prev=prev)
        if len(batch.data) - start > MAX_LINE:
            raise AsupError(ErrorCode.BAD_INPUT, f"event {type(item.event).__name__} encodes to more than {MAX_LINE} bytes")
        position = Position(seq, stream, sv_now + 1)
        heads[stream] = (sv_now + 1, h)
        ids[(stream, event_id)] = position
        batch.positions.append(position)
        batch.new.append((stream, sv_now + 1, h, event_id, seq))
        batch.line_ends.append(len(batch.data))
    return batch
