"""Benchmark of the JSONL log: appends per durability, verify + typed decode, a big streaming run.

    python bench/log_bench.py                  # full run: small runs, then a ~1 GiB streaming run
    python bench/log_bench.py --quick          # a few seconds: small sizes, no big run
    python bench/log_bench.py --json           # one JSON document on stdout (progress on stderr)
    python bench/log_bench.py --strict         # exit 1 when a floor fails (default: always exit 0)
    python bench/log_bench.py --profile        # also cProfile the append and verify paths

Every small measurement is repeated (`--repeats`, default 5) and the MEDIAN is printed,
with the min..max of the asup runs (every run is in the JSON), and CPU/wall time (well
below 1 for CPU-bound work: the process waited for the disk or for another process).
Each asup number has a naive stdlib baseline measured in the same run: `json.dumps` of an
equivalent dict + `f.write` per event (same fsync policy) for appends, `json.loads` per
line of the same file for verify. The clock is a StepClock and the workload is seeded,
so the logs are identical from run to run.

Event size: the issue speaks of ~300-byte events. A record line cannot be that short (the
envelope with `id`, `ts`, `prev` and `h` is ~300 B by itself), so the `data` object is
made ~320 B (little more than an all-defaults Transition, ~275 B) and the line comes out
~630 B; both means are printed (`--rich`: ~350 B data, ~650 B lines).

Floors (from the issue): appends with batch durability in batches of 1,000 >= 150,000
events/s (aim 300,000); verify + typed decode >= 250,000 events/s (aim 400,000); both
>= 1.5x their naive baseline. `--json` also gives the shared "figures" list (sections
append and read; the ratio floors of issue 15: append >= 1.5x naive, verify >= 1.3x,
verify on every core >= 2x). The default is 1,000 streams, where every event of a batch
of 1,000 is on its own stream (per-stream costs are paid per event); `--streams 100`
gives the older figure.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import multiprocessing
import os
import pstats
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import machine
import msgspec

from events.chain import ChainState
from events.clock import StepClock, format_ts
from events.jsonl_log import JsonlLog, drop_side_files
from events.payloads import Transition
from events.scan import Scanner
from events.segments import default_jobs, verify_log
from events.store import Pending
from events.vocabulary import Durability, Mode, ReasonCode, State, Trigger

SCHEMA = "asup.bench.log/1"
LOG_ID = "bench"
POOL = 10_000  # distinct events; batches cycle over them (events are immutable, ids derive from sv)
BIG_BATCH = 10_000
MIB = 1 << 20

FLOOR_APPEND = 150_000
AIM_APPEND = 300_000
FLOOR_VERIFY = 250_000
AIM_VERIFY = 400_000
FLOOR_RATIO = 1.5

S, T = State, Trigger
# One transfer's life, repeated per stream: mostly chunk commits, some interruptions.
ROUTE: list[tuple[State, Trigger, State, ReasonCode | None]] = [
    (S.IDLE, T.START, S.CAPABILITY_CHECK, None),
    (S.CAPABILITY_CHECK, T.CAPABILITY_ACCEPTED, S.SYNCING, None),
    *[(S.SYNCING, T.CHUNK_COMMITTED, S.SYNCING, None)] * 12,
    (S.SYNCING, T.TRANSPORT_INTERRUPTED, S.SYNCING, None),
    (S.SYNCING, T.RESUME_APPLIED, S.SYNCING, None),
    *[(S.SYNCING, T.CHUNK_COMMITTED, S.SYNCING, None)] * 12,
    (S.SYNCING, T.CHECKSUM_VERIFICATION_STARTED, S.VERIFYING_CHECKSUM, None),
    (S.VERIFYING_CHECKSUM, T.CHECKSUM_VALIDATED, S.COMPLETED, None),
]
ARTIFACT_CLASSES = ("model-weights", "dataset-shard", "checkpoint", "container-layer")


# --- workload ------------------------------------------------------------------------


@dataclass
class Workload:
    """Pending items in batches (cycled over a pool), and the naive baseline's equivalents."""

    streams: list[str]
    pool: list[Pending]
    naive_data: list[dict[str, Any]]  # msgspec.to_builtins of each pool event: the "equivalent dict" payload
    data_bytes: float  # mean encoded size of the `data` object

    def batches(self, events: int, batch: int) -> list[list[Pending]]:
        """`events` items in lists of `batch`; item k goes to stream k % len(streams)."""
        out: list[list[Pending]] = []
        for start in range(0, events, batch):
            out.append([self.pool[k % len(self.pool)] for k in range(start, min(start + batch, events))])
        return out


