"""The hostile-input corpus: the JSON parsing test suite's files (`json_test_suite/`, see
README.md) and the generated inputs that once broke a reader (bombs too large to commit,
and the non-standard JSON each reader must refuse by name), with the helpers that place
an input where asup reads it.

A corpus input placed in a log is sealed like a real record (`forge`): the digest holds,
so the reader has to judge the bytes themselves, not just the digest.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

from tests.golden.cases import redigest

HERE = Path(__file__).resolve().parent
SUITE_DIR = HERE / "json_test_suite"
GOLDEN = HERE.parent / "golden" / "logs" / "scenarios.jsonl"
CURSOR = b'"committed_cursor":131072'  # in the golden log's last record (a transition)

INT64_MAX = (1 << 63) - 1


def suite() -> list[Path]:
    """Every file of the JSON parsing test suite: y_ (must parse), n_ (must not), i_ (either)."""
    return sorted(SUITE_DIR.glob("*.json"))


def nested(depth: int, kind: str = "array") -> bytes:
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b'{"a":' * depth + b"0" + b"}" * depth


# generated because they are too large to commit, or because their bytes are the point
GENERATED: dict[str, Callable[[], bytes]] = {
    "depth_100000_arrays": lambda: nested(100_000),
    "depth_100000_objects": lambda: nested(100_000, "object"),
    "depth_100000_unclosed": lambda: b"[" * 100_000,
    "int_1e6_digits": lambda: b"9" * 1_000_000,
    "keys_1e6": lambda: b"{" + b",".join(b'"k%d":0' % i for i in range(1_000_000)) + b"}",
    "int_2_63": lambda: b"9223372036854775808",
    "int_below_min": lambda: b"-9223372036854775809",
    "int_2_64": lambda: b'{"seed":18446744073709551616}',
    "nan": lambda: b'{"seed":NaN}',
    "infinity": lambda: b'{"seed":Infinity}',
    "minus_infinity": lambda: b'{"seed":-Infinity}',
    "exp_1e400": lambda: b'{"seed":1e400}',
    "duplicate_keys": lambda: b'{"seed":1,"seed":2}',
    "lone_high_surrogate": lambda: b'{"source":"\\ud800"}',
    "lone_low_surrogate": lambda: b'{"source":"\\udc00x"}',
    "invalid_utf8": lambda: b'{"source":"a\xf4\x80"}',
    "invalid_utf8_key": lambda: b'{"\xff":1}',
    "bom": lambda: b'\xef\xbb\xbf{"seed":1}',
    "nul": lambda: b'{"seed":1}\x00',
    "nul_in_string": lambda: b'{"source":"a\x00b"}',
    "two_objects": lambda: b'{"seed":1}{"seed":2}',
}


@cache
def generated(name: str) -> bytes:
    return GENERATED[name]()


def inputs() -> list[tuple[str, bytes]]:
    """(name, bytes) of every corpus input: the suite's files, then the generated ones."""
    return [(p.name, p.read_bytes()) for p in suite()] + [(name, generated(name)) for name in GENERATED]


def must_refuse(name: str) -> bool:
    """Whether every reader must refuse this input: the suite's n_ files and every generated one."""
    return not name.startswith(("y_", "i_"))


@cache
def golden_lines() -> tuple[bytes, ...]:
    return tuple(GOLDEN.read_bytes().splitlines(keepends=True))


def forge(doc: bytes, where: str = "data") -> bytes:
    """The golden log with `doc` as its last record's `data` (or its committed cursor),
    re-sealed with a valid digest."""
    lines = golden_lines()
    last = lines[-1]
    if where == "data":
        start, end = last.index(b'"data":') + len(b'"data":'), last.index(b',"prev":')
        forged = last[:start] + doc + last[end:]
    else:
        forged = last.replace(CURSOR, b'"committed_cursor":' + doc, 1)
    return b"".join(lines[:-1]) + redigest(forged)


def last_line() -> int:
    return len(golden_lines())
