"""Following a live log: existing records first, then each new one as it is committed.

Wake-ups come from inotify (watchfiles, with its debounce cut to 1 ms so a new line is
seen within milliseconds) or, as the fallback, from polling the file size every
millisecond. Either way the file is read only from where the last complete record ended:
a partial last line (an append in flight, or a torn tail) is never surfaced; it is read
once it is whole, or — after `asup log repair` — the `log_repaired` record that replaces
it is. A writer that restarts simply appends after the last record.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import watchfiles

from events.follow import POLL_SECONDS, Tailer
from events.record import Record

__all__ = ["Tailer", "follow"]


async def follow(
    path: Path,
    *,
    inotify: bool = True,
    poll_seconds: float = POLL_SECONDS,
    stop: anyio.Event | None = None,
    start: Tailer | None = None,
) -> AsyncIterator[Record]:
    """Every record of `path` (after what `start` already read), then new ones forever
    (or until `stop` is set)."""
    tailer = start or Tailer(path)
    for record in tailer.drain():
        yield record
    if inotify:
        async for _changes in watchfiles.awatch(
            path.parent, watch_filter=None, debounce=1, step=1, rust_timeout=50, yield_on_timeout=True, stop_event=stop, recursive=False
        ):
            for record in tailer.drain():  # any wake-up (or the 50 ms timeout) re-checks the file: nothing is missed
                yield record
        return
    while stop is None or not stop.is_set():
        for record in tailer.drain():
            yield record
        await anyio.sleep(poll_seconds)
