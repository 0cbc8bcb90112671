"""asup against its peers in the same run: append durably, then read back and fold.

    python bench/peers_bench.py            # the full grid (~2 minutes on 2 cores)
    python bench/peers_bench.py --quick    # a few seconds: small N, same grid
    python bench/peers_bench.py --json     # the figures document on stdout (progress on stderr)

The work: N Transition events of a mixed scenario (bench/log_bench.py's make_workload:
chunk commits, interruptions, resumes, checksum checks; `data` ~320 B, the record line
~630 B) over 100 and 1,000 streams, appended in batches of 100 and 1,000 with one fsync
(or commit) per batch, then read back and folded: a count per trigger and the last state
per stream. Every participant must produce the same fold, or the run stops.

Participants, in this order in every repeat (interleaved, so load hits them alike):
  asup                  events.jsonl_log.JsonlLog.append_batch, durability batch; read =
                        Scanner (framing, BLAKE3, typed decode, chain) + the fold; and
                        verify_log on 2 processes (what `asup log verify --jobs 2` runs)
  naive                 json.dumps of an equivalent dict per line + write, fsync per batch;
                        json.loads per line + the fold
  raw limit             the bytes asup wrote, os.write + one fsync per batch; read + split
                        into lines (no parse, no fold)
  eventsourcing sqlite  eventsourcing's Application on its SQLite recorder (WAL,
                        synchronous=FULL): one `app.events.put(events)` per batch (one
                        transaction); read = its notification log, decoded, + the fold
  eventsourcing popo    the same Application on its in-memory recorder (not durable)
Each figure is the median of --repeats runs (default 3). N is 40,000 for every participant
by default (the whole grid then takes ~2 minutes on 2 cores, eventsourcing most of it);
--es-events gives the eventsourcing peers another N (rates are per event).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import types
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import machine
from log_bench import Stat, Timer, Workload, asup_append, code_state, make_workload, naive_append, peer, rate_figure

from events.chain import ChainState
from events.payloads import Transition
from events.scan import Scanner
from events.segments import verify_log
from events.store import Pending
from events.vocabulary import Durability

SCHEMA = "asup.bench.peers/1"
STREAMS = (100, 1_000)
BATCHES = (100, 1_000)
JOBS = 2
ASUP, NAIVE, RAW, ES_SQLITE, ES_POPO = "asup", "naive", "raw limit", "eventsourcing sqlite", "eventsourcing popo"
PEERS = (NAIVE, RAW, ES_SQLITE, ES_POPO)
PARALLEL = "asup parallel verify"

Fold = tuple[dict[str, int], dict[str, str]]  # count per trigger, last state per stream


@dataclass
class Cell:
    """One streams x batch combination: append and read runs per participant."""

    streams: int
    batch: int
    append: dict[str, Stat] = field(default_factory=dict)
    read: dict[str, Stat] = field(default_factory=dict)

    def add(self, table: dict[str, Stat], who: str, events: int, seconds: float) -> None:
        table.setdefault(who, Stat(events)).seconds.append(seconds)


# --- the participants: append ------------------------------------------------------------


def raw_append(path: Path, chunks: Sequence[bytes]) -> float:
    """The disk's limit for this job: asup's own bytes, one os.write + fsync per batch."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        with Timer() as timer:
            for chunk in chunks:
                os.write(fd, chunk)
                os.fsync(fd)
    finally:
        os.close(fd)
    return timer.wall


def batch_chunks(path: Path, sizes: Sequence[int]) -> list[bytes]:
    """asup's log cut into the byte runs of its batches (the header line rides with the first)."""
    lines = path.read_bytes().splitlines(keepends=True)
    chunks, at = [], 1
    for size in sizes:
        chunks.append(b"".join(lines[at : at + size]))
        at += size
    chunks[0] = lines[0] + chunks[0]
    return chunks


# --- the participants: read + fold ---------------------------------------------------------


