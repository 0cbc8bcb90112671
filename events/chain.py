"""The chain rules a log's records obey, checked in order as they are read.

- line 1 is the `log_created` header (seq 1, stream `$log`), naming the log id;
- `seq` is contiguous from 1 (so a record's line number is its seq);
- per stream, `sv` is contiguous from 1 and `prev` is the `h` of the stream's previous
  record (the first chains to `genesis(log_id, stream)`);
- `v` is at least 1 (the decoder refuses a newer one and lifts an older one, `events.schema`).
"""

from __future__ import annotations

from collections import deque

import msgspec

from events.payloads import LogCreated
from events.record import HEADER_STREAM, LOG_SCHEMA, SCHEMA_VERSION, Record, genesis


class StreamHead(msgspec.Struct, gc=False):
    sv: int
    h: str


class Position(msgspec.Struct, frozen=True, gc=False):
    """Where an appended event landed."""

    seq: int
    stream: str
    sv: int


class ChainHeads:
    """The head queries every store answers from its chain (mixed into the stores)."""

    _chain: ChainState

    def last_position(self) -> tuple[int, str]:
        """(last seq, its digest)."""
        return self._chain.last_seq, self._chain.last_h

    def stream_version(self, stream: str) -> int:
        return self._chain.version(stream)

    def stream_head(self, stream: str) -> tuple[int, str]:
        """(the stream's version, the digest of its last record); (0, genesis) when empty."""
        return self._chain.version(stream), self._chain.prev_of(stream)


RecentKey = tuple[str, str]  # (stream, event id)
NewRecord = tuple[str, int, str, str, int, int]  # stream, sv, h, id, seq, offset of its line
DEFAULT_ID_WINDOW = 8192  # recent ids a store remembers for idempotent retries, in total


