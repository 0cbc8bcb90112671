"""The performance gate: real adapter runs, the optimisation lever off (baseline) and on
(candidate) interleaved in one process — A B, B A, ... — and compared pair by pair.

Statistics, all reported:
- stable window: the first `warmup` pairs are dropped;
- outliers: within each variant, a sample above median + 5 x MAD is left out of the
  percentiles (counted and listed), never out of the pairs;
- percentiles: exact, linear interpolation (type 7); p99 only from >= 100 samples;
- verdict: the median of the paired ratios (candidate / baseline) of latency and of peak
  memory, each with a seeded bootstrap 95 % interval, must not exceed 1 + threshold (the
  reference's 5 % tail-regression threshold).
Time comes from an injectable `measure`, so tests drive the gate without a real clock.
"""

from __future__ import annotations

import os
import platform
import random
import statistics
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from engine.adapter import SyncAdapter
from engine.appender import DirectAppender
from engine.faults import FaultyTarget, parse_plan
from engine.intent import build_intent
from engine.machine import make_dispatcher
from engine.stores import DirectoryStore
from events.clock import StepClock
from events.errors import AsupError, ErrorCode
from events.memory_log import MemoryLog
from events.vocabulary import Mode, State
from projections.base import percentile
from runbook.gates.report import GateReport

Measure = Callable[[str, Callable[[], None]], float]  # (variant, work) -> elapsed ms
THRESHOLD = 0.05
CHUNK = 16 * 1024


def machine() -> dict[str, Any]:
    """What a stored baseline is only valid on: CPU model, cores, memory, OS and Python."""
    cpu = next((line.split(":", 1)[1].strip() for line in _read("/proc/cpuinfo").splitlines() if line.startswith("model name")), "unknown")
    memory = next((line.split()[1] for line in _read("/proc/meminfo").splitlines() if line.startswith("MemTotal")), "0")
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_kib": int(memory),
        "system": platform.platform(),
        "python": platform.python_version(),
    }


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def compare_stored(report: GateReport, stored: dict[str, Any], threshold: float) -> None:
    """A baseline recorded earlier is compared only on the machine that recorded it."""
    here = machine()
    if stored.get("machine") != here:
        report.measurements["stored_baseline"] = {
            "compared": False,
            "reason": "recorded on another machine",
            "recorded_on": stored.get("machine"),
        }
        return
    now = report.measurements.get("latency_ms", {}).get("candidate", {}).get("p50")
    then = stored.get("latency_ms_p50")
    report.measurements["stored_baseline"] = {"compared": True, "p50_now": now, "p50_stored": then}
    if isinstance(now, float) and isinstance(then, float):
        report.check("latency_ms/p50_vs_stored_baseline", now <= then * (1 + threshold), f"{now:.3f} ms now vs {then:.3f} ms stored")


def stored_document(report: GateReport) -> dict[str, Any]:
    latency = report.measurements.get("latency_ms", {}).get("candidate", {})
    memory = report.measurements.get("peak_memory_kib", {}).get("candidate", {})
    return {
        "schema_version": "1.0.0",
        "machine": machine(),
        "latency_ms_p50": latency.get("p50"),
        "latency_ms_p95": latency.get("p95"),
        "peak_memory_kib_p50": memory.get("p50"),
    }


def wall_clock(variant: str, work: Callable[[], None]) -> float:
    start = time.perf_counter()
    work()
    return (time.perf_counter() - start) * 1000


def run(
    *,
    pairs: int = 110,
    warmup: int = 10,
    size: int = 256 * 1024,
    threshold: float = THRESHOLD,
    measure: Measure = wall_clock,
    seed: int = 7,
) -> GateReport:
    report = GateReport("performance")
    with tempfile.TemporaryDirectory(prefix="asup-perf-gate-") as tmp:
        work = Path(tmp)
        (work / "src").mkdir()
        (work / "src" / "artifact.bin").write_bytes(random.Random(seed).randbytes(size))
        samples: dict[str, list[tuple[float, float]]] = {"baseline": [], "candidate": []}
        for index in range(pairs):
            order = ("baseline", "candidate") if index % 2 == 0 else ("candidate", "baseline")
            for variant in order:
                samples[variant].append(_one(work, f"{index}-{variant}", variant, measure, seed))
    _judge(report, samples, warmup, threshold, seed)
    report.measurements["machine"] = machine()
    return report


