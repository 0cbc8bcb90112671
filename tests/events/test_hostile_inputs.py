"""Hostile JSON is refused by name, at its place, before it can cost much.

JSON bombs (nesting 100,000 deep, a 10^6-digit integer, 10^6 keys, a 1 GB line) are refused
before a full parse with the limit named (length first, then the depth pre-scan); each
non-standard input (NaN, Infinity, 1e400, duplicate keys, lone surrogates, invalid UTF-8, a
byte-order mark, CRLF, NUL, two values in one) gets its own message, in a sealed log line
and in an operator file; every limit accepts its maximum and refuses one more; a record
missing `seq`, or with `seq` of the wrong type, is refused naming the field.
"""

from __future__ import annotations

import json
import os
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.intent import decode_intent, load_intent
from events import strict_json
from events.chain import ChainState
from events.errors import AsupError, ErrorCode
from events.record import MAX_LINE, SCHEMA_VERSION
from events.scan import Scanner, read_records
from runbook import config
from tests.corpus.inputs import CURSOR, INT64_MAX, forge, generated, golden_lines, last_line, nested
from tests.golden.cases import redigest

INT64_MIN = -(1 << 63)


def log_error(path: Path, data: bytes) -> AsupError:
    path.write_bytes(data)
    with pytest.raises(AsupError) as raised:
        list(read_records(path, tolerate_torn_tail=False))
    return raised.value


def last_edited(old: bytes, new: bytes) -> bytes:
    """The golden log with one edit to its last record, re-sealed."""
    lines = golden_lines()
    assert old in lines[-1]
    return b"".join(lines[:-1]) + redigest(lines[-1].replace(old, new, 1))


def intent_error(doc: bytes) -> AsupError:
    with pytest.raises(AsupError) as raised:
        decode_intent(doc, "intent.json")
    assert raised.value.code is ErrorCode.USAGE
    return raised.value


# --- bombs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "said"),
    [
        ("depth_100000_arrays", "nests deeper than the 64-level limit"),
        ("depth_100000_objects", "nests deeper than the 64-level limit"),
        ("depth_100000_unclosed", "nests deeper than the 64-level limit"),
        ("int_1e6_digits", "Integer value out of range"),
        ("keys_1e6", f"line exceeds the {MAX_LINE}-byte limit"),
    ],
)
def test_a_bomb_in_a_sealed_log_line_is_refused_quickly_naming_the_limit(tmp_path: Path, name: str, said: str) -> None:
    """Sealed into the last record (as its data; the long integer as its cursor), a bomb is
    refused at its line in well under a second of parsing."""
    where = "cursor" if name.startswith("int") else "data"
    started = time.perf_counter()
    error = log_error(tmp_path / "log.jsonl", forge(generated(name), where))
    assert time.perf_counter() - started < 5
    assert error.line == last_line()
    assert said in error.message, error.one_line()


@pytest.mark.parametrize(
    ("doc", "said"),
    [
        (nested(100_000), "nests deeper than the 64-level limit (at byte 64)"),
        (b'{"requested":' + nested(100_000) + b"}", "nests deeper than the 64-level limit"),
        (b'{"seed":' + b"9" * 1_000_000 + b"}", "Integer value out of range"),
        (generated("keys_1e6"), f"over the {strict_json.MAX_DOCUMENT}-byte limit"),
    ],
    ids=["depth", "depth in a field", "long integer", "a million keys"],
)
def test_a_bomb_in_an_intent_is_refused_quickly_naming_the_limit(doc: bytes, said: str) -> None:
    started = time.perf_counter()
    error = intent_error(doc)
    assert time.perf_counter() - started < 5
    assert said in error.message, error.one_line()


@pytest.mark.slow
def test_a_one_gigabyte_line_is_refused_without_reading_it_whole(tmp_path: Path) -> None:
    """A log whose last line is 1 GB (a sparse file) is refused as over-long, in bounded
    memory; a 1 GB intent file is refused after reading one byte more than the limit."""
    log = tmp_path / "log.jsonl"
    log.write_bytes(b"".join(golden_lines()))
    with log.open("r+b") as fh:
        fh.truncate(log.stat().st_size + (1 << 30))
    scanner = Scanner(log, ChainState())
    tracemalloc.start()
    try:
        assert sum(1 for _ in scanner) == last_line()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * MAX_LINE, f"peak {peak} bytes"
    assert scanner.problem is not None and scanner.problem.line == last_line() + 1
    intent = tmp_path / "intent.json"
    with intent.open("wb") as fh:
        fh.truncate(1 << 30)
    started = time.perf_counter()
    with pytest.raises(AsupError, match=f"over the {strict_json.MAX_DOCUMENT}-byte limit"):
        load_intent(intent)
    assert time.perf_counter() - started < 1


