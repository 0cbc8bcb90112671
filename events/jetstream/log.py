"""The log on a JetStream stream: the JSONL log's records, one message each.

A message's payload is the record's line without its newline, byte for byte (same
digests, same per-stream chains), so `asup log export` writes a file that verifies and
replays offline. The record's `seq` is inside its hashed bytes and equals the message's
stream sequence: that is the single sequencer. Each publish states the stream sequence it
expects to follow (`Nats-Expected-Last-Sequence`) and its subject's
(`Nats-Expected-Last-Subject-Sequence`, one subject per asup stream), so a writer that
planned against a stale view is refused by the server, catches up and plans again
(bounded, counted in `contention_retries`). The message id is the record's digest: the
server's de-duplication answers a repeated id before it checks expectations, so an id
that did not bind the bytes would let a stale writer's *different* event be acknowledged
and dropped.

Batches: on a server that honours atomic batches (>= 2.12, `allow_atomic` returned in the
stream config) up to ATOMIC_MAX records are stored all or none; otherwise each message is
published with its own expectations and id, and after any failure the writer reads back
what was stored and re-plans only what was not, so a retried partial batch completes
without duplicates. Durability is the server's: an acknowledged record is stored on a
quorum of the stream's replicas (fsynced on the server's own schedule).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncGenerator, AsyncIterator, Coroutine, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from events.batch import Batch, plan
from events.chain import DEFAULT_ID_WINDOW, ChainHeads, ChainState, Position
from events.clock import Clock, SystemClock, format_ts
from events.errors import AsupError, ErrorCode
from events.jetstream.bridge import bridge
from events.jetstream.client import STALE, STREAM_NOT_FOUND, Connection, Message, ServerSaid, Unreachable, as_asup_error, unreachable
from events.jetstream.url import LogUrl, parse
from events.payloads import Event, LogCreated
from events.record import HEADER_STREAM, LOG_SCHEMA, MAX_LINE, LineFault, Record, genesis
from events.schema import decode_line
from events.store import Pending, pending_for

T = TypeVar("T")

ATOMIC_MAX = 1000  # the server's default limit of messages in one atomic batch
CATCH_UP_GETS = 2000  # a catch-up shorter than this gets each message; longer ones use a consumer
CONTENTION_RETRIES = 200  # re-plans after losing a race to another writer, per append
CHUNK = 1024  # messages handed across the bridge at a time
ATOMIC_FROM = (2, 12, 0)
LIVENESS = 1.0  # seconds a follower waits for a message before it checks the connection


class JetStreamLog(ChainHeads):
    """A log on JetStream, open for append. Use `JetStreamLog.open(url)`; close it (or `with`)."""

    def __init__(self, url: LogUrl, clock: Clock, id_window: int) -> None:
        self.url = url
        self.name = url.text
        self._clock = clock
        self._chain = ChainState(id_window)
        self._last_of: dict[str, int] = {}  # asup stream -> stream sequence of its last record
        self._bridge = bridge()
        self._conn = Connection(url)
        self._connected = False
        self._reader = False
        self.atomic = False
        self.contention_retries = 0  # publishes planned again after another writer's append won the race
        self.transient_retries = 0  # publishes tried again after a timeout or a leader change

    # --- opening -------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        url: LogUrl | str,
        *,
        log_id: str | None = None,
        clock: Clock | None = None,
        id_window: int = DEFAULT_ID_WINDOW,
        create: bool = True,
        header: bool = True,
        reader: bool = False,
    ) -> JetStreamLog:
        """Open (or, with `create`, create) the log at `url`; its records are read and
        verified. `header` False leaves a new stream empty (for `import_lines`). A `reader`
        only reads (`read`, `verified_lines`, `follow`): nothing is read at open, and it
        cannot append."""
        parsed = parse(url) if isinstance(url, str) else url
        log = cls(parsed, clock or SystemClock(), id_window)
        try:
            log._run(log._conn.connect())
            log._connected = True
            log._reader = reader
            log._attach(log_id or parsed.stream, create and not reader, header)
        except BaseException:
            log.close()
            raise
        return log

    def _attach(self, log_id: str, create: bool, header: bool) -> None:
        info = self._stream_info()
        if info is None:
            if not create:
                raise AsupError(ErrorCode.LOG_NOT_FOUND, f"no such log: the server has no stream {self.url.stream!r}", file=self.name)
            info = self._create_stream()
        self._check_config(info.get("config", {}))
        state = info.get("state", {})
        if int(state.get("messages", 0)) and int(state.get("first_seq", 1)) != 1:
            raise AsupError(
                ErrorCode.LOG_ROLLBACK,
                f"the stream starts at sequence {state['first_seq']}: records before it were removed",
                file=self.name,
            )
        last = int(state.get("last_seq", 0))
        if self._reader:
            return
        if last:
            self._catch_up(last)
        elif header:
            self._write_header(log_id)

    def _stream_info(self) -> dict[str, Any] | None:
        try:
            return self._run(self._conn.api(f"STREAM.INFO.{self.url.stream}"))
        except AsupError as exc:
            if isinstance(exc.__cause__, ServerSaid) and exc.__cause__.err_code == STREAM_NOT_FOUND:
                return None
            raise

    def _create_stream(self) -> dict[str, Any]:
        config: dict[str, Any] = {
            "name": self.url.stream,
            "subjects": [self.url.subjects],
            "retention": "limits",
            "storage": "file",
            "num_replicas": self.url.replicas or 1,
            "max_msgs": -1,
            "max_bytes": -1,
            "max_age": 0,
            "max_msg_size": MAX_LINE,
            "discard": "old",
            "deny_delete": True,  # a record once acknowledged is never removed through the API
            "deny_purge": True,
        }
        if self._conn.server_version() >= ATOMIC_FROM:
            config["allow_atomic"] = True
        try:
            return self._run(self._conn.api(f"STREAM.CREATE.{self.url.stream}", config))
        except AsupError as exc:
            if isinstance(exc.__cause__, ServerSaid):  # lost a race to another creator, or a config the server cannot hold
                info = self._stream_info()
                if info is not None:
                    return info
            raise

    def _check_config(self, config: dict[str, Any]) -> None:
        """An asup log's stream: its subjects only, nothing ever discarded, the replicas asked."""
        if config.get("subjects") != [self.url.subjects]:
            raise AsupError(
                ErrorCode.NOT_AN_ASUP_LOG,
                f"stream {self.url.stream!r} holds subjects {config.get('subjects')}, not {self.url.subjects!r}: another tool's stream",
                file=self.name,
            )
        limits = {key: config.get(key) for key in ("max_msgs", "max_bytes") if config.get(key, -1) not in (-1, 0)}
        if config.get("max_age", 0):
            limits["max_age"] = config["max_age"]
        if config.get("retention", "limits") != "limits" or limits:
            raise AsupError(
                ErrorCode.NOT_AN_ASUP_LOG,
                f"stream {self.url.stream!r} discards messages ({limits or config.get('retention')}): an asup log keeps every record",
                file=self.name,
            )
        replicas = int(config.get("num_replicas", 1))
        if self.url.replicas is not None and replicas != self.url.replicas:
            raise AsupError(
                ErrorCode.USAGE,
                f"the URL asks for replicas={self.url.replicas}, the stream has {replicas}: drop ?replicas or match it",
                file=self.name,
            )
        # 2.9 returns a config without the flag it ignores: only what the server echoes is trusted
        self.atomic = bool(config.get("allow_atomic")) and self._conn.server_version() >= ATOMIC_FROM

    def _write_header(self, log_id: str) -> None:
        chain = ChainState()
        chain.log_id = log_id
        batch = plan(chain, [Pending(HEADER_STREAM, LogCreated(log_id=log_id, schema=LOG_SCHEMA))], self._now(), _no_line)
        try:
            self._run(self._publish(batch, 0, {}))
        except AsupError as exc:
            if not (isinstance(exc.__cause__, ServerSaid) and exc.__cause__.err_code in STALE):
                raise
        self._catch_up(self._last_seq())  # ours, or the header of a creator that won the race

    # --- the store interface ---------------------------------------------------------

    def append_batch(self, items: Sequence[Pending]) -> list[Position]:
        self._check_open()
        if self._reader:
            raise AsupError(ErrorCode.USAGE, "opened for reading: cannot append", file=self.name)
        return self._append(list(items))

    def append(self, stream: str, events: Sequence[Event], expected_version: int | None = None) -> list[Position]:
        return self.append_batch(pending_for(stream, events, expected_version))

    def read(self, from_seq: int = 1) -> Iterator[Record]:
        self._check_open()
        return self._read(from_seq, self._last_seq())

    def read_stream(self, stream: str) -> Iterator[Record]:
        self._check_open()
        return self._read_stream(stream)

    async def follow(self, from_seq: int = 1) -> AsyncIterator[Record]:
        async with contextlib.aclosing(self.follow_lines(from_seq)) as lines:  # closing this closes the subscription at once
            async for record, _line in lines:
                yield record

    async def follow_lines(self, from_seq: int = 1) -> AsyncGenerator[tuple[Record, bytes], None]:
        """`follow`, each record with its line as stored (a reader keeping a local copy)."""
        self._check_open()
        chain = ChainState()
        last_of: dict[str, int] = {}
        sub = await self._wait(self._conn.follow(self.url.subjects, 1))
        lost_since: float | None = None
        try:
            while True:
                chunk = await self._wait(sub.next(CHUNK, min(LIVENESS, self.url.timeout)))
                for seq, payload in chunk:
                    record = self._verified(chain, last_of, seq, payload)
                    if record.seq >= from_seq:
                        yield record, payload
                # a quiet consumer may be a lost server: nats-py reconnects in the background,
                # so a connection down for longer than the URL's timeout ends the follow
                if chunk or self._conn.connected:
                    lost_since = None
                elif lost_since is None:
                    lost_since = time.monotonic()
                elif time.monotonic() - lost_since >= self.url.timeout:
                    raise self._unreachable("the connection was lost while following")
        finally:
            with contextlib.suppress(TimeoutError):  # the connection may be gone: the subscription went with it
                self._bridge.call(sub.close(), self.url.timeout)

    def verified_lines(self) -> Iterator[bytes]:
        """Every record's line (without its newline) as stored, each verified in order: an
        export of the log."""
        self._check_open()
        chain = ChainState()
        last_of: dict[str, int] = {}
        for seq, payload in self._messages(self.url.subjects, 1, self._last_seq()):
            self._verified(chain, last_of, seq, payload)
            yield payload

    def head(self) -> tuple[int, str]:
        """(last seq, its digest) as the stream holds them now (a reader's too: it reads the
        last message only, checked by its digest); (0, "") for an empty stream."""
        self._check_open()
        last = self._last_seq()
        return (last, self.digest_at(last)) if last else (0, "")

    def digest_at(self, seq: int) -> str:
        """The digest of the record stored at `seq` ("" when there is none)."""
        line = self._line_at(seq)
        return self._decoded(seq, line).h if line else ""

    def import_lines(self, lines: Iterable[bytes]) -> int:
        """Store a whole log's lines (header first, each verified here) as they are, so the
        stream holds the same bytes. Lines the stream already holds must be the same ones (an
        interrupted import resumes where it stopped); the count newly stored."""
        self._check_open()
        chain, last_of = ChainState(), dict[str, int]()
        held = self._chain.last_seq
        stored = self._messages(self.url.subjects, 1, held)
        pending: list[tuple[Record, bytes]] = []
        count = 0
        for line in lines:
            record = self._verified(chain, last_of, chain.last_seq + 1, line)
            self._chain.log_id = self._chain.log_id or chain.log_id
            if record.seq <= held:
                if next(stored)[1] != line:
                    raise self._corrupt(record.seq, f"the stream already holds a different record at seq {record.seq}: not this log")
                continue
            pending.append((record, line))
            if len(pending) >= ATOMIC_MAX:
                count += self._store_lines(pending)
        return count + self._store_lines(pending)

    def _store_lines(self, pending: list[tuple[Record, bytes]]) -> int:
        if not pending:
            return 0
        batch = Batch()
        for record, line in pending:
            batch.new.append((record.stream, record.sv, record.h, record.id, record.seq, len(batch.data)))
            batch.data += line + b"\n"
        if self._try_publish(batch, self._chain.last_seq) is not None:
            raise AsupError(ErrorCode.LOG_LOCKED, "another writer appended to the stream during the import", file=self.name)
        count = len(pending)
        pending.clear()
        return count

    def close(self) -> None:
        if self._connected:
            self._connected = False
            with contextlib.suppress(TimeoutError, OSError):
                self._bridge.call(self._conn.close(), self.url.timeout)

    def __enter__(self) -> JetStreamLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- appending -------------------------------------------------------------------

    def _append(self, items: list[Pending]) -> list[Position]:
        """Plan against this writer's view, publish, and after any refusal or failure read
        back what the stream holds and plan again only what it does not."""
        result: list[Position | None] = [None] * len(items)
        todo = list(range(len(items)))
        deadline = time.monotonic() + 3 * self.url.timeout
        wait = 0.05
        for _ in range(CONTENTION_RETRIES):
            base = self._chain.last_seq
            batch = plan(self._chain, [items[i] for i in todo], self._now(), self._line_at)
            failure = self._try_publish(batch, base) if batch.data else None
            stored = {seq: h for _, _, h, _, seq, _ in batch.new} if failure is None else self._recover(deadline)
            planned_h = {seq: h for _, _, h, _, seq, _ in batch.new}
            left: list[int] = []
            for index, position in zip(todo, batch.positions, strict=True):
                landed = position.seq <= base or stored.get(position.seq) == planned_h.get(position.seq)
                if landed:
                    result[index] = position
                else:
                    left.append(index)
            if not left:
                return [p for p in result if p is not None]
            todo = left
            if failure == "stale":
                self.contention_retries += 1
            else:
                self.transient_retries += 1
                if time.monotonic() + wait > deadline:
                    raise self._unreachable(f"publishes kept failing; {len(left)} of {len(items)} events were not stored")
                time.sleep(wait)  # a leader election or a reconnect takes a moment: do not spin through it
                wait = min(1.0, wait * 2)
        raise AsupError(
            ErrorCode.LOG_LOCKED,
            f"gave up after {CONTENTION_RETRIES} attempts: other writers kept appending first; nothing of the rest was written",
            file=self.name,
        )

    def _try_publish(self, batch: Batch, base: int) -> str | None:
        """Publish `batch` (planned after seq `base`); None when every record was
        acknowledged (and committed to the chain), else "stale" or "transient"."""
        last_of = dict(self._last_of)
        try:
            self._run(self._publish(batch, base, last_of))
        except AsupError as exc:
            cause = exc.__cause__
            if isinstance(cause, ServerSaid) and cause.err_code in STALE:
                return "stale"
            if isinstance(cause, Unreachable | TimeoutError):
                return "transient"
            raise
        # a recent id's "offset" is its seq here: `_line_at` fetches the message
        self._chain.remember_all([(stream, sv, h, event_id, seq, seq) for stream, sv, h, event_id, seq, _ in batch.new])
        self._last_of = last_of
        return None

    async def _publish(self, batch: Batch, base: int, last_of: dict[str, int]) -> None:
        lines = bytes(batch.data).split(b"\n")[:-1]
        messages = []
        for (stream, _sv, h, _id, seq, _offset), line in zip(batch.new, lines, strict=True):
            headers = {"Nats-Msg-Id": h.removeprefix("blake3:")}
            messages.append((self.url.subject(stream), line, headers, stream, seq))
        if self.atomic and len(messages) > 1:
            for start in range(0, len(messages), ATOMIC_MAX):
                await self._publish_atomic(messages[start : start + ATOMIC_MAX], last_of)
        else:
            await self._publish_each(messages, last_of)

    async def _publish_each(self, messages: list[tuple[str, bytes, dict[str, str], str, int]], last_of: dict[str, int]) -> None:
        sends = []
        for subject, line, headers, stream, seq in messages:
            headers["Nats-Expected-Last-Sequence"] = str(seq - 1)
            headers["Nats-Expected-Last-Subject-Sequence"] = str(last_of.get(stream, 0))
            last_of[stream] = seq
            sends.append((subject, line, headers))
        # one connection keeps them in order; each expects the one before, so they land in
        # order or not at all
        acks = await self._conn.publish_many(sends)
        for ack, (_, _, _, _, seq) in zip(acks, messages, strict=True):
            if isinstance(ack, Exception):
                raise ack
            _check_ack(ack, seq)

    async def _publish_atomic(self, messages: list[tuple[str, bytes, dict[str, str], str, int]], last_of: dict[str, int]) -> None:
        batch_id = messages[0][2]["Nats-Msg-Id"][:32]
        for n, (subject, line, headers, stream, seq) in enumerate(messages, 1):
            headers["Nats-Batch-Id"] = batch_id
            headers["Nats-Batch-Sequence"] = str(n)
            if n == 1:
                headers["Nats-Expected-Last-Sequence"] = str(seq - 1)
            if stream not in {m[3] for m in messages[: n - 1]}:  # the server checks a subject's first message only
                headers["Nats-Expected-Last-Subject-Sequence"] = str(last_of.get(stream, 0))
            last_of[stream] = seq
            if n < len(messages):
                await self._conn.send(subject, line, headers)
            else:
                headers["Nats-Batch-Commit"] = "1"
                ack = await self._conn.publish(subject, line, headers)
                _check_ack(ack, seq)
                if int(ack.get("count", n)) != n:
                    raise ServerSaid(0, 0, f"the batch's commit counted {ack.get('count')} messages, {n} were sent")

    def _recover(self, deadline: float) -> dict[int, str]:
        """After a failed publish: read what the stream now holds (retrying while the server
        is unreachable, until `deadline`); the (seq -> digest) of the records read."""
        wait = 0.05
        while True:
            try:
                return self._catch_up(self._last_seq())
            except AsupError as exc:
                if exc.code is not ErrorCode.LOG_UNREACHABLE or time.monotonic() + wait > deadline:
                    raise
            time.sleep(wait)
            wait = min(1.0, wait * 2)

    # --- reading ---------------------------------------------------------------------

    def _catch_up(self, last: int) -> dict[int, str]:
        """Read and verify the records after this writer's view up to seq `last`."""
        chain = self._chain
        if last < chain.last_seq:
            raise AsupError(
                ErrorCode.LOG_ROLLBACK,
                f"the stream's last sequence is {last}, this writer has seen {chain.last_seq}: acknowledged records are gone",
                file=self.name,
            )
        seen: dict[int, str] = {}
        for seq, payload in self._since(chain.last_seq + 1, last):
            record = self._verified(chain, self._last_of, seq, payload)
            seen[seq] = record.h
        return seen

    def _since(self, start: int, last: int) -> Iterator[Message]:
        """The messages from `start` to `last`: a short run (another writer's last batches)
        asked for all at once, a long one through an ordered consumer (whose creation costs
        more than a few hundred gets)."""
        if last - start >= CATCH_UP_GETS:
            yield from self._messages(self.url.subjects, start, last)
            return
        seqs = list(range(start, last + 1))
        for seq, payload in zip(seqs, self._run(self._conn.get_many(seqs)), strict=True):
            if payload is None:
                raise self._corrupt(seq, f"no message at stream sequence {seq}, below the stream's last {last}")
            yield seq, payload

    def _read(self, from_seq: int, last: int) -> Iterator[Record]:
        chain = ChainState()
        last_of: dict[str, int] = {}
        for seq, payload in self._messages(self.url.subjects, 1, last):
            record = self._verified(chain, last_of, seq, payload)
            if record.seq >= from_seq:
                yield record

    def _read_stream(self, stream: str) -> Iterator[Record]:
        """One stream's records through a filtered consumer, each checked: its digest, its
        place in the stream (version and chain) and the subject it was stored under."""
        last = self._last_of_subject(stream)
        if last == 0:
            return
        sv, prev = 0, genesis(self._log_id(), stream)
        for seq, payload in self._messages(self.url.subject(stream), 1, last):
            record = self._decoded(seq, payload)
            if record.stream != stream or record.sv != sv + 1 or record.prev != prev:
                raise self._corrupt(seq, f"record at seq {seq} does not continue stream {stream!r} (version {sv}, chain)")
            sv, prev = record.sv, record.h
            yield record

    def _verified(self, chain: ChainState, last_of: dict[str, int], seq: int, payload: bytes) -> Record:
        record = self._decoded(seq, payload, header=chain.log_id is None)
        issue = chain.advance(record, seq)
        if issue is not None:
            raise self._corrupt(seq, issue)
        last_of[record.stream] = seq
        return record

    def _decoded(self, seq: int, payload: bytes, *, header: bool = False) -> Record:
        outcome = decode_line(payload)
        if isinstance(outcome, LineFault):
            if header:
                raise AsupError(ErrorCode.NOT_AN_ASUP_LOG, "its first message is not an asup log header", file=self.name, line=1)
            code = ErrorCode.SCHEMA_UNSUPPORTED if outcome.reason == "schema_unsupported" else ErrorCode.CORRUPT_RECORD
            raise AsupError(code, outcome.message, file=self.name, line=seq, field=outcome.field, seq=seq)
        if outcome.seq != seq:
            raise self._corrupt(seq, f"the message at stream sequence {seq} holds seq {outcome.seq}")
        return outcome

    def _corrupt(self, seq: int, why: str) -> AsupError:
        return AsupError(ErrorCode.CORRUPT_RECORD, why, file=self.name, line=seq, seq=seq)

    def _messages(self, subject: str, start: int, last: int) -> Iterator[Message]:
        """The stored messages of `subject` from `start` up to stream sequence `last`."""
        if start > last:
            return
        sub = self._run(self._conn.follow(subject, start))
        whole = subject == self.url.subjects
        try:
            while True:
                chunk = self._run(sub.next(CHUNK, self.url.timeout))
                if not chunk:
                    raise AsupError(
                        ErrorCode.LOG_UNREACHABLE,
                        f"records up to seq {last} did not arrive within {self.url.timeout:g} s",
                        file=self.name,
                    )
                for message in chunk:
                    if whole and message[0] != start:  # the stream holds nothing else: every seq comes, in order
                        raise self._unreachable(f"the consumer delivered seq {message[0]} where {start} was due")
                    start = message[0] + 1
                    yield message
                    if message[0] >= last:
                        return
        finally:
            with contextlib.suppress(AsupError):
                self._run(sub.close())

    def _last_seq(self) -> int:
        info = self._stream_info()
        if info is None:
            raise AsupError(ErrorCode.LOG_NOT_FOUND, f"the stream {self.url.stream!r} is gone", file=self.name)
        return int(info.get("state", {}).get("last_seq", 0))

    def _last_of_subject(self, stream: str) -> int:
        try:
            answer = self._run(self._conn.api(f"STREAM.MSG.GET.{self.url.stream}", {"last_by_subj": self.url.subject(stream)}))
        except AsupError as exc:
            if isinstance(exc.__cause__, ServerSaid):
                return 0
            raise
        return int(answer["message"]["seq"])

    def _log_id(self) -> str:
        if self._chain.log_id is None:  # a reader: the header says
            header = self._decoded(1, self._line_at(1), header=True)
            if not isinstance(header.data, LogCreated):
                raise AsupError(ErrorCode.NOT_AN_ASUP_LOG, "its first message is not an asup log header", file=self.name, line=1)
            self._chain.log_id = header.data.log_id
        return self._chain.log_id

    def _line_at(self, offset: int) -> bytes:
        """The stored line of a recent id (its offset is its seq), for checking a retry."""
        if offset < 1:
            return b""
        return self._run(self._conn.get(offset)) or b""

    # --- plumbing --------------------------------------------------------------------

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return self._bridge.call(coro, 2 * self.url.timeout + 1)
        except (Unreachable, ServerSaid, TimeoutError) as exc:
            raise as_asup_error(exc, self.name, self.url.timeout) from exc

    async def _wait(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return await self._bridge.wait(coro)
        except (Unreachable, ServerSaid) as exc:
            raise as_asup_error(exc, self.name, self.url.timeout) from exc

    def _unreachable(self, why: str) -> AsupError:
        return unreachable(self.name, why, self.url.timeout)

    def _check_open(self) -> None:
        if not self._connected:
            raise AsupError(ErrorCode.WRITER_CLOSED, "the log is closed", file=self.name)

    def _now(self) -> str:
        return format_ts(self._clock.now_ns())


def _check_ack(ack: dict[str, Any], seq: int) -> None:
    if int(ack.get("seq", 0)) != seq:
        raise ServerSaid(0, 0, f"the record planned at seq {seq} was stored at {ack.get('seq')}")


def _no_line(offset: int) -> bytes:
    return b""
