"""Folding a log into projections, incrementally.

`fold_log` verifies and folds records from where its checkpoint left off: a checkpoint
holds the byte offset and chain heads reached (as the log's writer index does), the seq
and digest of the last folded record, and each projection's state with its digest. It is
trusted only under the writers' prefix test (the head record vouches for the file, the
checkpoint lies within its mark, and the log still has that record at that offset);
otherwise the fold starts again from the first record, verifying as it goes. Same log, same output bytes, however it was split.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import msgspec

from events.atomic import make_dirs, read_small, write_atomic
from events.chain import ChainState
from events.errors import DECODE_ERRORS
from events.head_record import tail_at, tail_of, trusted
from events.record import Record
from events.scan import Problem, Scanner
from events.writer_index import HeadIndex, restore, snapshot
from projections.base import Projection, digest_json

FORMAT = "asup.fold-checkpoint/1"
MAX_CHECKPOINT = 1 << 30  # bytes: a bigger file is not a checkpoint asup wrote


class FoldCheckpoint(msgspec.Struct, forbid_unknown_fields=True):
    format: str
    heads: HeadIndex
    states: dict[str, msgspec.Raw]
    state_digests: dict[str, str]


class FoldResult(msgspec.Struct):
    states: dict[str, Any]
    seq: int
    folded: int  # records folded in this call (0: the checkpoint was current)
    problem: Problem | None
    resumed: bool  # started from a checkpoint


def fold_records(projections: Sequence[Projection[Any]], states: dict[str, Any], records: Iterable[Record]) -> int:
    """Fold `records` into `states` (in place); returns how many were folded."""
    names = [p.name for p in projections]
    applies = [p.apply for p in projections]
    current = [states[name] for name in names]
    count = 0
    if len(applies) == 1:
        (apply,) = applies
        (state,) = current
        for record in records:
            state = apply(state, record)
            count += 1
        current = [state]
    else:
        pairs = list(enumerate(applies))
        for record in records:
            for i, apply in pairs:
                current[i] = apply(current[i], record)
            count += 1
    states.update(zip(names, current, strict=True))
    return count


def render_all(projections: Sequence[Projection[Any]], states: dict[str, Any]) -> dict[str, Any]:
    return {p.name: p.render(states[p.name]) for p in projections}


def fold_log(
    path: Path, projections: Sequence[Projection[Any]], *, checkpoint: Path | None = None, until_seq: int | None = None
) -> FoldResult:
    chain, offset, states, resumed = _start(path, projections, checkpoint)
    scanner = Scanner(path, chain, offset)
    records: Iterable[Record] = scanner if until_seq is None else _stop_after(scanner, until_seq)
    folded = fold_records(projections, states, records)
    if checkpoint is not None and scanner.problem is None and until_seq is None and chain.log_id is not None:
        _save(checkpoint, projections, states, chain, scanner.valid_size)
    return FoldResult(states, chain.last_seq, folded, scanner.problem, resumed)


def fold_readable(path: Path, projections: Sequence[Projection[Any]]) -> dict[str, Any]:
    """The folded states of a log an operator command acts on: damage is raised; a torn tail
    (a writer mid-append, or repaired when the log is next opened) ends the fold quietly."""
    result = fold_log(path, projections)
    if result.problem is not None and result.problem.kind != "torn_tail":
        raise result.problem.error(str(path))
    return result.states


def _stop_after(records: Iterable[Record], until_seq: int) -> Iterable[Record]:
    for record in records:
        if record.seq > until_seq:
            return
        yield record
        if record.seq >= until_seq:
            return


def _start(path: Path, projections: Sequence[Projection[Any]], checkpoint: Path | None) -> tuple[ChainState, int, dict[str, Any], bool]:
    fresh = ChainState(), 0, {p.name: p.initial() for p in projections}, False
    if checkpoint is None or not checkpoint.exists():
        return fresh
    try:
        data = read_small(checkpoint, MAX_CHECKPOINT)
        if data is None:
            return fresh
        saved = msgspec.json.decode(data, type=FoldCheckpoint)
    except DECODE_ERRORS:
        return fresh
    heads = saved.heads
    if saved.format != FORMAT or heads.digest != heads.content_digest() or set(saved.states) != {p.name for p in projections}:
        return fresh
    if not _prefix_holds(path, heads):
        return fresh
    try:
        states = {p.name: msgspec.json.decode(saved.states[p.name], type=p.state_type) for p in projections}
    except DECODE_ERRORS:
        return fresh  # a checkpoint edited by hand is not trusted
    if any(digest_json(msgspec.to_builtins(states[p.name])) != saved.state_digests[p.name] for p in projections):
        return fresh  # a checkpoint edited by hand is not trusted
    return restore(heads, 0), heads.size, states, True


def _prefix_holds(path: Path, heads: HeadIndex) -> bool:
    """The writers' prefix test: the head record vouches for the file up to its mark, the
    checkpoint lies within it, and the record at the checkpoint's size is its last one."""
    mark = trusted(path)
    return (
        mark is not None and mark.log_id == heads.log_id and heads.size <= mark.size and tail_at(path, heads.size) == tail_of(heads.last_h)
    )


def _save(target: Path, projections: Sequence[Projection[Any]], states: dict[str, Any], chain: ChainState, size: int) -> None:
    document = FoldCheckpoint(
        format=FORMAT,
        heads=snapshot(chain, size),
        states={p.name: msgspec.Raw(msgspec.json.encode(states[p.name])) for p in projections},
        state_digests={p.name: digest_json(msgspec.to_builtins(states[p.name])) for p in projections},
    )
    make_dirs(target.parent)
    write_atomic(target, msgspec.json.encode(document), sync=False)  # a cache: a lost one costs a full fold
