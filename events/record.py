"""The record: one event in the log, one line of UTF-8 JSON with a digest trailer.

    {"type":"transition","v":1,"seq":7,"stream":"t-1","sv":3,"id":"e-…","ts":"…Z",
     "data":{…},"prev":"blake3:…","h":"blake3:<64 hex>"}\\n

`type` comes first because it is the msgspec tag of the record class; `h` comes last and
is the BLAKE3 of every byte before `,"h":` — a fixed 80-byte trailer, so verifying a line
needs no re-serialisation. `prev` is `h` of the stream's previous record (the first record
of a stream chains to a genesis digest bound to the log id), so an edit, a deletion, a
reordering or a line pasted from another log breaks the chain. Decoding a line into its
typed record (and lifting an older schema version) is `events.schema`'s.
"""

from __future__ import annotations

from typing import Any, cast

import msgspec
from blake3 import blake3

from events.catalog import REGISTRY
from events.errors import AsupError, ErrorCode
from events.payloads import Event
from events.strict_json import JsonInt

SCHEMA_VERSION = 2  # v2: the intent records its absolute source and target paths
LOG_SCHEMA = "asup.log/1"
HEADER_STREAM = "$log"
MAX_LINE = 1 << 20  # a longer line is not a record asup writes

TRAILER_HEAD = b',"h":"blake3:'
TRAILER_LEN = len(TRAILER_HEAD) + 64 + len(b'"}')  # 79, the newline not counted


class Record(msgspec.Struct, frozen=True, forbid_unknown_fields=True, gc=False, tag_field="type"):
    """The envelope. Subclasses (one per event type, built below) narrow `data`."""

    v: JsonInt
    seq: JsonInt
    stream: str
    sv: JsonInt
    id: str
    ts: str
    data: Event
    prev: str
    h: str = ""

    @property
    def type(self) -> str:
        return self.data.TYPE


def record_class(tag: str, payload: type[Event]) -> type[Record]:
    """The record class whose `data` is `payload`, tagged `tag` (one per event type and schema)."""
    cls = msgspec.defstruct(
        f"{payload.__name__}Record",
        [("data", payload)],
        bases=(Record,),
        tag=tag,
        frozen=True,
        forbid_unknown_fields=True,
        gc=False,
        module=__name__,
    )
    return cast(type[Record], cls)


_ENCODER = msgspec.json.Encoder()


def genesis(log_id: str, stream: str) -> str:
    """The `prev` of a stream's first record: binds the stream to its log."""
    return "blake3:" + blake3(f"asup-genesis\x00{log_id}\x00{stream}".encode()).hexdigest()


def stream_tag(log_id: str, stream: str) -> str:
    """20 hex digits binding a stream name to its log: the stable part of its event ids."""
    return blake3(f"asup-stream\x00{log_id}\x00{stream}".encode()).hexdigest(10)


def derive_event_id(log_id: str, stream: str, sv: int) -> str:
    """Deterministic event id from (log id, stream, stream version): no uuid4, no hashing
    per event (the stream's tag is computed once per batch), and the version readable.

    The same (stream, version) always gets the same id, so a retry after a lost ack is
    recognised; a stale writer's *different* event at that version is told apart from a
    retry by comparing the stored event (`events.batch.plan`), and conflicts.
    """
    return f"e-{stream_tag(log_id, stream)}-{sv}"


def encode_payload(data: Event) -> bytes:
    return _ENCODER.encode(data)


# One %-template per event type, in the Record struct's key order: encoding a line is one
# format call, with no Record instance built and no placeholder cut off (a test pins the
# template against encoding the struct).
LINE_HEADS: dict[type[Event], bytes] = {
    payload: b'{"type":' + _ENCODER.encode(tag) + b',"v":%d,"seq":%d,"stream":%b,"sv":%d,"id":%b,"ts":%b,"data":%b,"prev":%b'
    for tag, payload in REGISTRY.items()
}
LINE_TRAILER = TRAILER_HEAD + b'%b"}\n'


def line_prefix(data: Event, *, seq: int, stream_json: bytes, sv: int, id_json: bytes, ts_json: bytes, payload: bytes, prev: str) -> bytes:
    """Every byte of a line before its digest trailer (JSON-encoded parts passed in)."""
    head = LINE_HEADS.get(type(data))
    if head is None:
        raise AsupError(ErrorCode.BAD_INPUT, f"{type(data).__name__} is not a registered event type")
    return head % (SCHEMA_VERSION, seq, stream_json, sv, id_json, ts_json, payload, _ENCODER.encode(prev))


def encode_into(
    buf: bytearray,
    *,
    seq: int,
    stream: str,
    sv: int,
    event_id: str,
    ts: str,
    data: Event,
    prev: str,
) -> str:
    """Append one complete line to `buf`; return its digest `h`."""
    enc = _ENCODER.encode
    prefix = line_prefix(
        data, seq=seq, stream_json=enc(stream), sv=sv, id_json=enc(event_id), ts_json=enc(ts), payload=enc(data), prev=prev
    )
    hexdigest = blake3(prefix).hexdigest()
    buf += prefix
    buf += LINE_TRAILER % hexdigest.encode()
    return "blake3:" + hexdigest


class LineFault(msgspec.Struct, frozen=True):
    """Why a line is not a valid record. `torn` faults may be a crash's cut tail."""

    reason: str  # no_newline | too_long | digest_mismatch | too_deep | undecodable | schema_unsupported (events.schema)
    message: str
    field: str | None = None

    @property
    def torn(self) -> bool:
        return self.reason in ("no_newline", "too_long", "digest_mismatch")


def check_line(body: bytes, complete: bool = True) -> LineFault | None:
    """Framing and digest of one line (`body` without its newline); None when both hold."""
    if len(body) >= MAX_LINE:
        return LineFault("too_long", f"line exceeds the {MAX_LINE}-byte limit")
    if not complete:
        return LineFault("no_newline", "line has no terminating newline (cut by a crash?)")
    if len(body) <= TRAILER_LEN or body[-TRAILER_LEN : -TRAILER_LEN + 13] != TRAILER_HEAD or body[-2:] != b'"}':
        # a CR before the newline is a record rewritten with CRLF line endings: say so
        ending = " (it ends in a carriage return: CRLF line endings?)" if body.endswith(b"\r") else ""
        return LineFault("digest_mismatch", f"line does not end in a digest trailer{ending}", "$.h")
    if blake3(memoryview(body)[:-TRAILER_LEN]).hexdigest().encode() != body[-66:-2]:
        return LineFault("digest_mismatch", "digest does not match the line's bytes", "$.h")
    return None


def record_to_builtins(record: Record) -> dict[str, Any]:
    """The record as plain JSON types, in file key order (for --json output)."""
    out: dict[str, Any] = msgspec.to_builtins(record)
    return out


def fault_error(fault: LineFault, *, file: str, line: int, seq: int | None = None) -> AsupError:
    code = {
        "schema_unsupported": ErrorCode.SCHEMA_UNSUPPORTED,
        "undecodable": ErrorCode.CORRUPT_RECORD,
    }.get(fault.reason, ErrorCode.CORRUPT_RECORD)
    return AsupError(code, fault.message, file=file, line=line, field=fault.field, seq=seq)
