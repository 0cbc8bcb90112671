"""The console's model: the transfer folds of every log, kept current record by record.

Read-only by construction: it opens logs for reading only, saves no fold checkpoint, takes
no lock, and replays in memory. It keeps the folds' states (a row per transfer, its cause,
the audit, metrics and violations escalation needs) and no record objects: one
transfer's records are read back from its log when its page is opened (`timeline`).

The follower feeds it (`live.run_followers`): the cold start is one streaming pass over
each log, in a worker thread under `lock`, so the pages answer while it runs ("loading N
events"); then the same records `asup tail -f` sees, one batch at a time.
"""

from __future__ import annotations

import contextlib
import gc
import os
import shlex
import shutil
import stat
import tempfile
import threading
from array import array
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import msgspec

from engine import liveness
from events.atomic import write_all
from events.chain import ChainState
from events.errors import AsupError, ErrorCode, os_error
from events.follow import Tailer
from events.jetstream.url import LogUrl, is_url
from events.log_ref import log_ref, write_snapshot
from events.payloads import Transition
from events.record import Record
from events.scan import Scanner
from events.vocabulary import ReasonCode, State
from projections.artifact_paths import ArtifactPaths
from projections.runbook_map import LEVEL, SECTION
from projections.transfers import TransferView
from replay.reexecute import ReplayOutcome, replay_log
from runbook.console import split_fold, timeline
from runbook.console.diagram import diagram
from runbook.console.folds import JUDGED, PROJECTIONS, ROWS
from runbook.console.views import (
    Command,
    FieldDiff,
    Health,
    LiveRecord,
    Page,
    Query,
    ReplayResult,
    TimelineEntry,
    TransferDetail,
    TransferRow,
)

MAX_PAGE = 500
Counts = tuple[dict[str, int], dict[str, int], list[str]]  # by state, by reason, classes
OPS_LOG = -1  # `event`'s name for the root's operations log
COLD_BATCH = 2_000  # records folded per hold of the lock during the cold start


class LogState:
    """One log's folds and where its follower stands."""

    def __init__(self, index: int, text: str, url: LogUrl | None = None) -> None:
        self.index = index
        self.text = text
        self.url = url
        self.mirror_dir: Path | None = None
        self.mirror_fd: int | None = None  # the copy's append descriptor, opened by the first live record
        self.path = Path(text)
        if url is not None:
            # a nats:// log is read into a private local copy (a 0700 directory of its own,
            # removed by `remove_copies`): the same verified lines, so every page reads a file
            self.mirror_dir = Path(tempfile.mkdtemp(prefix="asup-console-"))
            self.path = self.mirror_dir / f"{url.stream}.jsonl"
        self.states: dict[str, Any] = {p.name: p.initial() for p in PROJECTIONS}
        self.last_ts: dict[str, str] = {}  # each stream's latest ts: the next record's duration
        self.seqs: dict[str, array[int]] = {}  # each stream's seqs: its records found again in the file
        self.events = 0
        self.last_seq = 0
        self.judged_seq = 0  # the last record the JUDGED folds have seen
        self.judged = False  # they have caught up with the rows: apply folds them as it goes
        self.ready = False
        self.problem = ""
        self.tailer = Tailer(self.path)

    def reset(self) -> None:
        """Back to nothing folded (a split cold start that could not be stitched)."""
        self.states = {p.name: p.initial() for p in PROJECTIONS}
        self.last_ts, self.events, self.last_seq, self.seqs = {}, 0, 0, {}

    @property
    def transfers(self) -> dict[str, TransferView]:
        views: dict[str, TransferView] = self.states["transfers"].transfers
        return views

    def fold(self, record: Record) -> None:
        states = self.states
        for projection in ROWS:
            states[projection.name] = projection.apply(states[projection.name], record)
        try:
            self.seqs[record.stream].append(record.seq)
        except KeyError:
            self.seqs[record.stream] = array("q", (record.seq,))
        self.events += 1
        self.last_seq = record.seq
        if self.judged:
            self.judge(record)

    def judge(self, record: Record) -> None:
        if record.seq > self.judged_seq:
            states = self.states
            for projection in JUDGED:
                states[projection.name] = projection.apply(states[projection.name], record)
            self.judged_seq = record.seq