# --- non-standard JSON: each its own message ---------------------------------------------

TRANSFER = b'"transfer_id":"disk_full-7"'

LOG_CASES: dict[str, tuple[bytes, bytes, str]] = {
    "NaN": (CURSOR, b'"committed_cursor":NaN', "NaN is not a JSON number"),
    "Infinity": (CURSOR, b'"committed_cursor":Infinity', "Infinity is not a JSON number"),
    "-Infinity": (CURSOR, b'"committed_cursor":-Infinity', "-Infinity is not a JSON number"),
    "1e400": (CURSOR, b'"committed_cursor":1e400', "Number out of range"),
    "lone surrogate": (TRANSFER, b'"transfer_id":"\\ud800"', "lone UTF-16 surrogate escape \\ud800"),
    "lone low surrogate": (TRANSFER, b'"transfer_id":"x\\udc00"', "lone UTF-16 surrogate escape \\udc00"),
    "invalid UTF-8": (TRANSFER, b'"transfer_id":"\xf4\x80"', "not UTF-8"),
    "NUL": (TRANSFER, b'"transfer_id":"a\x00b"', "NUL byte"),
    "two objects": (b'{"type":', golden_lines()[-1].rstrip(b"\n") + b'{"type":', "more than one JSON value"),
    "byte-order mark": (b'{"type":', b'\xef\xbb\xbf{"type":', "byte-order mark"),
    "int 2**63": (CURSOR, b'"committed_cursor":%d' % (INT64_MAX + 1), "<= 9223372036854775807"),
    "int below -2**63": (CURSOR, b'"committed_cursor":%d' % (INT64_MIN - 1), ">= -9223372036854775808"),
}


@pytest.mark.parametrize("case", list(LOG_CASES))
def test_non_standard_json_in_a_sealed_log_line_has_its_own_message(tmp_path: Path, case: str) -> None:
    old, new, said = LOG_CASES[case]
    error = log_error(tmp_path / "log.jsonl", last_edited(old, new))
    assert error.code is ErrorCode.CORRUPT_RECORD
    assert error.line == last_line() and said in error.message, error.one_line()


def test_a_crlf_line_is_named_as_such(tmp_path: Path) -> None:
    """A record rewritten with a CRLF ending, before valid ones, is corrupt and says why."""
    lines = list(golden_lines())
    lines[9] = lines[9].replace(b"\n", b"\r\n")
    error = log_error(tmp_path / "log.jsonl", b"".join(lines))
    assert (error.code, error.line) == (ErrorCode.CORRUPT_RECORD, 10)
    assert "carriage return" in error.message


DOC_CASES: dict[str, str] = {
    "nan": "NaN is not a JSON number (at byte 8)",
    "infinity": "Infinity is not a JSON number",
    "minus_infinity": "-Infinity is not a JSON number",
    "exp_1e400": "Number out of range",
    "duplicate_keys": "duplicate key 'seed'",
    "lone_high_surrogate": "lone UTF-16 surrogate escape \\ud800 at byte 11",
    "lone_low_surrogate": "lone UTF-16 surrogate escape \\udc00",
    "invalid_utf8": "not UTF-8",
    "invalid_utf8_key": "not UTF-8: invalid start byte at byte 2",
    "bom": "starts with a UTF-8 byte-order mark",
    "nul": "holds a NUL byte at byte 10",
    "nul_in_string": "holds a NUL byte at byte 12",
    "two_objects": "more than one JSON value: trailing characters at byte 10",
    "int_2_64": "<= 9223372036854775807",
}


@pytest.mark.parametrize("case", list(DOC_CASES))
def test_non_standard_json_in_an_intent_has_its_own_message(case: str) -> None:
    error = intent_error(generated(case))
    assert DOC_CASES[case] in error.message, error.one_line()
    assert error.file == "intent.json"


def test_a_duplicate_key_the_typed_decoder_would_take_is_refused_with_its_field() -> None:
    """Which of two values counts is parser-dependent: refused, naming the key."""
    error = intent_error(b'{"source":"a.bin","source":"b.bin"}')
    assert error.field == "$..source"