def asup_read(path: Path) -> tuple[float, Fold]:
    """Scanner (framing, BLAKE3, typed decode, chain checks) and the fold, one process."""
    counts: dict[str, int] = {}
    last: dict[str, str] = {}
    with Timer() as timer:
        scanner = Scanner(path, ChainState())
        for record in scanner:
            data = record.data
            if isinstance(data, Transition):
                counts[data.trigger] = counts.get(data.trigger, 0) + 1
                last[record.stream] = data.to_state
    if scanner.problem is not None:
        raise SystemExit(f"the asup log failed to verify: {scanner.problem}")
    return timer.wall, (counts, last)


def asup_parallel_verify(path: Path, events: int) -> float:
    with Timer() as timer:
        result = verify_log(path, JOBS, parallel_from=0)
    if result.problem is not None or result.segments < 2 or result.records != events + 1:
        raise SystemExit(f"parallel verify did not run clean in segments: {result}")
    return timer.wall


def naive_read(path: Path) -> tuple[float, Fold]:
    """json.loads per line (no digest, no types, no chain) and the same fold."""
    counts: dict[str, int] = {}
    last: dict[str, str] = {}
    loads = json.loads
    with Timer() as timer, path.open("rb") as fh:
        for line in fh:
            record = loads(line)
            data = record["data"]
            trigger = data["trigger"]
            counts[trigger] = counts.get(trigger, 0) + 1
            last[record["stream"]] = data["to_state"]
    return timer.wall, (counts, last)


def raw_read(path: Path, events: int) -> float:
    """The read limit: the bytes into memory and split into lines, nothing parsed."""
    with Timer() as timer, path.open("rb") as fh:
        lines = fh.read().split(b"\n")
    if len(lines) != events + 2:  # the header, the events, the empty tail after the last newline
        raise SystemExit(f"raw read found {len(lines)} pieces, expected {events + 2}")
    return timer.wall


# --- one cell ----------------------------------------------------------------------------


def _load_es() -> types.ModuleType | None:
    try:
        import peers_es
    except ImportError as exc:
        _progress(f"eventsourcing peers skipped: {exc} (make bench installs them into .venv-bench)")
        return None
    return peers_es


@dataclass
class Bench:
    args: argparse.Namespace
    directory: Path
    es: types.ModuleType | None

    def cell(self, streams: int, batch: int) -> Cell:
        work = make_workload(streams, self.args.seed)
        batches = work.batches(self.args.events, batch)
        es_batches = work.batches(self.args.es_events, batch)
        data_of = {id(item): data for item, data in zip(work.pool, work.naive_data, strict=True)}
        cell = Cell(streams, batch)
        for repeat in range(self.args.repeats):
            _progress(f"{streams:,} streams, batches of {batch:,}: run {repeat + 1}/{self.args.repeats}")
            _check(self._local(cell, work, batches), batches)
            if self.es is not None:
                _check(self._eventsourcing(cell, work, es_batches, data_of), es_batches)
        return cell

    def _local(self, cell: Cell, work: Workload, batches: list[list[Pending]]) -> list[Fold]:
        """asup, naive and raw: append each, then read each back (files warm in the page cache)."""
        n, d = self.args.events, self.directory
        paths = {who: _fresh(d / f"{who.replace(' ', '-')}.jsonl") for who in (ASUP, NAIVE, RAW)}
        cell.add(cell.append, ASUP, n, asup_append(paths[ASUP], batches, Durability.BATCH).wall)
        cell.add(cell.append, NAIVE, n, naive_append(paths[NAIVE], work, batches, Durability.BATCH).wall)
        cell.add(cell.append, RAW, n, raw_append(paths[RAW], batch_chunks(paths[ASUP], [len(b) for b in batches])))
        seconds, asup_fold = asup_read(paths[ASUP])
        cell.add(cell.read, ASUP, n, seconds)
        cell.add(cell.read, PARALLEL, n, asup_parallel_verify(paths[ASUP], n))
        seconds, naive_fold = naive_read(paths[NAIVE])
        cell.add(cell.read, NAIVE, n, seconds)
        cell.add(cell.read, RAW, n, raw_read(paths[RAW], n))
        for path in paths.values():
            path.unlink()
        return [asup_fold, naive_fold]

    def _eventsourcing(self, cell: Cell, work: Workload, batches: list[list[Pending]], data_of: dict[int, dict[str, Any]]) -> list[Fold]:
        es, n = self.es, self.args.es_events
        assert es is not None
        ids = es.stream_ids(work.streams)
        names = {uid: name for name, uid in ids.items()}
        folds: list[Fold] = []
        for who, module in ((ES_SQLITE, es.SQLITE), (ES_POPO, es.POPO)):
            db = _fresh(self.directory / "es.sqlite")
            app = es.open_app(module, db)
            try:
                with Timer() as timer:
                    es.append(app, batches, data_of, ids)
                cell.add(cell.append, who, n, timer.wall)
                with Timer() as timer:
                    counts, last = es.read_fold(app)
                cell.add(cell.read, who, n, timer.wall)
            finally:
                app.close()
                _fresh(db)
            folds.append((counts, {names[uid]: state for uid, state in last.items()}))
        return folds


