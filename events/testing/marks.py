"""Test helper: give a log written by hand the head record an asup writer would have left."""

from __future__ import annotations

from pathlib import Path

from events import head_record
from events.chain import ChainState
from events.scan import scan


def stamp_head(path: Path) -> head_record.HeadRecord:
    """Scan `path` (it must verify) and save the high-water mark a writer leaves after its batch."""
    chain = ChainState()
    result = scan(path, chain, mark=None)
    assert result.problem is None and chain.log_id is not None, result.problem
    record = head_record.make(chain.log_id, chain.last_seq, chain.last_h, path.stat())
    assert head_record.save(path, record)
    return record