class ChainState:
    """The heads of a log as read so far, plus one window of the `id_window` most recent
    ids of the whole log (bounded in total, however many streams there are): (stream, id)
    -> (seq, sv, byte offset of its line); the offset lets a retry be checked against the
    stored event.

    The window is kept lazily: committed batches wait in `_unindexed` and enter the id map
    only when something asks it (a retry's lookup, a saved index), because an append whose
    ids are derived never does, and indexing every id costs more than encoding it at many
    streams. Only the newest `2 * id_window` waiting ids are kept: an older id is out of the
    window by then, and so is any id whose eviction it could cause (see `_drop_unindexed`),
    so the map comes out exactly as indexing each id at once would leave it."""

    def __init__(self, id_window: int = 0) -> None:
        self.log_id: str | None = None
        self.last_seq = 0
        self.last_h = ""
        self.streams: dict[str, StreamHead] = {}
        self._recent: dict[RecentKey, tuple[int, int, int]] = {}
        self._order: deque[RecentKey] = deque()  # insertion order: dropping the oldest is O(1)
        self._unindexed: deque[tuple[int, list[NewRecord]]] = deque()  # (base, records) not yet in _recent
        self._waiting = 0  # records in _unindexed
        self.id_window = id_window
        self.keys: dict[str, tuple[bytes, bytes, str]] = {}  # stream -> (its id prefix, its JSON, the prefix as text): events.batch

    def version(self, stream: str) -> int:
        head = self.streams.get(stream)
        return head.sv if head else 0

    def prev_of(self, stream: str) -> str:
        head = self.streams.get(stream)
        if head is not None:
            return head.h
        assert self.log_id is not None, "the header sets the log id first"
        return genesis(self.log_id, stream)

    def find_recent(self, stream: str, event_id: str) -> tuple[Position, int] | None:
        """Where a recent id of `stream` landed: its position and the byte offset of its line."""
        hit = self.recent.get((stream, event_id))
        return None if hit is None else (Position(hit[0], stream, hit[1]), hit[2])

    def problem(self, record: Record) -> str | None:
        """Why `record` cannot follow the records admitted so far, or None."""
        if record.v < 1:  # a newer one never gets here: the decoder refuses it
            return f"schema version {record.v} is not one asup writes"
        if record.seq != self.last_seq + 1:
            return (
                f"seq {record.seq} follows seq {self.last_seq} (expected {self.last_seq + 1}): "
                "a record is missing, repeated or out of order"
            )
        if self.log_id is None:
            return self._header_problem(record)
        head = self.streams.get(record.stream)
        expected_sv = head.sv + 1 if head else 1
        if record.sv != expected_sv:
            return f"stream {record.stream!r} version {record.sv}, expected {expected_sv}"
        if record.prev != self.prev_of(record.stream):
            return f"prev of stream {record.stream!r} does not match its previous record (edited, spliced or reordered)"
        return None

    def _header_problem(self, record: Record) -> str | None:
        data = record.data
        if not isinstance(data, LogCreated) or record.stream != HEADER_STREAM:
            return "the first record is not the log_created header"
        if data.schema != LOG_SCHEMA:
            return f"log schema {data.schema!r} is not {LOG_SCHEMA!r}"
        if record.prev != genesis(data.log_id, HEADER_STREAM) or record.sv != 1:
            return "header does not chain to its log's genesis"
        return None

    def advance(self, record: Record, offset: int = -1) -> str | None:
        """Check `record` against the heads and, when it fits, admit it: why not, or None.

        The common case (next seq, an existing stream, the current `v`) is decided inline; anything
        else goes through `problem` for the precise message. `offset` (of the record's line)
        is kept in the id window.
        """
        head = self.streams.get(record.stream)
        if (
            head is None
            or self.log_id is None
            or record.seq != self.last_seq + 1
            or record.v != SCHEMA_VERSION
            or record.sv != head.sv + 1
            or record.prev != head.h
        ):
            issue = self.problem(record)
            if issue is None:
                self.admit(record, offset)
            return issue
        self.last_seq = record.seq
        self.last_h = head.h = record.h
        head.sv = record.sv
        if self.id_window:
            self.remember(record.stream, record.sv, record.h, record.id, record.seq, offset)
        return None

    def admit(self, record: Record, offset: int = -1) -> None:
        """Advance the heads past `record` (already checked by `problem`)."""
        if self.log_id is None and isinstance(record.data, LogCreated):
            self.log_id = record.data.log_id
        self.last_seq = record.seq
        self.last_h = record.h
        self.remember(record.stream, record.sv, record.h, record.id, record.seq, offset)

    def remember_all(self, new: list[NewRecord], base: int = 0) -> None:
        """`remember` for a committed batch of (stream, sv, h, id, seq, offset), lookups
        hoisted; the offsets are relative to `base`, where the batch's bytes begin. `new`
        is kept (for the id window): the caller must not change it afterwards."""
        streams = self.streams
        for stream, sv, h, _id, _seq, _offset in new:
            head = streams.get(stream)
            if head is None:
                streams[stream] = StreamHead(sv, h)
            else:
                head.sv = sv
                head.h = h
        if not new:
            return
        self.last_seq = new[-1][4]
        self.last_h = new[-1][2]
        if self.id_window:
            self._unindexed.append((base, new))
            self._waiting += len(new)
            self._drop_unindexed()

    def _drop_unindexed(self) -> None:
        """Forget waiting batches that the newer ones push out of reach. A batch can go once
        `2 * id_window` newer ids wait: its ids would leave the window before the newest
        `id_window` arrive, and an id can evict (by key) only an entry less than `id_window`
        ids newer than itself, which is out of the window too. The map and order are then
        reset: everything in them is older still."""
        waiting, reach = self._unindexed, 2 * self.id_window
        dropped = False
        while waiting and self._waiting - len(waiting[0][1]) >= reach:
            self._waiting -= len(waiting.popleft()[1])
            dropped = True
        if dropped:
            self._recent.clear()
            self._order.clear()

    @property
    def recent(self) -> dict[RecentKey, tuple[int, int, int]]:
        """The id window: (stream, id) -> (seq, sv, offset of its line)."""
        if self._unindexed:
            self._index()
        return self._recent

    def _index(self) -> None:
        recent, order, size = self._recent, self._order, self.id_window
        for base, new in self._unindexed:
            for stream, sv, _h, event_id, seq, offset in new:
                key = (stream, event_id)
                recent[key] = (seq, sv, base + offset)
                order.append(key)
                if len(order) > size:
                    recent.pop(order.popleft(), None)  # the oldest leaves the window
        self._unindexed.clear()
        self._waiting = 0

    def remember_recent(self, entries: list[tuple[str, str, int, int, int]]) -> None:
        """Refill the window from saved (stream, id, seq, sv, offset) entries, oldest first."""
        if not self.id_window:
            return
        recent = self.recent
        for stream, event_id, seq, sv, offset in entries[-self.id_window :]:
            recent[(stream, event_id)] = (seq, sv, offset)
            self._order.append((stream, event_id))

    def recent_entries(self) -> list[tuple[str, str, int, int, int]]:
        """The window as (stream, id, seq, sv, offset), oldest first (for saving)."""
        recent = self.recent
        return [(key[0], key[1], *recent[key]) for key in self._order if key in recent]

    def remember(self, stream: str, sv: int, h: str, event_id: str, seq: int, offset: int = -1) -> None:
        self.remember_all([(stream, sv, h, event_id, seq, offset)])
        self.last_seq, self.last_h = seq, h
