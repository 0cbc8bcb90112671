"""Is a log replayable? It verifies end to end, and every transfer re-driven from its
recorded observations with today's decision code yields the recorded transitions."""

from __future__ import annotations

from pathlib import Path

from engine.machine import make_dispatcher
from engine.redrive import redrive
from events.chain import ChainState
from events.digest import open_regular
from events.payloads import LOG_EVENTS, Event, LogCreated, Transition
from events.record import Record
from events.scan import Scanner
from events.schema import decode_line
from projections.checklist import LogFact


def check_log(path: Path, *, lever: bool = True) -> LogFact:
    scanner = Scanner(path, ChainState())
    streams: dict[str, list[Event]] = {}
    for record in scanner:
        if not isinstance(record.data, LOG_EVENTS):
            streams.setdefault(record.stream, []).append(record.data)
    dispatcher = make_dispatcher(lever)
    reproduced = sum(1 for events in streams.values() if redrive(events, dispatcher) == [e for e in events if isinstance(e, Transition)])
    problem = scanner.problem.error(str(path)).one_line() if scanner.problem else ""
    chain = scanner.chain
    return LogFact(
        path=str(path),
        last_seq=chain.last_seq,
        last_h=chain.last_h,
        ok=scanner.problem is None,
        streams=len(streams),
        reproduced=reproduced,
        problem=problem,
    )


def is_asup_log(path: Path) -> bool:
    """True when the file's first line is an asup log header."""
    try:
        with open_regular(path, follow=True) as fh:
            first = fh.readline()
    except OSError:
        return False
    record = decode_line(first.rstrip(b"\n"), first.endswith(b"\n"))
    return isinstance(record, Record) and isinstance(record.data, LogCreated)