def expected_fold(batches: Sequence[Sequence[Pending]]) -> Fold:
    """The fold computed from the events themselves, before any of them was written."""
    counts: dict[str, int] = {}
    last: dict[str, str] = {}
    for batch in batches:
        for item in batch:
            assert isinstance(item.event, Transition)
            counts[item.event.trigger] = counts.get(item.event.trigger, 0) + 1
            last[item.stream] = item.event.to_state
    return counts, last


def _check(folds: Sequence[Fold], batches: Sequence[Sequence[Pending]]) -> None:
    if any(fold != expected_fold(batches) for fold in folds):
        raise SystemExit("a participant read back a different fold than the events it was given")


def _fresh(path: Path) -> Path:
    for stale in path.parent.glob(path.name + "*"):
        stale.unlink()
    return path


def _progress(message: str) -> None:
    print(f"[peers_bench] {message}", file=sys.stderr, flush=True)


# --- figures -------------------------------------------------------------------------------

APPEND_FLOORS = [{"peer": NAIVE, "min_ratio": 1.5, "aim_ratio": 2.0}, {"peer": ES_SQLITE, "min_ratio": 8.0, "aim_ratio": 10.0}]
READ_FLOORS = [{"peer": NAIVE, "min_ratio": 1.3, "aim_ratio": 2.0}]
PARALLEL_FLOORS = [{"peer": NAIVE, "min_ratio": 2.0}]
FLOOR_CELL = (1_000, 1_000)  # the floors are set at 1,000 streams, batches of 1,000


def _peers(table: dict[str, Stat], names: Sequence[str]) -> dict[str, dict[str, Any]]:
    return {name: peer(table[name]) for name in names if name in table}


def figures(cells: Sequence[Cell], args: argparse.Namespace) -> list[dict[str, Any]]:
    sizes = f"{args.events:,} events each" if args.events == args.es_events else (
        f"asup, naive, raw: {args.events:,} events; eventsourcing: {args.es_events:,}"
    )
    out: list[dict[str, Any]] = []
    for c in cells:
        where = f"{c.streams:,} streams, batches of {c.batch:,}"
        floored = (c.streams, c.batch) == FLOOR_CELL
        out.append(rate_figure(
            "append", f"{where}, durable", c.append[ASUP], _peers(c.append, PEERS), APPEND_FLOORS if floored else [],
            f"appends: fsync per batch (SQLite: a commit, WAL, synchronous=FULL); eventsourcing: app.events.put per batch; {sizes}",
        ))
        out.append(rate_figure(
            "read", f"{where}: verify + typed decode + fold, one process", c.read[ASUP], _peers(c.read, PEERS),
            READ_FLOORS if floored else [],
            "one-process reads: asup Scanner + fold; naive json.loads + fold; raw read + split; "
            "eventsourcing notification log + to_domain_event + fold",
        ))
        out.append(rate_figure(
            "read", f"{where}: asup log verify --jobs {JOBS}", c.read[PARALLEL], _peers(c.read, (NAIVE, RAW)),
            PARALLEL_FLOORS if floored else [],
            f"asup log verify --jobs {JOBS}: verify_log on {JOBS} processes (pool start-up included, no fold) against one-process peers",
        ))
    return out


