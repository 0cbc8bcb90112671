"""The console's cold start on two cores: the log cut in two at a line, each half verified
and folded by its own process, the halves stitched.

Verification is `asup log verify`'s (events/segments.py): each segment scanned with every
record's digest, framing and typed decode, and the seams checked by `stitch`. The row folds
(transfers, causes) are per stream, so a stream whose first record (sv 1) lies in the second
half is folded there exactly; a stream that started in the first half and goes on in the
second has those later records sent back as lines and folded here, after the first half.
Anything unexpected (a problem in either half, a seam that does not join, a worker that
cannot start) returns None: the caller does the plain sequential pass, which reports damage
exactly as every reader does.
"""

from __future__ import annotations

import multiprocessing
from array import array
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, BinaryIO, cast

import msgspec

from events.chain import ChainState, StreamHead
from events.record import Record
from events.scan import Scanner
from events.schema import SCHEMA
from events.segments import Segment, SegmentChain, _Bounded, boundaries, header_log_id, stitch
from runbook.console.folds import ROWS

SPLIT_FROM = 64 << 20  # below this one pass is quicker than starting a worker


class Half(msgspec.Struct):
    segment: Segment
    states: dict[str, bytes]  # each row fold's state, msgpack
    last_ts: dict[str, str]
    carried: list[bytes]  # records of streams that began before this half, as JSON lines
    events: int
    seqs: dict[str, bytes] = {}  # each stream born here: its seqs, array('q') bytes


def fold_half(path: str, start: int, end: int, log_id: str, rows: list[str]) -> Half:
    """In the worker: verify bytes [start, end) as a segment, folding the streams born in it."""
    projections = [p for p in ROWS if p.name in rows]
    states: dict[str, Any] = {p.name: p.initial() for p in projections}
    chain = SegmentChain(log_id)
    scanner = Scanner(lambda: cast(BinaryIO, _Bounded(Path(path), end)), chain, start)
    born: set[str] = set()
    carried: list[bytes] = []
    last_ts: dict[str, str] = {}
    seqs: dict[str, array[int]] = {}
    events = 0
    for record in scanner:
        stream = record.stream
        if record.sv == 1:
            born.add(stream)
        if stream in born:
            for projection in projections:
                states[projection.name] = projection.apply(states[projection.name], record)
            last_ts[stream] = record.ts
            try:
                seqs[stream].append(record.seq)
            except KeyError:
                seqs[stream] = array("q", (record.seq,))
        else:
            carried.append(msgspec.json.encode(record))
        events += 1
    segment = Segment(
        clean=scanner.problem is None and scanner.valid_size == end,
        records=scanner.records,
        first_seq=chain.first_seq if chain.first_seq is not None else chain.last_seq + 1,
        last_seq=chain.last_seq,
        last_h=chain.last_h,
        entries=chain.entries,
        heads={name: (head.sv, head.h) for name, head in chain.streams.items()},
    )
    encoded = {name: msgspec.msgpack.encode(state) for name, state in states.items()}
    return Half(segment, encoded, last_ts, carried, events, {name: a.tobytes() for name, a in seqs.items()})


class Split(msgspec.Struct):
    """The first half as folded here, the second as the worker returned it."""

    cut: int
    end: int
    first: Segment
    second: Half


def fold_split(path: Path, fold_first: Any, rows: list[str]) -> tuple[Split, ChainState] | None:
    """Fold the log's first half with `fold_first(records)` here while a worker does the
    second; the stitched chain at the end, or None (then nothing of the second is kept)."""
    cuts = boundaries(path, 2)
    log_id = header_log_id(path)
    if len(cuts) != 3 or log_id is None:
        return None
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
            future = pool.submit(fold_half, str(path), cuts[1], cuts[2], log_id, rows)
            first, chain = _first_half(path, cuts[1], fold_first)
            second = future.result()
    except (BrokenProcessPool, OSError):
        return None
    verified = stitch([first, second.segment]) if first.log_id == log_id else None
    if verified is None or verified.heads is None:
        return None
    chain = ChainState()
    chain.log_id, chain.last_seq, chain.last_h = verified.log_id, verified.last_seq, verified.last_h
    chain.streams = {name: StreamHead(sv, h) for name, (sv, h) in verified.heads.items()}
    return Split(cuts[1], cuts[2], first, second), chain


def _first_half(path: Path, end: int, fold: Any) -> tuple[Segment, ChainState]:
    chain = ChainState()
    scanner = Scanner(lambda: cast(BinaryIO, _Bounded(path, end)), chain, 0)
    batch: list[Record] = []
    for record in scanner:
        batch.append(record)
        if len(batch) >= 2_000:
            fold(batch)
            batch = []
    fold(batch)
    segment = Segment(
        clean=scanner.problem is None and scanner.valid_size == end,
        records=scanner.records,
        first_seq=1,
        last_seq=chain.last_seq,
        last_h=chain.last_h,
        entries={},
        heads={name: (head.sv, head.h) for name, head in chain.streams.items()},
        log_id=chain.log_id,
    )
    return segment, chain


def seqs_of(half: Half) -> dict[str, array[int]]:
    """The seqs of the streams born in the half, as the model keeps them."""
    out = {}
    for name, data in half.seqs.items():
        seqs = array("q")
        seqs.frombytes(data)
        out[name] = seqs
    return out


def carried_records(half: Half) -> list[Record]:
    """The second half's records of streams that began in the first, typed again."""
    decode = SCHEMA.decoder.decode  # verified in the worker: typed again, not checked again
    return [cast(Record, decode(line)) for line in half.carried]