def make_workload(streams: int, seed: int, rich: bool = False) -> Workload:
    """Seeded Transition events. The `data` object is ~320 B by default (the issue's "~300-byte
    events"; an all-defaults Transition is already ~275 B, so only some telemetry fits: artifact
    id, seed, duration); `rich` also fills artifact class and environment fingerprint (~350 B)."""
    rng = random.Random(seed)
    names = [f"xfer-{i:04d}" for i in range(streams)]
    step = [0] * streams
    pool: list[Pending] = []
    for k in range(POOL):
        s = k % streams
        from_state, trigger, to_state, reason = ROUTE[step[s] % len(ROUTE)]
        cursor = step[s] // len(ROUTE) * 24 + min(step[s] % len(ROUTE), 24)
        step[s] += 1
        seed_k = rng.getrandbits(31)
        event = Transition(
            transfer_id=names[s],
            from_state=from_state,
            trigger=trigger,
            to_state=to_state,
            attempt=rng.choice((0, 0, 0, 1, 2)),
            committed_cursor=cursor,
            reason_code=reason,
            artifact_id="art-" + rng.randbytes(4).hex(),
            artifact_class=rng.choice(ARTIFACT_CLASSES) if rich else "",
            mode=Mode.STRICT,
            seed=seed_k,
            replay_command=f"asup replay {names[s]} --seed {seed_k}" if trigger is T.TRANSPORT_INTERRUPTED else "",
            env_fingerprint=rng.randbytes(6).hex() if rich else "",
            duration_ms=round(rng.uniform(0.2, 900.0), 3),
        )
        pool.append(Pending(names[s], event))
    naive_data = [msgspec.to_builtins(item.event) for item in pool]
    data_bytes = statistics.fmean(len(msgspec.json.encode(item.event)) for item in pool)
    return Workload(names, pool, naive_data, data_bytes)


# --- measurement helpers ---------------------------------------------------------------


class Timer:
    """Wall-clock and process-CPU seconds of a block (CPU/wall well below 1 for CPU-bound
    code means the process was waiting: for the disk, or for a CPU another process held)."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0

    def __enter__(self) -> Timer:
        self._wall0, self._cpu0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._wall0
        self.cpu = time.process_time() - self._cpu0


@dataclass
class Stat:
    """Repeated runs of one measurement: events/s (and MB/s when bytes are known)."""

    events: int
    seconds: list[float] = field(default_factory=list)
    cpu_seconds: list[float] = field(default_factory=list)
    nbytes: int = 0

    def add(self, timer: Timer) -> None:
        self.seconds.append(timer.wall)
        self.cpu_seconds.append(timer.cpu)

    @property
    def cpu_share(self) -> float:
        """Median CPU/wall over the runs."""
        return statistics.median(c / w for c, w in zip(self.cpu_seconds, self.seconds, strict=True))

    @property
    def rates(self) -> list[float]:
        return [self.events / s for s in self.seconds]

    @property
    def median(self) -> float:
        return statistics.median(self.rates)

    @property
    def mb_per_s(self) -> float:
        return self.nbytes / MIB / statistics.median(self.seconds) if self.nbytes else 0.0

    def to_json(self) -> dict[str, Any]:
        rates = self.rates
        return {
            "events": self.events,
            "bytes": self.nbytes,
            "runs": len(rates),
            "median_events_per_s": round(self.median),
            "min_events_per_s": round(min(rates)),
            "max_events_per_s": round(max(rates)),
            "median_mib_per_s": round(self.mb_per_s, 1),
            "median_cpu_per_wall": round(self.cpu_share, 3),
            "seconds": [round(s, 6) for s in self.seconds],
            "cpu_seconds": [round(s, 6) for s in self.cpu_seconds],
        }


def _fresh(directory: Path, name: str) -> Path:
    path = directory / name
    for stale in directory.glob(name + "*"):
        stale.unlink()
    return path


def asup_append(path: Path, batches: Sequence[Sequence[Pending]], durability: Durability) -> Timer:
    """Time to append all batches to a fresh log (open and close not timed)."""
    with JsonlLog.open(path, log_id=LOG_ID, durability=durability, clock=StepClock()) as log, Timer() as timer:
        for batch in batches:
            log.append_batch(batch)
    return timer


def naive_append(path: Path, work: Workload, batches: Sequence[Sequence[Pending]], durability: Durability) -> Timer:
    """The stdlib baseline: json.dumps of an equivalent dict + f.write per event.

    Same keys and value sizes as an asup record; `id`, `prev` and `h` are fixed strings
    of the right length (no hashing, no chain, no dedupe: that is what makes it naive).
    fsync as asup does it: never (none), after each batch (batch), after each event (always).
    """
    per_batch = durability is Durability.BATCH
    per_event = durability is Durability.ALWAYS
    clock = StepClock()
    data_of = {id(item): data for item, data in zip(work.pool, work.naive_data, strict=True)}
    event_id = "e-" + "0" * 24
    digest = "blake3:" + "0" * 64
    versions: dict[str, int] = {}
    seq = 1
    with path.open("w", encoding="utf-8") as fh, Timer() as timer:
        fileno = fh.fileno()
        for batch in batches:
            ts = format_ts(clock.now_ns())
            for item in batch:
                seq += 1
                sv = versions[item.stream] = versions.get(item.stream, 0) + 1
                record = {
                    "type": "transition",
                    "v": 1,
                    "seq": seq,
                    "stream": item.stream,
                    "sv": sv,
                    "id": event_id,
                    "ts": ts,
                    "data": data_of[id(item)],
                    "prev": digest,
                    "h": digest,
                }
                fh.write(json.dumps(record) + "\n")
                if per_event:
                    fh.flush()
                    os.fsync(fileno)
            if per_batch:
                fh.flush()
                os.fsync(fileno)
    return timer


def asup_verify(path: Path) -> tuple[Timer, int]:
    """A full Scanner pass (framing, BLAKE3, typed decode, chain checks); records read."""
    with Timer() as timer:
        scanner = Scanner(path, ChainState())
        count = 0
        for _record in scanner:
            count += 1
    if scanner.problem is not None:
        raise SystemExit(f"benchmark log failed to verify: {scanner.problem}")
    return timer, count


def asup_verify_parallel(path: Path, jobs: int) -> tuple[Timer, int]:
    """`asup log verify`'s whole-log check on `jobs` processes (segments stitched at the seams)."""
    with Timer() as timer:
        result = verify_log(path, jobs, parallel_from=0)
    if result.problem is not None or result.segments < 2:
        raise SystemExit(f"parallel verify did not run clean in segments: {result}")
    return timer, result.records