def test_an_integer_beyond_64_bits_in_an_untyped_document_is_refused() -> None:
    """Where no field type bounds it (a baseline is read as any JSON), the strict pass does."""
    with pytest.raises(AsupError, match="integer 9223372036854775808 is beyond 64 bits"):
        strict_json.decode(b'{"p50": 9223372036854775808}', dict[str, Any], what="baseline", code=ErrorCode.USAGE, file="b.json")


def test_crlf_and_whitespace_in_an_operator_file_are_json_and_accepted(tmp_path: Path) -> None:
    """CR is JSON whitespace: an intent saved with CRLF endings is read as it means."""
    assert decode_intent(b'{\r\n  "seed": 3\r\n}\r\n', "intent.json").seed == 3


# --- boundaries: the limit accepted, one more refused ------------------------------------


def _padded_last_line(body_length: int) -> bytes:
    """The golden log with its last record's replay command padded to make that line's body
    (newline not counted) `body_length` bytes, re-sealed."""
    lines = golden_lines()
    marker = b'"replay_command":"'
    short = redigest(lines[-1])
    pad = body_length - (len(short) - 1)
    assert pad >= 0
    return b"".join(lines[:-1]) + redigest(lines[-1].replace(marker, marker + b"x" * pad, 1))


def test_a_line_of_the_maximum_length_is_read_and_one_byte_more_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    path.write_bytes(_padded_last_line(MAX_LINE - 1))
    assert len(list(read_records(path, tolerate_torn_tail=False))) == last_line()
    error = log_error(path, _padded_last_line(MAX_LINE))
    assert f"line exceeds the {MAX_LINE}-byte limit" in error.message


def test_record_depth_at_the_limit_reaches_the_typed_decoder_and_one_more_is_refused_by_the_prescan(tmp_path: Path) -> None:
    """No record nests 60 deep, so the typed decoder refuses one that does, naming its field;
    past the limit the pre-scan refuses it first, naming the limit. The record's own two
    levels (the line, its data) count."""
    at_limit = log_error(tmp_path / "log.jsonl", last_edited(CURSOR, b'"committed_cursor":' + nested(strict_json.MAX_DEPTH - 2)))
    assert "64-level limit" not in at_limit.message and at_limit.field == "$.data.committed_cursor"
    over = log_error(tmp_path / "log.jsonl", last_edited(CURSOR, b'"committed_cursor":' + nested(strict_json.MAX_DEPTH - 1)))
    assert "nests deeper than the 64-level limit" in over.message


def test_document_depth_at_the_limit_is_accepted_and_one_more_is_refused() -> None:
    def decode(doc: bytes) -> Any:
        return strict_json.decode(doc, Any, what="document", code=ErrorCode.BAD_INPUT, file="d.json")

    assert decode(nested(strict_json.MAX_DEPTH)) is not None
    assert decode(b'["[[[[", "]]]]", ' + nested(strict_json.MAX_DEPTH - 1) + b"]") is not None  # brackets in strings do not nest
    with pytest.raises(AsupError, match="nests deeper than the 64-level limit"):
        decode(nested(strict_json.MAX_DEPTH + 1))


def test_a_file_of_the_maximum_size_is_read_and_one_byte_more_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "intent.json"
    doc = b'{"seed": 1}'
    path.write_bytes(doc + b" " * (strict_json.MAX_DOCUMENT - len(doc)))
    assert load_intent(path).seed == 1
    path.write_bytes(doc + b" " * (strict_json.MAX_DOCUMENT - len(doc) + 1))
    with pytest.raises(AsupError, match=f"over the {strict_json.MAX_DOCUMENT}-byte limit"):
        load_intent(path)


@pytest.mark.parametrize(("value", "accepted"), [(INT64_MAX, True), (INT64_MAX + 1, False), (INT64_MIN, True), (INT64_MIN - 1, False)])
def test_integers_within_64_bits_are_accepted_and_one_beyond_refused(tmp_path: Path, value: int, accepted: bool) -> None:
    """In a record (the typed bound) and in an intent file (the typed bound, and the strict pass)."""
    path = tmp_path / "log.jsonl"
    data = last_edited(CURSOR, b'"committed_cursor":%d' % value)
    if accepted:
        path.write_bytes(data)
        assert list(read_records(path))[-1].data.committed_cursor == value  # type: ignore[attr-defined]
        assert decode_intent(b'{"seed":%d}' % value, "intent.json").seed == value
    else:
        assert log_error(path, data).field == "$.data.committed_cursor"
        assert intent_error(b'{"seed":%d}' % value).field == "$.seed"
        with pytest.raises(AsupError, match="beyond 64 bits"):
            strict_json.decode(b"[%d]" % value, Any, what="document", code=ErrorCode.BAD_INPUT, file="d.json")


