"""Following a log as it grows: poll for complete new lines, verify, yield.

A partial last line is an append in flight: it is never surfaced, only waited for. The
live tail of `asup tail` (inotify, filters, rendering) builds on this.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio

from events.chain import ChainState
from events.errors import AsupError, ErrorCode
from events.record import Record
from events.scan import Scanner

POLL_SECONDS = 0.005


async def follow_path(path: Path, from_seq: int = 1, poll_seconds: float = POLL_SECONDS) -> AsyncIterator[Record]:
    chain = ChainState()
    offset = 0
    while True:
        if path.exists():
            size = path.stat().st_size
            if size < offset:
                raise AsupError(ErrorCode.CORRUPT_RECORD, f"log shrank below byte {offset} that was already read", file=str(path))
            if size > offset:
                scanner = Scanner(path, chain, offset)
                for record in scanner:
                    if record.seq >= from_seq:
                        yield record
                offset = scanner.valid_size
                if scanner.problem is not None and scanner.problem.kind != "torn_tail":
                    raise scanner.problem.error(str(path))
        await anyio.sleep(poll_seconds)
