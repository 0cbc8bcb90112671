"""Semantic diff of two logs, by stream: what each transfer recorded, ignoring what may
differ between two faithful runs (timestamps, clock readings, durations, digests of the
records, event ids, global seq, environment fingerprints)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from replay.reexecute import load_streams

VOLATILE = {"at_ns", "duration_ms", "env_fingerprint", "replay_command", "stream_digest"}


class StreamDiff(msgspec.Struct, frozen=True):
    stream: str
    status: str  # same | differs | only_in_a | only_in_b
    events_a: int
    events_b: int
    index: int = -1  # first differing event's position in the stream
    seq_a: int = 0
    seq_b: int = 0
    a: dict[str, Any] | None = None
    b: dict[str, Any] | None = None
    fields: list[str] = msgspec.field(default_factory=list)


def comparable(kind: str, data: Any) -> dict[str, Any]:
    body = msgspec.to_builtins(data)
    return {"type": kind, **_strip(body)}


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def diff_logs(a: Path, b: Path) -> list[StreamDiff]:
    streams_a, problem_a = load_streams(a)
    streams_b, problem_b = load_streams(b)
    for path, problem in ((a, problem_a), (b, problem_b)):
        if problem is not None and problem.kind != "torn_tail":
            raise problem.error(str(path))
    out = []
    for stream in sorted(set(streams_a) | set(streams_b)):
        ra, rb = streams_a.get(stream, []), streams_b.get(stream, [])
        if not ra or not rb:
            out.append(StreamDiff(stream, "only_in_a" if ra else "only_in_b", len(ra), len(rb)))
            continue
        out.append(_first_difference(stream, ra, rb))
    return out


def _first_difference(stream: str, ra: list[Any], rb: list[Any]) -> StreamDiff:
    for index in range(max(len(ra), len(rb))):
        left = comparable(ra[index].type, ra[index].data) if index < len(ra) else None
        right = comparable(rb[index].type, rb[index].data) if index < len(rb) else None
        if left == right:
            continue
        fields = sorted(k for k in set(left or {}) | set(right or {}) if (left or {}).get(k) != (right or {}).get(k))
        return StreamDiff(
            stream,
            "differs",
            len(ra),
            len(rb),
            index,
            ra[index].seq if index < len(ra) else 0,
            rb[index].seq if index < len(rb) else 0,
            left,
            right,
            fields,
        )
    return StreamDiff(stream, "same", len(ra), len(rb))
