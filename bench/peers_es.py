"""The `eventsourcing` library doing peers_bench.py's work, through its Application layer.

Imported only by peers_bench.py, and only where the library is installed (`make bench`
installs it into .venv-bench from bench/requirements.lock; it is never a dependency of
asup). Each stream is a `Transfer` aggregate; each event a `Transfer.Transitioned`
aggregate event carrying the same `data` object the naive baseline writes. A batch is one
`app.events.put(events)` call: one recorder transaction (one SQLite commit) per batch.
Read back: the application's notification log, pages of 1,000, each notification mapped
back to its typed domain event (`app.mapper.to_domain_event`), then the same fold.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate

from events.store import Pending

PAGE = 1_000  # notifications per select: the section size the Application is given
SQLITE = "eventsourcing.sqlite"
POPO = "eventsourcing.popo"


class Transfer(Aggregate):
    """One stream of the workload."""

    class Transitioned(Aggregate.Event):
        data: dict[str, Any]


class Transfers(Application):
    log_section_size = PAGE


def version() -> str:
    from importlib import metadata

    return metadata.version("eventsourcing")


def stream_ids(streams: Sequence[str]) -> dict[str, uuid.UUID]:
    """Aggregate ids for the stream names (eventsourcing keys aggregates by UUID)."""
    return {name: uuid.uuid5(uuid.NAMESPACE_URL, "asup-bench:" + name) for name in streams}


def open_app(module: str, db_path: Path | None) -> Transfers:
    """A fresh application on `module`'s recorder; SQLite is checked to run WAL with synchronous=FULL."""
    env = {"PERSISTENCE_MODULE": module}
    if module == SQLITE:
        assert db_path is not None
        env["SQLITE_DBNAME"] = str(db_path)
    app = Transfers(env=env)
    if module == SQLITE:
        _full_sync(app)
    return app


def _full_sync(app: Transfers) -> None:
    """Set synchronous=FULL on the writer connection (this SQLite's default too: stated, not
    assumed) and refuse to measure anything but WAL + FULL (a commit fsyncs the WAL)."""
    with app.factory.datastore.get_connection(commit=True) as conn:
        cursor = conn.cursor()
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA synchronous")
        sync = cursor.fetchone()[0]
        cursor.execute("PRAGMA journal_mode")
        mode = cursor.fetchone()[0]
    if sync != 2 or str(mode).lower() != "wal":
        raise SystemExit(f"eventsourcing sqlite: expected journal_mode=wal synchronous=2 (FULL), got {mode} {sync}")


def append(
    app: Transfers, batches: Sequence[Sequence[Pending]], data_of: Mapping[int, dict[str, Any]], ids: Mapping[str, uuid.UUID]
) -> None:
    """Every batch as one `app.events.put` of freshly built aggregate events (versions from 1 per stream)."""
    event = Transfer.Transitioned
    put = app.events.put
    versions: dict[str, int] = {}
    for batch in batches:
        ts = datetime.now(UTC)
        events = []
        for item in batch:
            v = versions[item.stream] = versions.get(item.stream, 0) + 1
            events.append(event(originator_id=ids[item.stream], originator_version=v, timestamp=ts, data=data_of[id(item)]))
        put(events)


def read_fold(app: Transfers) -> tuple[dict[str, int], dict[uuid.UUID, str]]:
    """The notification log from the start, every notification decoded to its domain event,
    folded: a count per trigger, the last state per aggregate."""
    select, decode = app.notification_log.select, app.mapper.to_domain_event
    counts: dict[str, int] = {}
    last: dict[uuid.UUID, str] = {}
    start = 1
    while page := select(start, PAGE):
        for notification in page:
            data = decode(notification).data
            trigger = data["trigger"]
            counts[trigger] = counts.get(trigger, 0) + 1
            last[notification.originator_id] = data["to_state"]
        start = page[-1].id + 1
    return counts, last