def open_logs(texts: Sequence[str]) -> list[LogState]:
    """Each log argument checked before anything is served: a file that exists, or a
    well-formed nats:// URL (its server is asked when the cold start reads it)."""
    checked = [_checked(text) for text in texts]  # every argument first: a refused one leaves no copy behind
    logs: list[LogState] = []
    try:
        for index, (text, url) in enumerate(checked):
            logs.append(LogState(index, text, url))
    except BaseException:
        remove_copies(logs)
        raise
    return logs


def _checked(text: str) -> tuple[str, LogUrl | None]:
    if is_url(text):
        return text, log_ref(text).url  # a malformed URL: a usage error here
    path = Path(text)
    if not path.exists():
        raise AsupError(ErrorCode.LOG_NOT_FOUND, "no such log file", file=text)
    if not path.is_file():
        raise AsupError(ErrorCode.USAGE, "not a log file", file=text)
    return text, None


def remove_copies(logs: Sequence[LogState]) -> None:
    """Close and remove the local copies of nats:// logs."""
    for state in logs:
        if state.mirror_fd is not None:
            with contextlib.suppress(OSError):
                os.close(state.mirror_fd)
            state.mirror_fd = None
        if state.mirror_dir is not None:
            shutil.rmtree(state.mirror_dir, ignore_errors=True)