def _one(work: Path, name: str, variant: str, measure: Measure, seed: int) -> tuple[float, float]:
    source = DirectoryStore(work / "src")
    target = DirectoryStore(work / "dst" / name)
    intent = build_intent(
        source,
        "artifact.bin",
        "artifact.out",
        artifact_class="conformance_fixture_bundle",
        mode=Mode.STRICT,
        seed=seed,
        chunk_size=CHUNK,
        transfer_id=f"perf-{name}",
    )
    states: list[State] = []

    def transfer() -> None:
        adapter = SyncAdapter(
            appender=DirectAppender(MemoryLog("perf", clock=StepClock())),
            source=source,
            target=FaultyTarget(target, parse_plan(""), CHUNK),
            dispatcher=make_dispatcher(variant == "candidate"),
            clock=StepClock(),
        )
        states.append(anyio.run(adapter.run, intent).state)

    tracemalloc.start()
    elapsed = measure(variant, transfer)
    peak = tracemalloc.get_traced_memory()[1] / 1024
    tracemalloc.stop()
    if states != [State.COMPLETED]:
        ended = ", ".join(states) or "never ran"
        raise AsupError(ErrorCode.GATE_FAILED, f"performance run {name} did not complete ({ended}): the gate cannot measure it")
    return elapsed, peak


def _stats(values: list[float]) -> dict[str, Any]:
    ordered = sorted(values)
    median = statistics.median(ordered)
    mad = statistics.median(abs(v - median) for v in ordered) or 1e-12
    kept = [v for v in ordered if v <= median + 5 * mad]
    return {
        "samples": len(ordered),
        "outliers_excluded": len(ordered) - len(kept),
        "outlier_policy": "above median + 5 x MAD, per variant",
        "p50": percentile(kept, 50),
        "p95": percentile(kept, 95),
        "p99": percentile(kept, 99) if len(kept) >= 100 else None,
        "p99_note": "" if len(kept) >= 100 else f"p99 needs >= 100 samples, have {len(kept)}",
        "mean": statistics.fmean(kept),
    }


def _bootstrap(ratios: list[float], seed: int, rounds: int = 1000) -> tuple[float, float]:
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(ratios, k=len(ratios))) for _ in range(rounds))
    return percentile(medians, 2.5), percentile(medians, 97.5)


def _judge(report: GateReport, samples: dict[str, list[tuple[float, float]]], warmup: int, threshold: float, seed: int) -> None:
    base, cand = samples["baseline"][warmup:], samples["candidate"][warmup:]
    report.check("stable_window_has_samples", len(base) >= 10 and len(base) == len(cand), f"{len(base)} pairs after {warmup} warm-up pairs")
    if not base or len(base) != len(cand):
        return
    for index, metric in enumerate(("latency_ms", "peak_memory_kib")):
        b, c = [s[index] for s in base], [s[index] for s in cand]
        ratios = [cv / bv if bv else 1.0 for bv, cv in zip(b, c, strict=True)]
        median = statistics.median(ratios)
        low, high = _bootstrap(ratios, seed)
        report.measurements[metric] = {
            "baseline": _stats(b),
            "candidate": _stats(c),
            "paired_ratio_median": median,
            "paired_ratio_ci95": [low, high],
            "threshold": 1 + threshold,
        }
        report.check(
            f"{metric}/median_paired_ratio",
            median <= 1 + threshold,
            f"candidate/baseline median {median:.4f} (95% CI {low:.4f}..{high:.4f}) vs limit {1 + threshold:.2f}",
        )
    report.measurements["pairs"] = len(base)
    report.measurements["order"] = "interleaved: A B, B A, ... (A = lever off, B = lever on)"
