"""A projection is a pure fold over records plus a canonical JSON rendering.

    class P(Projection[S]):  name; initial() -> S; apply(state, record) -> S; render(state) -> dict

`apply` reads nothing but its arguments (no clock, no files), so the same records always
give the same state; `render` output is serialised with sorted keys, so the same state
always gives the same bytes. States are msgspec-encodable so a fold can checkpoint.
"""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar

import orjson
from blake3 import blake3

from events.record import Record

S = TypeVar("S")
RENDER_SCHEMA = "asup.projection/1"


class Projection(Protocol, Generic[S]):
    name: str
    state_type: type[S]

    def initial(self) -> S: ...

    def apply(self, state: S, record: Record) -> S: ...

    def render(self, state: S) -> dict[str, Any]: ...


def canonical_json(document: Any) -> bytes:
    """Sorted keys, no wall-clock, UTF-8: the same document is always the same bytes. Integer
    keys (a latency sketch's bins, in a fold checkpoint's state digest) are written as strings."""
    return orjson.dumps(document, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE)


def digest_json(document: Any) -> str:
    return "blake3:" + blake3(canonical_json(document)).hexdigest()


def percentile(sorted_values: list[float], q: float) -> float:
    """Exact percentile with linear interpolation between closest ranks (numpy's default,
    Hyndman-Fan type 7): rank = q/100 * (n - 1)."""
    if not sorted_values:
        return 0.0
    rank = q / 100 * (len(sorted_values) - 1)
    low = int(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)