# --- output --------------------------------------------------------------------------------


def ratio_text(figure: dict[str, Any], peer: str) -> str:
    other = figure["peers"].get(peer)
    return f"{figure['value'] / other['value']:.2f}x" if other else "-"


def floor_lines(figs: Sequence[dict[str, Any]]) -> tuple[list[str], bool]:
    lines, passed = [], True
    for fig in figs:
        for floor in fig["floors"]:
            peer = fig["peers"].get(floor["peer"])
            ratio = fig["value"] / peer["value"] if peer else 0.0
            ok = ratio >= floor["min_ratio"]
            aim = floor.get("aim_ratio")
            passed = passed and ok
            verdict = ("PASS" if ok else "FAIL") + (", aim met" if aim is not None and ratio >= aim else "")
            target = f">= {floor['min_ratio']}x" + (f" (aim {aim}x)" if aim is not None else "")
            lines.append(f"  {fig['section']:<7}{fig['name']:<62} vs {floor['peer']:<21} {ratio:6.2f}x  {target:<20} {verdict}")
    return lines, passed


def show(doc: dict[str, Any]) -> None:
    for line in machine.summary_lines(doc["machine"]):
        print(line)
    context = doc["context"]
    print(f"load average {context['loadavg_before']} before, {context['loadavg_after']} after; commit {context['code']['commit']}")
    print(f"\nmedian of {doc['config']['repeats']} interleaved runs, events/s (asup/peer ratio in brackets)")
    names = (ASUP, *PEERS)
    for fig in doc["figures"]:
        print(f"\n{fig['section']}: {fig['name']}")
        print(f"  {ASUP:<22}{fig['value']:>12,.0f}")
        for name in names[1:]:
            peer = fig["peers"].get(name)
            if peer:
                print(f"  {name:<22}{peer['value']:>12,.0f}   ({ratio_text(fig, name)})")
    lines, passed = floor_lines(doc["figures"])
    print("\nfloors (asup / peer, same run):")
    print("\n".join(lines))
    print("=> " + ("ALL FLOORS PASS" if passed and lines else "SOME FLOORS FAIL"))


def run(args: argparse.Namespace, directory: Path) -> int:
    load_before = os.getloadavg()
    bench = Bench(args, directory, _load_es())
    cells = [bench.cell(streams, batch) for streams in STREAMS for batch in BATCHES]
    figs = figures(cells, args)
    doc = {
        "schema": SCHEMA,
        "machine": machine.describe(directory),
        "config": {"events": args.events, "es_events": args.es_events, "repeats": args.repeats, "seed": args.seed, "quick": args.quick},
        "context": {
            "code": code_state(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "eventsourcing": None if bench.es is None else bench.es.version(),
        },
        "figures": figs,
    }
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        show(doc)
    _, passed = floor_lines(figs)
    return 1 if args.strict and not passed else 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a smoke run: 4,000 events (eventsourcing 2,000)")
    parser.add_argument("--json", action="store_true", help="print the figures document instead of the tables")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a floor fails")
    parser.add_argument("--events", type=int, default=40_000, help="events per run")
    parser.add_argument("--es-events", type=int, default=None, help="events per run for eventsourcing (default: --events)")
    parser.add_argument("--repeats", type=int, default=3, help="runs per figure; the median is reported (>= 3)")
    parser.add_argument("--seed", type=int, default=20260528)
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temporary directory")
    args = parser.parse_args(argv)
    if args.quick:
        args.events, args.es_events = 4_000, args.es_events or 2_000
    if args.es_events is None:
        args.es_events = args.events
    if min(args.events, args.es_events) < max(BATCHES) or args.repeats < 3:
        parser.error(f"--events and --es-events must be >= {max(BATCHES):,} and --repeats >= 3")
    parent = args.dir or Path(tempfile.gettempdir())
    directory = Path(tempfile.mkdtemp(prefix="asup-peers-bench-", dir=parent))
    try:
        return run(args, directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
