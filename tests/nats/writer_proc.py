"""A writer process for the failover tests: appends `COUNT` events in batches of `BATCH`
to the log at URL, each with an explicit id (`NAME-i`), retrying a batch that fails (the
server down, a leader being elected) until it lands; prints each acknowledged id, and on stderr each retry of a batch and, at the end, the
last log's retry counters.

    python -m tests.nats.writer_proc URL NAME COUNT BATCH [PACE [STOP]]

PACE (seconds, default 0) is a pause after each batch. STOP, a path: the writer ends after
the batch during which that file appeared (COUNT stays the most it writes), so a test's
kills land mid-run whatever the machine's speed.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from events.errors import AsupError, ErrorCode
from events.jetstream.log import JetStreamLog
from events.store import Pending
from events.testing import transition

RETRYABLE = (ErrorCode.LOG_UNREACHABLE, ErrorCode.LOG_LOCKED)


def _open(url: str) -> JetStreamLog:
    while True:
        try:
            return JetStreamLog.open(url)
        except AsupError as exc:
            if exc.code not in RETRYABLE:
                raise
            time.sleep(0.2)


def main(url: str, name: str, count: int, batch: int, pace: float = 0.0, stop: Path | None = None) -> None:
    log = _open(url)
    for start in range(0, count, batch):
        if stop is not None and stop.exists():
            break
        items = [Pending(f"{name}-{i % 5}", transition(f"{name}-{i}"), id=f"{name}-{i}") for i in range(start, min(count, start + batch))]
        while True:
            try:
                log.append_batch(items)
                break
            except AsupError as exc:
                if exc.code not in RETRYABLE:
                    raise
                print(f"retry {exc.code}", file=sys.stderr, flush=True)
                log.close()
                log = _open(url)  # a fresh view: the id window says what of the batch already landed
        print("\n".join(item.id or "" for item in items), flush=True)
        time.sleep(pace)
    print(f"transient retries {log.transient_retries}, contention retries {log.contention_retries}", file=sys.stderr, flush=True)
    log.close()


if __name__ == "__main__":
    args = sys.argv[1:]
    main(args[0], args[1], int(args[2]), int(args[3]), float(args[4]) if len(args) > 4 else 0.0, Path(args[5]) if len(args) > 5 else None)