def test_the_document_limit_is_one_log_line() -> None:
    """An intent is recorded whole in one line: a larger file could never be recorded."""
    assert strict_json.MAX_DOCUMENT == MAX_LINE


# --- schema violations: the field named, never coerced --------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        (b'"seq":%d,' % last_line(), b"", "$.seq"),
        (b'"seq":%d,' % last_line(), b'"seq":"%d",' % last_line(), "$.seq"),
        (b'"v":%d,' % SCHEMA_VERSION, b'"v":"%d",' % SCHEMA_VERSION, "$.v"),
        (b'"v":%d,' % SCHEMA_VERSION, b'"v":%d,' % (SCHEMA_VERSION + 1), "$.v"),
        (b'"attempt":0,', b"", "$.data.attempt"),
    ],
    ids=["seq missing", "seq a string", "v a string", "v unknown", "a data field missing"],
)
def test_a_schema_violation_names_its_field(tmp_path: Path, old: bytes, new: bytes, field: str) -> None:
    error = log_error(tmp_path / "log.jsonl", last_edited(old, new))
    assert error.code in (ErrorCode.CORRUPT_RECORD, ErrorCode.SCHEMA_UNSUPPORTED)
    assert (error.line, error.field) == (last_line(), field), error.one_line()


def test_a_negative_seq_is_refused_not_coerced(tmp_path: Path) -> None:
    error = log_error(tmp_path / "log.jsonl", last_edited(b'"seq":%d,' % last_line(), b'"seq":-1,'))
    assert error.code is ErrorCode.CORRUPT_RECORD and "seq -1" in error.message


# --- the depth pre-scan and the config file ------------------------------------------------


@pytest.mark.parametrize(
    ("doc", "at"),
    [
        (nested(65), 64),
        (b'["' + b"[" * 100 + b'"]', None),  # inside a string
        (b'["\\"' + b"[" * 100 + b'"]', None),  # after an escaped quote, still inside it
        (b"[" + b"[]," * 500 + b"[]]", None),  # many brackets, shallow
        (b"]" * 100, None),  # malformed, not deep: the parser's to refuse
    ],
)
def test_the_depth_prescan_counts_only_structure(doc: bytes, at: int | None) -> None:
    assert strict_json.depth_exceeded(doc) == at


_TRICKY = st.text(alphabet='[]{}"\\ab', max_size=6)  # brackets, quotes and backslashes inside strings
_VALUES = st.recursive(
    st.none() | st.integers() | _TRICKY,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TRICKY, inner, max_size=3),
    max_leaves=40,
)


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


@given(value=_VALUES, slack=st.integers(-2, 1))
def test_the_depth_prescan_agrees_with_the_parsed_depth(value: object, slack: int) -> None:
    """For any JSON value and a limit near its depth, the pre-scan refuses exactly when the
    parsed value nests deeper than the limit, and says where it first does."""
    doc = json.dumps(value).encode()
    depth = _depth(value)
    limit = max(depth + slack, 0)
    at = strict_json.depth_exceeded(doc, limit)
    assert (at is not None) == (depth > limit), (doc, limit, at)
    if at is not None:
        assert doc[at : at + 1] in (b"[", b"{")


@pytest.mark.parametrize(
    ("text", "said"),
    [(b"root = " + b"[" * 100_000 + b"]" * 100_000, "not a valid asup.toml"), (b'root = "\xff"', "not UTF-8")],
    ids=["deep arrays", "invalid UTF-8"],
)
def test_a_hostile_asup_toml_is_a_usage_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: bytes, said: str) -> None:
    (tmp_path / "asup.toml").write_bytes(text)
    monkeypatch.setitem(os.environ, "ASUP_CONFIG", str(tmp_path / "asup.toml"))
    with pytest.raises(AsupError) as raised:
        config.load()
    assert raised.value.code is ErrorCode.USAGE and said in raised.value.message