def naive_verify(path: Path) -> tuple[Timer, int]:
    """The stdlib baseline: json.loads per line of the same file (no digest, no types, no chain)."""
    with Timer() as timer, path.open(encoding="utf-8") as fh:
        count = 0
        for line in fh:
            json.loads(line)
            count += 1
    return timer, count


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the big streaming run ---------------------------------------------------------------


def _status_kb(key: str) -> int | None:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return None


def verify_child(path: Path) -> None:
    """Run in a subprocess by the big run: one verify pass, report JSON on stdout."""
    rss_before = _status_kb("VmRSS")
    with Timer() as timer:
        scanner = Scanner(path, ChainState())
        count = 0
        for _record in scanner:
            count += 1
    out = {
        "records": count,
        "seconds": timer.wall,
        "cpu_seconds": timer.cpu,
        "bytes": path.stat().st_size,
        "problem": None if scanner.problem is None else msgspec.to_builtins(scanner.problem),
        "vm_rss_before_kib": rss_before,
        "vm_hwm_kib": _status_kb("VmHWM"),
        # Linux keeps ru_maxrss across exec, so this includes the forking parent's peak: VmHWM is the one to read
        "ru_maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }
    print(json.dumps(out))


def disk_reference(directory: Path, batch_bytes: int, line_bytes: int, repeats: int) -> dict[str, float]:
    """What the disk alone costs: os.write + os.fsync of one batch's bytes, and of one line (ms)."""
    path = _fresh(directory, "disk.bin")
    out: dict[str, float] = {}
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        for label, size, count in (("batch", batch_bytes, max(repeats, 20)), ("line", line_bytes, max(repeats, 200))):
            payload = b"x" * (size - 1) + b"\n"
            times = []
            for _ in range(count):
                t0 = time.perf_counter()
                os.write(fd, payload)
                os.fsync(fd)
                times.append(time.perf_counter() - t0)
            out[f"{label}_bytes"] = size
            out[f"{label}_write_fsync_ms_median"] = statistics.median(times) * 1e3
    finally:
        os.close(fd)
        path.unlink()
    return out


def code_state() -> dict[str, object]:
    """The commit measured, and whether events/ had uncommitted changes."""
    root = Path(__file__).resolve().parent.parent

    def git(*argv: str) -> str | None:
        try:
            proc = subprocess.run(["git", "-C", str(root), *argv], capture_output=True, text=True, check=False, timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None

    dirty = git("status", "--porcelain", "--", "events")
    return {"commit": git("rev-parse", "--short", "HEAD"), "events_dirty": None if dirty is None else bool(dirty)}


def _drop_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def big_run(directory: Path, work: Workload, target_mb: int, cold: bool) -> dict[str, Any]:
    path = _fresh(directory, "big.jsonl")
    target = target_mb * MIB
    batches = work.batches(POOL, BIG_BATCH)
    events = 0
    _progress(f"big run: writing ~{target_mb} MiB (durability none, batches of {BIG_BATCH:,})")
    with JsonlLog.open(path, log_id=LOG_ID, durability=Durability.NONE, clock=StepClock()) as log, Timer() as timer:
        size = 0
        while size < target:
            batch = batches[(events // BIG_BATCH) % len(batches)]
            log.append_batch(batch)
            events += len(batch)
            size = path.stat().st_size
    write_s = timer.wall
    size = path.stat().st_size
    out: dict[str, Any] = {
        "target_mib": target_mb,
        "bytes": size,
        "events": events,
        "write_seconds": write_s,
        "write_cpu_per_wall": timer.cpu / timer.wall,
        "write_events_per_s": events / write_s,
        "write_gb_per_s": size / 1e9 / write_s,
    }
    runs = [("warm", False)] + ([("cold", True)] if cold else [])
    for label, drop in runs:
        if drop:
            _drop_cache(path)
        _progress(f"big run: verifying {size / 1e9:.2f} GB in a child process ({label} page cache)")
        proc = subprocess.run(
            [sys.executable, str(Path(__file__).resolve()), "--verify-child", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise SystemExit(f"verify child failed ({proc.returncode}): {proc.stderr.strip()}")
        child = json.loads(proc.stdout)
        if child["problem"] is not None or child["records"] != events + 1:
            raise SystemExit(f"big log failed to verify: {child}")
        out[f"verify_{label}"] = {
            **child,
            "events_per_s": child["records"] / child["seconds"],
            "gb_per_s": child["bytes"] / 1e9 / child["seconds"],
        }
    jobs = default_jobs()
    if jobs > 1:
        _progress(f"big run: asup log verify on {jobs} processes (warm page cache)")
        timer, records = asup_verify_parallel(path, jobs)
        out["verify_parallel"] = {"jobs": jobs, "seconds": timer.wall, "records": records, "events_per_s": records / timer.wall}
    out["open"] = open_times(path, batches[0])
    drop_side_files(path)
    path.unlink()
    return out


def _append_then_exit(path: Path, batch: Sequence[Pending]) -> None:
    """Another writer process: one batch, then gone without closing (no writer-index save)."""
    log = JsonlLog.open(path, log_id=LOG_ID, durability=Durability.BATCH, clock=StepClock())
    log.append_batch(batch)
    os._exit(0)


def _timed_open(path: Path) -> float:
    with Timer() as timer:
        JsonlLog.open(path, log_id=LOG_ID, durability=Durability.NONE, clock=StepClock()).close()
    return timer.wall


def open_times(path: Path, batch: Sequence[Pending]) -> dict[str, float]:
    """Seconds to open the big log for append: trusted (head record and writer index current),
    right after another process appended a batch (its head record vouches for it; the index
    lags), and untrusted (no head record: the whole log is verified first)."""
    _progress("big run: open for append (trusted, after another process appended, untrusted)")
    out = {"trusted_s": _timed_open(path)}
    child = multiprocessing.get_context("fork").Process(target=_append_then_exit, args=(path, batch))
    child.start()
    child.join()
    out["after_other_process_s"] = _timed_open(path)
    path.with_name(path.name + ".head.json").unlink()
    out["untrusted_s"] = _timed_open(path)
    return out


# --- profiling -----------------------------------------------------------------------------


def profile(label: str, fn: Callable[[], object], top: int) -> str:
    prof = cProfile.Profile()
    prof.enable()
    fn()
    prof.disable()
    text = io.StringIO()
    for order in ("cumulative", "tottime"):
        text.write(f"\n=== {label}: top {top} by {order} ===\n")
        pstats.Stats(prof, stream=text).strip_dirs().sort_stats(order).print_stats(top)
    return text.getvalue()


# --- report ------------------------------------------------------------------------------

FLOOR_READ_RATIO = 1.3  # verify + typed decode, one process, against naive json.loads
FLOOR_PARALLEL_RATIO = 2.0  # `asup log verify` on every core, against the one-process naive reader
AIM_RATIO = 2.0


class Rates(Protocol):
    @property
    def rates(self) -> list[float]: ...
    @property
    def median(self) -> float: ...


def peer(runs: Rates) -> dict[str, Any]:
    return {"value": runs.median, "runs": runs.rates}


def rate_figure(
    section: str, name: str, asup: Rates, peers: dict[str, dict[str, Any]], floors: list[dict[str, Any]], note: str
) -> dict[str, Any]:
    """One events/s figure of the shared bench JSON (bench/results.py reads it)."""
    return {
        "section": section,
        "name": name,
        "unit": "events/s",
        "higher_is_better": True,
        "value": asup.median,
        "runs": asup.rates,
        "peers": peers,
        "floors": floors,
        "note": note,
    }


def _figure(section: str, name: str, asup: Stat, naive: Stat, floors: list[dict[str, Any]], note: str) -> dict[str, Any]:
    return rate_figure(section, name, asup, {"naive": peer(naive)}, floors, note)


def figures(
    args: argparse.Namespace, appends: dict[Durability, tuple[Stat, Stat]], verify: Stat, naive_v: Stat, parallel: Stat | None, jobs: int
) -> list[dict[str, Any]]:
    """The shared "figures" contract: appends per durability, and the verifying reads."""
    out = []
    for durability, (asup, naive) in appends.items():
        floors = [{"peer": "naive", "min_ratio": FLOOR_RATIO, "aim_ratio": AIM_RATIO}] if durability is Durability.BATCH else []
        fsync = {Durability.NONE: "no fsync", Durability.BATCH: "fsync per batch", Durability.ALWAYS: "fsync per event"}[durability]
        name = f"{args.streams:,} streams, batches of {args.batch:,}, durability {durability}"
        note = f"append_batch of {asup.events:,} events, {fsync}; naive: json.dumps + f.write per event, same fsyncs"
        out.append(_figure("append", name, asup, naive, floors, note))
    read_floor = [{"peer": "naive", "min_ratio": FLOOR_READ_RATIO, "aim_ratio": AIM_RATIO}]
    note = "Scanner: framing, BLAKE3, typed decode, chain checks; naive: json.loads per line; warm page cache"
    out.append(_figure("read", f"verify + typed decode, one process, {args.streams:,} streams", verify, naive_v, read_floor, note))
    if parallel is not None:
        floors = [{"peer": "naive", "min_ratio": FLOOR_PARALLEL_RATIO}]
        note = f"asup log verify's segments on {jobs} processes, pool start-up included; naive: one process"
        out.append(_figure("read", f"asup log verify --jobs {jobs}, {args.streams:,} streams", parallel, naive_v, floors, note))
    return out


@dataclass
class Floor:
    name: str
    value: float
    floor: float
    aim: float | None
    unit: str

    @property
    def passed(self) -> bool:
        return self.value >= self.floor

    def _fmt(self, value: float) -> str:
        return f"{value:,.0f} events/s" if self.unit == "events/s" else f"{value:.2f}x"

    def line(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        aim = ""
        if self.aim is not None:
            aim = f"; aim {self._fmt(self.aim)}: {'met' if self.value >= self.aim else 'NOT met'}"
        return f"  {verdict}  {self.name}: {self._fmt(self.value)}  (floor >= {self._fmt(self.floor)}{aim})"


def _row(label: str, asup: Stat, naive: Stat) -> str:
    ratio = asup.median / naive.median
    return (
        f"  {label:<24}{asup.median:>12,.0f}{asup.mb_per_s:>8.1f}{asup.cpu_share:>6.2f}"
        f"{naive.median:>13,.0f}{naive.mb_per_s:>8.1f}{naive.cpu_share:>6.2f}{ratio:>11.2f}x"
        f"   [{min(asup.rates):,.0f}..{max(asup.rates):,.0f}]"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes, 3 repeats, no big run (a few seconds)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of the table")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a floor fails")
    parser.add_argument("--dir", type=Path, default=None, help="parent of the temporary directory (default: the system temp dir)")
    parser.add_argument("--big-mb", type=int, default=1024, help="size of the streaming run in MiB (0 skips it; default 1024)")
    parser.add_argument("--cold", action="store_true", help="big run: also verify after dropping the file from the page cache")
    parser.add_argument("--events", type=int, default=100_000, help="events per small run (durability none/batch)")
    parser.add_argument("--always-events", type=int, default=2_000, help="events per run with durability always (fsync per record)")
    parser.add_argument("--batch", type=int, default=1_000, help="events per append_batch call")
    parser.add_argument(
        "--streams", type=int, default=1000, help="streams the events are spread over (default 1,000: one event per stream per batch)"
    )
    parser.add_argument("--repeats", type=int, default=5, help="runs per measurement; the median is reported")
    parser.add_argument("--seed", type=int, default=20260528)
    parser.add_argument("--rich", action="store_true", help="fill every telemetry field (data ~350 B instead of ~320 B)")
    parser.add_argument("--profile", action="store_true", help="cProfile one append (batch) and one verify pass")
    parser.add_argument("--verify-child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.verify_child is not None:
        verify_child(args.verify_child)
        return 0
    if args.quick:
        args.events, args.always_events, args.repeats, args.big_mb = 10_000, 200, 3, 0

    if min(args.events, args.always_events, args.batch, args.streams, args.repeats) < 1:
        parser.error("--events, --always-events, --batch, --streams and --repeats must be >= 1")
    parent = args.dir or Path(tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="asup-bench-", dir=parent))
    try:
        return run(args, directory)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def measure_appends(args: argparse.Namespace, directory: Path, work: Workload, verify_file: Path) -> dict[Durability, tuple[Stat, Stat]]:
    """Append timings per durability (asup, naive); the durability-none log is kept as `verify_file`."""
    appends: dict[Durability, tuple[Stat, Stat]] = {}
    for durability in (Durability.NONE, Durability.BATCH, Durability.ALWAYS):
        n = args.always_events if durability is Durability.ALWAYS else args.events
        batches = work.batches(n, args.batch)
        asup, naive = Stat(n), Stat(n)
        _progress(f"append, durability {durability}: {n:,} events x {args.repeats} runs (asup, naive)")
        asup_append(_fresh(directory, "warmup.jsonl"), batches[:2], durability)  # imports, caches
        for _ in range(args.repeats):
            path = _fresh(directory, "asup.jsonl")
            asup.add(asup_append(path, batches, durability))
            asup.nbytes = path.stat().st_size
            naive_path = _fresh(directory, "naive.jsonl")
            naive.add(naive_append(naive_path, work, batches, durability))
            naive.nbytes = naive_path.stat().st_size
        if durability is Durability.NONE:
            path.replace(verify_file)
            naive_path.replace(directory / "verify-naive.jsonl")
        appends[durability] = (asup, naive)
    return appends


def measure_verify(args: argparse.Namespace, verify_file: Path, size: int) -> tuple[Stat, Stat, Stat | None, int]:
    """Verify timings: asup's one-process scan, the naive reader, and asup on every usable core (None on one)."""
    _progress(f"verify: {args.events + 1:,} records x {args.repeats} runs (asup Scanner, naive json.loads)")
    verify, naive_v = Stat(args.events + 1, nbytes=size), Stat(args.events + 1, nbytes=size)
    asup_verify(verify_file)  # warm the page cache and imports
    for _ in range(args.repeats):
        timer, count = asup_verify(verify_file)
        assert count == args.events + 1, count
        verify.add(timer)
        timer, count = naive_verify(verify_file)
        naive_v.add(timer)

    jobs = default_jobs()
    parallel: Stat | None = None
    if jobs > 1:
        _progress(f"verify on {jobs} processes: {args.events + 1:,} records x {args.repeats} runs")
        parallel = Stat(args.events + 1, nbytes=size)
        for _ in range(args.repeats):
            timer, count = asup_verify_parallel(verify_file, jobs)
            assert count == args.events + 1, count
            parallel.add(timer)
    return verify, naive_v, parallel, jobs


def run(args: argparse.Namespace, directory: Path) -> int:
    info = machine.describe(directory)
    load_before = os.getloadavg()
    work = make_workload(args.streams, args.seed, args.rich)
    verify_file = directory / "verify.jsonl"
    appends = measure_appends(args, directory, work, verify_file)

    header = verify_file.read_bytes().split(b"\n", 1)[0]
    size = verify_file.stat().st_size
    line_bytes = (size - len(header) - 1) / args.events
    naive_line_bytes = (directory / "verify-naive.jsonl").stat().st_size / args.events

    verify, naive_v, parallel, jobs = measure_verify(args, verify_file, size)

    _progress("disk reference: write + fsync of one batch's bytes, and of one line")
    disk = disk_reference(directory, round(line_bytes * args.batch), round(line_bytes), args.repeats)

    profiles = ""
    if args.profile:
        batches = work.batches(args.events, args.batch)
        profiles += profile(
            f"append_batch, durability batch, {args.events:,} events",
            lambda: asup_append(_fresh(directory, "profile.jsonl"), batches, Durability.BATCH),
            25,
        )
        profiles += profile(f"verify (Scanner), {args.events + 1:,} records", lambda: asup_verify(verify_file), 25)

    big: dict[str, Any] | None = None
    if args.big_mb > 0:
        free = shutil.disk_usage(directory).free
        if free < args.big_mb * MIB * 1.2:
            big = {"skipped": f"only {free / MIB:,.0f} MiB free under {directory}"}
        else:
            big = big_run(directory, work, args.big_mb, args.cold)

    a_batch, n_batch = appends[Durability.BATCH]
    floors = [
        Floor(f"append, durability batch, batches of {args.batch:,}", a_batch.median, FLOOR_APPEND, AIM_APPEND, "events/s"),
        Floor("verify + typed decode", verify.median, FLOOR_VERIFY, AIM_VERIFY, "events/s"),
        Floor("append (batch) vs naive", a_batch.median / n_batch.median, FLOOR_RATIO, None, "x"),
        Floor("verify vs naive", verify.median / naive_v.median, FLOOR_RATIO, None, "x"),
    ]
    passed = all(f.passed for f in floors)
    full_size = args.batch == 1000 and not args.quick
    note = "" if full_size else "floors are defined for full-size runs in batches of 1,000; this run is not one"
    context = {
        "code": code_state(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }

    if args.json:
        doc = {
            "schema": SCHEMA,
            "statistic": f"median of {args.repeats} runs",
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "verify_child"},
            "machine": info,
            "context": context,
            "workload": {
                "event_type": "transition",
                "streams": args.streams,
                "batch": args.batch,
                "events": args.events,
                "always_events": args.always_events,
                "mean_line_bytes": line_bytes,
                "mean_data_bytes": work.data_bytes,
                "naive_mean_line_bytes": naive_line_bytes,
            },
            "append": {str(d): {"asup": a.to_json(), "naive": n.to_json(), "ratio": a.median / n.median} for d, (a, n) in appends.items()},
            "verify": {"asup": verify.to_json(), "naive": naive_v.to_json(), "ratio": verify.median / naive_v.median},
            "verify_parallel": None
            if parallel is None
            else {"jobs": jobs, "asup": parallel.to_json(), "ratio_to_naive": parallel.median / naive_v.median},
            "disk": disk,
            "big": big,
            "floors": [{**asdict(f), "pass": f.passed, "aim_met": None if f.aim is None else f.value >= f.aim} for f in floors],
            "pass": passed,
            "note": note,
            "figures": figures(args, appends, verify, naive_v, parallel, jobs),
        }
        print(json.dumps(doc, indent=2))
        if profiles:
            print(profiles, file=sys.stderr)
    else:
        report = Report(
            args, info, context, work, appends, verify, naive_v, parallel, jobs, line_bytes, naive_line_bytes, disk, big, floors, note
        )
        report.show()
        if profiles:
            print(profiles)
    return 1 if args.strict and not passed else 0


@dataclass
class Report:
    args: argparse.Namespace
    info: dict[str, object]
    context: dict[str, Any]
    work: Workload
    appends: dict[Durability, tuple[Stat, Stat]]
    verify: Stat
    naive_v: Stat
    parallel: Stat | None
    jobs: int
    line_bytes: float
    naive_line_bytes: float
    disk: dict[str, float]
    big: dict[str, Any] | None
    floors: list[Floor]
    note: str

    def show(self) -> None:
        args = self.args
        print("asup JSONL log benchmark" + ("  [--quick]" if args.quick else ""))
        print()
        for line in machine.summary_lines(self.info):
            print("  " + line)
        code = self.context["code"]
        print(
            f"  Code     commit {code['commit']}, events/ {'with uncommitted changes' if code['events_dirty'] else 'clean'}; "
            f"load average {self.context['loadavg_before'][0]} before, {self.context['loadavg_after'][0]} after"
        )
        print()
        print(
            f"Workload: Transition events over {args.streams} streams, append_batch of {args.batch:,} Pending items; "
            f"StepClock, seed {args.seed}."
        )
        print(
            f"  mean line {self.line_bytes:.1f} B (its `data` object {self.work.data_bytes:.1f} B, the envelope and digests the rest); "
            f"naive json.dumps line {self.naive_line_bytes:.1f} B"
        )
        print(
            f"  each number is the MEDIAN of {args.repeats} runs; [min..max] of the asup runs follows each row; "
            "cpu = process CPU time / wall time (median)"
        )
        print()
        head = f"{'asup ev/s':>12}{'MiB/s':>8}{'cpu':>6}{'naive ev/s':>13}{'MiB/s':>8}{'cpu':>6}{'asup/naive':>12}"
        print(f"  {'append':<24}{head}")
        for durability, (asup, naive) in self.appends.items():
            print(_row(f"{durability} ({asup.events:,} ev)", asup, naive))
        print(f"  (always: {args.always_events:,} events per run, one fsync per record; naive: fsync per event / per batch likewise)")
        print()
        print(f"  {'verify + typed decode':<24}{head}")
        print(_row(f"full scan ({self.verify.events:,} rec)", self.verify, self.naive_v))
        if self.parallel is not None:
            print(_row(f"{self.jobs} processes", self.parallel, self.naive_v))
        print("  (asup: Scanner = framing + BLAKE3 + msgspec typed decode + chain checks; naive: json.loads per line; warm page cache)")
        if self.parallel is not None:
            print(
                f"  ({self.jobs} processes: `asup log verify`'s segments stitched at the seams, pool start-up included; "
                "the floors are judged on the one-process scan, against the one-process naive baseline)"
            )
        print()
        d = self.disk
        print(
            f"Disk alone (median): write+fsync of {d['batch_bytes'] / 1e3:,.0f} kB (one batch) {d['batch_write_fsync_ms_median']:.2f} ms "
            f"= {d['batch_write_fsync_ms_median'] * 1e3 / args.batch:.2f} us/event; "
            f"of {d['line_bytes']:,.0f} B (one line) {d['line_write_fsync_ms_median']:.3f} ms "
            f"= at most {1e3 / d['line_write_fsync_ms_median']:,.0f} events/s with durability always"
        )
        print()
        self._print_big()
        print()
        print("Floors (from the issue; medians above):")
        for f in self.floors:
            print(f.line())
        verdict = "ALL FLOORS PASS" if all(f.passed for f in self.floors) else "SOME FLOORS FAIL"
        print(f"  => {verdict}" + (f"  ({self.note})" if self.note else ""))

    def _print_big(self) -> None:
        big = self.big
        if big is None:
            print("Big streaming run: skipped (--big-mb 0)")
            return
        if "skipped" in big:
            print(f"Big streaming run: skipped ({big['skipped']})")
            return
        print(
            f"Big streaming run: {big['bytes'] / 1e9:.3f} GB, {big['events']:,} events "
            f"(durability none, batches of {BIG_BATCH:,}), one run each"
        )
        print(
            f"  write   {big['write_gb_per_s']:.3f} GB/s  {big['write_events_per_s']:>10,.0f} events/s  "
            f"({big['write_seconds']:.1f} s, cpu {big['write_cpu_per_wall']:.2f})"
        )
        for label in ("warm", "cold"):
            v = big.get(f"verify_{label}")
            if v is None:
                continue
            print(
                f"  verify  {v['gb_per_s']:.3f} GB/s  {v['events_per_s']:>10,.0f} events/s  ({v['seconds']:.1f} s, "
                f"cpu {v['cpu_seconds'] / v['seconds']:.2f}, {label} page cache, child process)"
            )
            print(
                f"          peak RSS {v['vm_hwm_kib'] / 1024:.1f} MiB (VmHWM of the child; {v['vm_rss_before_kib'] / 1024:.1f} MiB "
                "after imports, before the scan)"
            )
        par = big.get("verify_parallel")
        if par is not None:
            print(
                f"  verify  {big['bytes'] / 1e9 / par['seconds']:.3f} GB/s  {par['events_per_s']:>10,.0f} events/s  "
                f"({par['seconds']:.1f} s, asup log verify on {par['jobs']} processes)"
            )
        opened = big.get("open")
        if opened is not None:
            print(
                f"  open for append: {opened['trusted_s'] * 1e3:.1f} ms trusted, {opened['after_other_process_s'] * 1e3:.1f} ms "
                f"right after another process appended, {opened['untrusted_s']:.2f} s with no head record (full verify)"
            )


if __name__ == "__main__":
    sys.exit(main())
