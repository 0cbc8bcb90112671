"""JSON asup reads but cannot trust: bounded before it is parsed, strict when it is, and
every refusal one `AsupError` naming the file, line and field.

Limits, each checked before the full parse (a log line's length is `events.record.MAX_LINE`):

    MAX_DOCUMENT  bytes of one JSON document an operator or asup wrote (an intent, a
                  fault plan, a profile, a contract, a checkpoint, a baseline; an evidence
                  pack and a sidecar have their own); also of each line of a JSONL file
    MAX_JSONL     bytes of a JSONL file (a sync batch, e2e rows)
    MAX_DEPTH     nesting levels of objects and arrays; asup's own documents nest at most
                  6 deep, so 64 leaves a wide margin and stays far below the depth at which
                  msgspec runs out of Python stack (~1000)
    JsonInt       what an integer field may hold: a signed 64-bit integer; JSON itself
                  has no limit, but consumers of asup's output (orjson among them) stop at 64 bits

Strict: UTF-8 without a byte-order mark; no NaN or Infinity; no number beyond a float or a
64-bit integer; no lone surrogate escape; one value per document; no duplicate key (a
document whose meaning depends on which of two values a parser keeps is refused).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any, TypeVar

import msgspec

from events.errors import NOT_JSON, AsupError, ErrorCode

MAX_DOCUMENT = 1 << 20  # events.record.MAX_LINE: an intent is recorded as one log line; a contract is ~13 KiB
MAX_JSONL = 64 << 20
MAX_DEPTH = 64
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1
JsonInt = Annotated[int, msgspec.Meta(ge=INT64_MIN, le=INT64_MAX)]
"""An integer field of a record: what a signed 64-bit integer holds (the widest bound
msgspec checks while it decodes); decoding refuses one beyond it."""

BOM = b"\xef\xbb\xbf"

T = TypeVar("T")

# a JSON string, escapes included; what is left between strings holds the structure
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_TOKEN = re.compile(rb'[\[{]|[\]}]|"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_PAIR = re.compile(rb"\[\]|\{\}")


def depth_exceeded(data: bytes, limit: int = MAX_DEPTH) -> int | None:
    """The byte offset where `data` first nests deeper than `limit`, or None.

    Cheap for what asup writes: a document with at most `limit` brackets cannot be deeper,
    and otherwise removing innermost `[]`/`{}` pairs (outside strings) `limit` times
    empties a document that is not; only a deeper or malformed one is walked token by token.
    """
    if data.count(b"[") + data.count(b"{") <= limit:
        return None
    rest = _STRING.sub(b"", data).translate(None, _BRACKETS)
    for _ in range(limit):
        shorter = _PAIR.sub(b"", rest)  # one pass: a pair it uncovers waits for the next round
        if not shorter:
            return None
        if len(shorter) == len(rest):
            break
        rest = shorter
    return _walk(data, limit)


def _walk(data: bytes, limit: int) -> int | None:
    depth = 0
    for token in _TOKEN.finditer(data):
        char = token.group()[0]
        if char in b"[{":
            depth += 1
            if depth > limit:
                return token.start()
        elif char in b"]}":
            depth -= 1
    return None


def precheck(data: bytes, *, max_bytes: int = MAX_DOCUMENT, max_depth: int = MAX_DEPTH) -> str | None:
    """Why `data` is refused before it is parsed (size, byte-order mark, UTF-8, depth), or None."""
    if len(data) > max_bytes:
        return f"{len(data)} bytes is over the {max_bytes}-byte limit"
    if data.startswith(BOM):
        return "starts with a UTF-8 byte-order mark, which JSON does not allow"
    try:
        data.decode()
    except UnicodeDecodeError as exc:
        return _not_utf8(exc)
    at = depth_exceeded(data, max_depth)
    if at is not None:
        return f"nests deeper than the {max_depth}-level limit (at byte {at})"
    return None


def _not_utf8(exc: UnicodeDecodeError) -> str:
    return f"not UTF-8: {exc.reason} at byte {exc.start}"


_AT_BYTE = re.compile(r"\(byte (\d+)\)")
_HIGH, _LOW = rb"\\u[dD][89abAB][0-9a-fA-F]{2}", rb"\\u[dD][c-fC-F][0-9a-fA-F]{2}"
_LONE = re.compile(_HIGH + b"(?!" + _LOW + b")|(?<!" + _HIGH + b")" + _LOW)
_NOT_NUMBERS = (b"-Infinity", b"+Infinity", b"NaN", b"Infinity")  # signed first: "Infinity" is in them


def explain(data: bytes, exc: BaseException) -> str:
    """A specific message for why `data` did not decode (msgspec's own when it is specific)."""
    if isinstance(exc, UnicodeDecodeError):
        return _not_utf8(exc)
    if isinstance(exc, RecursionError):
        return "nests too deep to parse"
    message = str(exc)
    if not isinstance(exc, msgspec.DecodeError):
        return message
    return _malformed(data, message) or message


def _malformed(data: bytes, message: str) -> str | None:
    at = _AT_BYTE.search(message)
    where = int(at.group(1)) if at else None
    if data.startswith(BOM):
        return "starts with a UTF-8 byte-order mark, which JSON does not allow"
    nul = data.find(b"\x00")
    if nul >= 0:
        return f"holds a NUL byte at byte {nul}"
    if where is not None and "trailing characters" in message:
        # msgspec counts the trailing value from one past its first byte
        return f"more than one JSON value: trailing characters at byte {where - 1}"
    if where is not None:
        # the invalid character is the word's first, or the one after its sign
        word = next((w for w in _NOT_NUMBERS for at in (where - 1, where) if data.startswith(w, at)), None)
        if word is not None:
            return f"{word.decode()} is not a JSON number (at byte {data.find(word, where - 1)})"
    lone = _LONE.search(data)
    if lone is not None:
        return f"lone UTF-16 surrogate escape {lone.group().decode()} at byte {lone.start()}"
    return None


class _Strictness(Exception):
    def __init__(self, message: str, field: str | None) -> None:
        super().__init__(message)
        self.field = field


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise _Strictness(f"duplicate key {key!r}", f"$..{key}")
        seen[key] = value
    return seen


def _integer(text: str) -> int:
    # the digits counted first: int() of thousands of them is slow, and none past 19 fits
    value = int(text) if len(text.lstrip("-")) <= 19 else INT64_MAX + 1
    if not INT64_MIN <= value <= INT64_MAX:
        raise _Strictness(f"integer {text[:24]}{'…' if len(text) > 24 else ''} is beyond 64 bits", None)
    return value


def strictness(data: bytes) -> tuple[str, str | None] | None:
    """What a document msgspec accepted still breaks (a duplicate key, an integer beyond
    64 bits) as (message, field), or None. Call only on bytes that passed `precheck`."""
    try:
        json.loads(data, object_pairs_hook=_pairs, parse_int=_integer)
    except _Strictness as exc:
        return str(exc), exc.field
    return None


def decode(
    data: bytes,
    kind: type[T],
    *,
    what: str,
    code: ErrorCode,
    file: str,
    line: int | None = None,
    max_bytes: int = MAX_DOCUMENT,
) -> T:
    """`data` as a `kind`, or an AsupError(`code`) saying `invalid WHAT: why` (`WHAT is not
    JSON: why` when the parser refused it) with its place."""
    refused = precheck(data, max_bytes=max_bytes)
    if refused is not None:
        raise AsupError(code, f"invalid {what}: {refused}", file=file, line=line)
    try:
        value: T = msgspec.json.decode(data, type=kind)
    except msgspec.ValidationError as exc:
        raise AsupError(code, f"invalid {what}: {exc}", file=file, line=line, field=field_of(str(exc))) from exc
    except NOT_JSON as exc:
        raise AsupError(code, f"{what} is not JSON: {explain(data, exc)}", file=file, line=line) from exc
    strict = strictness(data)
    if strict is not None:
        raise AsupError(code, f"invalid {what}: {strict[0]}", file=file, line=line, field=strict[1])
    return value


def read(path: Path, *, what: str, code: ErrorCode, max_bytes: int = MAX_DOCUMENT) -> bytes:
    """The bytes of the file at `path`, never more than `max_bytes` + 1 of them read: a
    larger file (or an endless FIFO) is refused with the limit named."""
    try:
        with path.open("rb") as fh:
            data = fh.read(max_bytes + 1)
    except OSError as exc:
        raise AsupError(code, f"cannot read {what}: {exc.strerror or exc}", file=str(path)) from exc
    if len(data) > max_bytes:
        raise AsupError(code, f"invalid {what}: the file is over the {max_bytes}-byte limit", file=str(path))
    return data


def load(path: Path, kind: type[T], *, what: str, code: ErrorCode, max_bytes: int = MAX_DOCUMENT) -> T:
    """The file at `path` read (bounded) and decoded as a `kind`."""
    return decode(read(path, what=what, code=code, max_bytes=max_bytes), kind, what=what, code=code, file=str(path), max_bytes=max_bytes)


_AT = re.compile(r" - at `([^`]*)`$")
_NAMED = re.compile(r"(?:unknown|missing required) field `([^`]*)`")


def field_of(message: str) -> str | None:
    """The JSON path a msgspec error message names (`$.data.x`), or None."""
    at = _AT.search(message)
    named = _NAMED.search(message)
    path = at.group(1) if at else None
    if named:
        return f"{path or '$'}.{named.group(1)}"
    return path