class LogModel:
    """What every page reads; `apply` and `cold_start` are the only writers (of memory)."""

    def __init__(self, logs: Sequence[str], root: Path | None = None, *, stale: Callable[[TransferView], bool] | None = None) -> None:
        self.logs = open_logs(logs)
        self.root = root
        self.lock = threading.RLock()
        self._counted: tuple[int, Counts] = (-1, ({}, {}, []))
        self._stale = stale or _is_stale
        self._sorted: dict[tuple[Any, ...], list[tuple[LogState, TransferView]]] = {}

    # --- feeding -------------------------------------------------------------------------

    def cold_start(self, log: int) -> None:
        """One verified streaming pass over the log as it is now (a large one on two cores,
        `split_fold`); the tailer then follows on from where it ended. Damage ends the pass:
        what was read stays, the problem shows."""
        with _collector_paused():
            self._cold_start(log)

    def _cold_start(self, log: int) -> None:
        state = self.logs[log]
        if state.url is not None and not self._mirrored(state):
            return
        if state.path.stat().st_size >= split_fold.SPLIT_FROM and self._cold_split(state):
            return
        chain = ChainState()
        scanner = Scanner(state.path, chain)
        batch: list[Record] = []
        try:
            for record in scanner:
                batch.append(record)
                if len(batch) >= COLD_BATCH:
                    self._fold_quietly(state, batch)
                    batch = []
            self._fold_quietly(state, batch)
        except AsupError as exc:
            state.problem = exc.one_line()
        if scanner.problem is not None and scanner.problem.kind != "torn_tail":
            state.problem = scanner.problem.error(state.text).one_line()
        state.tailer.chain, state.tailer.offset = chain, scanner.valid_size
        state.ready = True

    def catch_up(self, log: int, pause: Callable[[], None] = lambda: None) -> None:
        """The second pass: the escalation folds over the same records, until they reach
        the rows (records the follower adds meanwhile are read here too, from the file)."""
        with _collector_paused():
            self._catch_up(log, pause)

    def _catch_up(self, log: int, pause: Callable[[], None]) -> None:
        state = self.logs[log]
        if state.judged:  # nothing to read: a stream that could not be copied
            return
        chain = ChainState()
        scanner = Scanner(state.path, chain)
        batch: list[Record] = []
        for record in scanner:
            batch.append(record)
            if len(batch) >= COLD_BATCH:
                if self._judge(state, batch):
                    return
                batch = []
        tailer = Tailer(state.path)
        tailer.chain, tailer.offset = chain, scanner.valid_size
        while not self._judge(state, batch):
            pause()
            batch = tailer.drain()

    def _judge(self, state: LogState, records: list[Record]) -> bool:
        """Fold `records` into the escalation inputs; True once they have caught up."""
        with self.lock:
            for record in records:
                if record.seq > state.last_seq and not state.problem:
                    break  # the follower has not folded it yet: it will, now that both are level
                state.judge(record)
            if state.judged_seq >= state.last_seq or state.problem:
                state.judged = True
            return state.judged

    def _mirrored(self, state: LogState) -> bool:
        """A nats:// log's verified lines copied to its local file; False (the problem
        shown) when the server cannot be read."""
        assert state.url is not None
        try:
            write_snapshot(state.url, state.path)
        except AsupError as exc:
            state.problem = exc.one_line()
            state.ready = state.judged = True
            return False
        return True

    def mirror(self, log: int, line: bytes) -> None:
        """A live record of a nats:// log added to its local copy (before it is folded)."""
        state = self.logs[log]
        try:
            if state.mirror_fd is None:
                state.mirror_fd = os.open(state.path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW)
            write_all(state.mirror_fd, memoryview(line + b"\n"))
        except OSError as exc:  # a full /tmp: the follower stops with the problem shown
            raise os_error(exc, "copying the stream to", state.path) from exc

    def close(self) -> None:
        remove_copies(self.logs)

    def _cold_split(self, state: LogState) -> bool:
        found = split_fold.fold_split(state.path, lambda batch: self._fold_quietly(state, batch), [p.name for p in ROWS])
        if found is None:
            with self.lock:
                state.reset()
            return False
        split, chain = found
        carried = split_fold.carried_records(split.second)
        with self.lock:
            for projection in ROWS:
                other = msgspec.msgpack.decode(split.second.states[projection.name], type=projection.state_type)
                _merge(state.states[projection.name], other)
            state.last_ts.update(split.second.last_ts)
            state.seqs.update(split_fold.seqs_of(split.second))
            for record in carried:  # streams that began in the first half, continued in the second
                state.fold(record)
                state.last_ts[record.stream] = record.ts
            state.events += split.second.events - len(carried)
            state.last_seq = chain.last_seq
        state.tailer.chain, state.tailer.offset = chain, split.end
        state.ready = True
        return True

    def _fold_quietly(self, state: LogState, records: list[Record]) -> None:
        with self.lock:
            for record in records:
                state.fold(record)
                state.last_ts[record.stream] = record.ts

    def apply(self, log: int, records: Sequence[Record]) -> list[LiveRecord]:
        """Fold new records; the live feed's item for each."""
        state = self.logs[log]
        out = []
        with self.lock:
            for record in records:
                state.fold(record)
                entry = timeline.entry(record, state.last_ts.get(record.stream, ""))
                state.last_ts[record.stream] = record.ts
                view = state.transfers.get(record.stream)
                key = f"{log}:{record.stream}" if view is not None else ""
                out.append(LiveRecord(log, record.seq, key, entry, self._row(state, view) if view is not None else None))
        return out

    def fail(self, log: int, problem: str) -> None:
        with self.lock:
            self.logs[log].problem = problem

    @property
    def ready(self) -> bool:
        return all(state.ready for state in self.logs)

    def progress(self) -> dict[str, Any]:
        """How far the folds are: cheap (no lock), for the header and a poller."""
        judged = all(s.judged for s in self.logs)
        problems = sum(1 for s in self.logs if s.problem)  # damage, or a stream lost or not copied: said on every page
        events = sum(s.events for s in self.logs)
        return {"ready": self.ready, "judged": judged, "events": events, "logs": len(self.logs), "problems": problems}

    # --- reading -------------------------------------------------------------------------

    def transfers(self, query: Query) -> Page:
        size = max(1, min(query.size, MAX_PAGE))
        with self.lock:
            events = sum(s.events for s in self.logs)
            found = self._found(query, events)
            pages = max(1, -(-len(found) // size))
            page = max(1, min(query.page, pages))
            rows = [self._row(state, view) for state, view in found[(page - 1) * size : page * size]]
            return Page(rows, len(found), page, pages, *self._counts(), events, [s.text for s in self.logs])

    def _found(self, query: Query, events: int) -> list[tuple[LogState, TransferView]]:
        """The matching transfers in order; kept until a record is folded (paging through a
        large log sorts once, not on every page)."""
        key = (query.state, query.reason, query.artifact_class, query.text, query.sort, query.descending, events)
        found = self._sorted.get(key)
        if found is None:
            found = [(state, view) for state in self.logs for view in state.transfers.values() if self._matches(state, view, query)]
            found.sort(key=_sort_key(query.sort), reverse=query.descending)
            if len(self._sorted) >= 16:
                self._sorted.pop(next(iter(self._sorted)))
            self._sorted[key] = found
        return found

    def _counts(self) -> Counts:
        """By state, by reason, the classes: recounted only after new records were folded."""
        folded = sum(s.events for s in self.logs)
        if self._counted[0] != folded:
            by_state: Counter[str] = Counter()
            by_reason: Counter[str] = Counter()
            classes: set[str] = set()
            for state in self.logs:
                views = state.transfers.values()
                by_state.update(view.state for view in views)  # the StrEnum members, read once each
                by_reason.update(view.reason_code for view in views if view.reason_code is not None)
                classes.update(view.artifact_class for view in views if view.artifact_class)
            counts = (
                {str(k): v for k, v in sorted(by_state.items())},
                {str(k): v for k, v in sorted(by_reason.items())},
                sorted(classes),
            )
            self._counted = (folded, counts)
        return self._counted[1]

    def _matches(self, state: LogState, view: TransferView, query: Query) -> bool:
        if not (query.state or query.reason or query.artifact_class or query.text):
            return True
        if query.state and view.state != query.state:  # StrEnums compare as their values
            return False
        if query.reason and view.reason_code != query.reason:
            return False
        if query.artifact_class and view.artifact_class != query.artifact_class:
            return False
        if not query.text:
            return True
        text = query.text.lower()
        fields = (view.transfer_id, view.artifact_id, view.target, self._cause(state, view))
        return any(text in field.lower() for field in fields)

    def _cause(self, state: LogState, view: TransferView) -> str:
        cause: str = state.states["causes"].causes.get(view.transfer_id, "")
        return cause

    def _row(self, state: LogState, view: TransferView) -> TransferRow:
        return TransferRow(
            key=f"{state.index}:{view.transfer_id}",
            log=state.index,
            transfer_id=view.transfer_id,
            artifact_id=view.artifact_id,
            artifact_class=view.artifact_class,
            state=view.state.value,
            reason_code=view.reason_code.value if view.reason_code else "",
            cause=self._cause(state, view),
            attempts=view.attempt,
            bytes_committed=view.committed_cursor,
            size=view.size,
            duration_ms=view.duration_ms,
            stale=self._stale(view),
            suspended=view.suspended,
            last_seq=view.last_seq,
            started=view.started,
        )

    def _find(self, key: str) -> tuple[LogState, TransferView] | None:
        index, _, transfer_id = key.partition(":")
        if not index.isdigit() or int(index) >= len(self.logs):
            return None
        state = self.logs[int(index)]
        view = state.transfers.get(transfer_id)
        return None if view is None else (state, view)

    def transfer(self, key: str) -> TransferDetail | None:
        with self.lock:
            found = self._find(key)
            if found is None:
                return None
            state, view = found
            row = self._row(state, view)
            first, last = view.first_seq, view.last_seq
            seqs = state.seqs.get(view.transfer_id)
            seqs = array("q", seqs) if seqs is not None else None  # a copy: the follower appends
        if seqs is not None:
            records = list(timeline.records_at(state.path, view.transfer_id, seqs))
        else:  # not indexed (cannot happen for a stream the model folded): read its span
            records = list(timeline.stream_records(state.path, view.transfer_id, first, last))
        entries, previous = [], ""
        for record in records:
            entries.append(timeline.entry(record, previous))
            previous = record.ts
        moves = [(r.data.from_state.value, r.data.trigger.value, r.data.to_state.value) for r in records if isinstance(r.data, Transition)]
        section, level, next_step = _next_step(state.text, view, row)
        commands = _commands(state.text, view, row)
        return TransferDetail(row, state.text, entries, diagram(moves), next_step, section, level, commands)

    def event(self, log: int, seq: int) -> TimelineEntry | None:
        """One record of a console log (`log` >= 0) or of the root's operations log (-1)."""
        if log == OPS_LOG and self.root is not None:
            path = ArtifactPaths(self.root).ops_log
            if not path.is_file():
                return None
        elif 0 <= log < len(self.logs):
            path = self.logs[log].path
        else:
            return None
        if seq < 1:
            return None
        try:
            for record in timeline.window(path, timeline.offset_of(path, seq, path.stat().st_size)):
                if record.seq == seq:
                    return timeline.entry(record)
                if record.seq > seq:
                    break
        except (AsupError, OSError):  # damage before it: the event cannot be shown (Health names the damage)
            return None
        return None

    def records_between(self, log: int, after_seq: int, until_seq: int) -> list[LiveRecord]:
        """What the live feed sent between two seqs, read again from the log (a reconnect
        whose Last-Event-ID is older than the feed keeps in memory)."""
        state = self.logs[log]
        path = state.path
        start = timeline.offset_of(path, after_seq + 1, path.stat().st_size)
        out = []
        previous: dict[str, str] = {}
        for record in timeline.window(path, start):
            if record.seq > until_seq:
                break
            if record.seq > after_seq:
                entry = timeline.entry(record, previous.get(record.stream, ""))
                with self.lock:
                    view = state.transfers.get(record.stream)
                    row = self._row(state, view) if view is not None else None
                out.append(LiveRecord(log, record.seq, f"{log}:{record.stream}" if view is not None else "", entry, row))
            previous[record.stream] = record.ts
        return out

    def replay(self, log: int, transfer_id: str = "") -> ReplayResult:
        """`asup replay` in memory: reproduced, or the first divergence as a field diff."""
        state = self.logs[log]
        command = shlex.join(["asup", "replay", state.text, *(["--transfer", transfer_id] if transfer_id else [])])
        report, _ = replay_log(state.path, transfer=transfer_id or None, want_trace=False)
        reproduced = sum(1 for t in report.transfers if t.outcome is ReplayOutcome.REPRODUCED)
        first = next((t for t in report.transfers if t.outcome is not ReplayOutcome.REPRODUCED), None)
        common: dict[str, Any] = {"transfers": len(report.transfers), "reproduced": reproduced, "command": command}
        common["problem"] = report.problem or ""
        if first is None:
            outcome = "problem" if report.problem else "reproduced"
            return ReplayResult(log, transfer_id, outcome, **common)
        divergence = first.divergence
        diff: list[FieldDiff] = []
        seq, leading = 0, []
        if divergence is not None:
            recorded, replayed = divergence.expected or {}, divergence.actual or {}
            diff = [FieldDiff(name, recorded.get(name), replayed.get(name)) for name in divergence.fields]
            seq, leading = divergence.seq, divergence.leading
        if first.impossible:
            diff.append(FieldDiff("impossible", first.impossible, None))
        return ReplayResult(
            log,
            transfer_id,
            first.outcome.value,
            first_divergent_transfer=first.transfer_id,
            first_divergent_seq=seq,
            diff=diff,
            leading=leading,
            **common,
        )

    def health(self) -> Health:
        from runbook.console.health import from_root, health  # the checklist reads the root: only when asked

        part = from_root(self.root)  # the root's files, re-read: without holding the folds
        with self.lock:  # the follower waits: the folds are read as they stand
            behind = [s for s in self.logs if not s.judged]
            pending = ", ".join(f"{s.text}: {s.judged_seq:,} of {s.last_seq:,} records" for s in behind)
            judged = health([(s.index, s.text, s.states, s.problem) for s in self.logs], self.root, part)
        return msgspec.structs.replace(judged, pending=pending)

    def artifact(self, text: str) -> dict[str, Any] | None:
        """An artifact path's metadata, for a path under the root only (None: refused).
        Never opened: a FIFO or a device planted there is described, not read."""
        if self.root is None or not text:
            return None
        root = self.root.resolve()
        candidate = Path(text) if Path(text).is_absolute() else root / text
        try:
            resolved = candidate.resolve()
        except (OSError, RuntimeError):
            return None
        if not resolved.is_relative_to(root):
            return None
        try:
            st = candidate.lstat()
        except OSError:
            return {"path": str(resolved.relative_to(root)), "exists": False}
        kind = (
            "symlink"
            if stat.S_ISLNK(st.st_mode)
            else "file"
            if stat.S_ISREG(st.st_mode)
            else "directory"
            if stat.S_ISDIR(st.st_mode)
            else "other"
        )
        return {"path": str(resolved.relative_to(root)), "exists": True, "kind": kind, "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _merge(into: Any, other: Any) -> None:
    """A row fold's state from the second half added to the first's: every field is a map
    by stream, and no stream is in both (one born in the second half has no earlier record)."""
    for name in into.__struct_fields__:
        mine, theirs = getattr(into, name), getattr(other, name)
        if not isinstance(mine, dict):
            raise TypeError(f"{type(into).__name__}.{name} is not a map by stream: it cannot be folded in halves")
        mine.update(theirs)


class _CollectorPause:
    """The cyclic garbage collector off while any cold start or catch-up runs, and what they
    built frozen after (gc.freeze: later collections skip it). The folds allocate millions
    of long-lived objects and no cycles to speak of: the collector's passes over them cost
    a sixth to a third of a 10^6-event cold start, and one full pass later (0.6 s) stalled
    a page. Reference counting frees everything else as usual."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.was_enabled = True

    @contextmanager
    def __call__(self) -> Iterator[None]:
        with self.lock:
            if self.running == 0:
                self.was_enabled = gc.isenabled()
                gc.disable()
            self.running += 1
        try:
            yield
        finally:
            with self.lock:
                self.running -= 1
                if self.running == 0:
                    gc.freeze()
                    if self.was_enabled:
                        gc.enable()


_collector_paused = _CollectorPause()


def _is_stale(view: TransferView) -> bool:
    verdict = liveness.of_transfer(view)
    return verdict is not None and verdict.liveness is liveness.Liveness.STALE


def _sort_key(sort: str) -> Callable[[tuple[LogState, TransferView]], Any]:
    fields: dict[str, Callable[[LogState, TransferView], Any]] = {
        "transfer": lambda s, v: (v.transfer_id, s.index),
        "state": lambda s, v: (v.state.value, v.transfer_id, s.index),
        "reason": lambda s, v: (v.reason_code.value if v.reason_code else "", v.transfer_id, s.index),
        "attempts": lambda s, v: (v.attempt, v.transfer_id, s.index),
        "bytes": lambda s, v: (v.committed_cursor, v.transfer_id, s.index),
        "duration": lambda s, v: (v.duration_ms, v.transfer_id, s.index),
        "started": lambda s, v: (v.started, v.transfer_id, s.index),
    }
    pick = fields.get(sort, _by_last_seq)
    return lambda pair: pick(*pair)


def _by_last_seq(state: LogState, view: TransferView) -> tuple[int, int, str]:
    return (view.last_seq, state.index, view.transfer_id)


def _next_step(log: str, view: TransferView, row: TransferRow) -> tuple[str, str, str]:
    """(runbook section, escalation level, what to do now) for one transfer."""
    if view.state is State.FAILED_CLOSED and view.reason_code is not None:
        code = ReasonCode(view.reason_code)
        section, level = SECTION[code], LEVEL[code].value
        step = f"runbook section {section} ({level}): reproduce with `asup replay {shlex.quote(log)} --transfer {view.transfer_id}`"
        if code is ReasonCode.IO_FAILED:
            step += f", fix the storage, then `{liveness.resume_command(view.transfer_id, log)}`"
        else:
            step += f"; `asup triage {shlex.quote(log)}` runs the section's checks"
        return section, level, step
    if view.suspended or row.stale:
        why = "suspended by a signal" if view.suspended else "stale: nobody holds its lease"
        return "", "P2" if row.stale else "", f"{why}: continue it with `{liveness.resume_command(view.transfer_id, log)}`"
    if view.state is State.COMPLETED:
        return "", "", "completed and verified: nothing to do"
    return "", "", "in progress: watch it here (the page updates live) or with `asup tail -f`"


def _commands(log: str, view: TransferView, row: TransferRow) -> list[Command]:
    tid = view.transfer_id
    commands = [
        Command("reproduce", shlex.join(["asup", "replay", log, "--transfer", tid])),
        Command("trace", shlex.join(["asup", "trace", log, "--transfer", tid])),
        Command("status", shlex.join(["asup", "status", log, "--transfer", tid])),
        Command("follow", shlex.join(["asup", "tail", log, "-f", "--transfer", tid])),
    ]
    if view.suspended or row.stale or view.reason_code is ReasonCode.IO_FAILED:
        commands.insert(1, Command("resume", liveness.resume_command(tid, log)))
    return commands
