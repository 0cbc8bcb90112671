"""`asup sync` of one large file with its expected checksum given, CLI start-up included,
against the physical limit of the job measured in the same run: `cp SRC DST`, an fsync of
the copy, then one BLAKE3 pass of the copy (mmap, `max_threads=blake3.AUTO` as asup
hashes). Floors: within 2x of the limit at 512 MiB, within 1.6x at 2 GiB.

The source is seeded random bytes; runs alternate (limit, asup, limit, asup, ...) and each
figure is the median of `--repeats` runs. The page cache cannot be dropped here: every run
reads a warm source (so does the limit).

    python bench/sync_bench.py [--dir DIR] [--repeats 3] [--quick | --large] [--json]
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from blake3 import blake3

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe, summary_lines

MIB = 1 << 20
ASUP = Path(sys.executable).with_name("asup")
PEER = "cp + fsync + BLAKE3"
FLOORS = {512 * MIB: 0.5, 2048 * MIB: 0.625}  # min speed ratio (limit time / asup time) per size


def make_source(path: Path, size: int, seed: int = 15) -> str:
    """`size` seeded random bytes at `path`; its `blake3:` digest."""
    rng = random.Random(seed)
    hasher = blake3()
    with path.open("wb") as fh:
        left = size
        while left:
            block = rng.randbytes(min(left, 16 * MIB))
            fh.write(block)
            hasher.update(block)
            left -= len(block)
    return "blake3:" + hasher.hexdigest()


def limit_run(src: Path, work: Path) -> float:
    """cp, fsync of the copy, one BLAKE3 pass of the copy (mmap, every core): seconds."""
    dst = work / "limit.bin"
    start = time.perf_counter()
    subprocess.run(["cp", str(src), str(dst)], check=True)
    fd = os.open(dst, os.O_RDONLY)
    try:
        os.fsync(fd)
        with mmap.mmap(fd, 0, access=mmap.ACCESS_READ) as view:
            blake3(view, max_threads=blake3.AUTO).hexdigest()
    finally:
        os.close(fd)
    elapsed = time.perf_counter() - start
    dst.unlink()
    return elapsed


def asup_run(src: Path, work: Path, checksum: str) -> float:
    """`asup sync SRC DST --expected-checksum ...` as a subprocess, start-up included: seconds."""
    root = work / "root"
    dst = work / "out" / "copy.bin"
    argv = [str(ASUP), "sync", str(src), str(dst), "--artifact-class", "conformance_fixture_bundle", "--mode", "strict"]
    argv += ["--expected-checksum", checksum, "--root", str(root), "--json"]
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False, env=_installed_env())
    elapsed = time.perf_counter() - start
    if done.returncode != 0 or json.loads(done.stdout)["state"] != "completed":
        raise SystemExit(f"asup sync failed ({done.returncode}): {done.stdout}{done.stderr}")
    shutil.rmtree(root)
    shutil.rmtree(dst.parent)
    return elapsed


def _installed_env() -> dict[str, str]:
    """The environment asup runs in as installed: bytecode cached (pip compiles it at
    install), so start-up is not a compile of every module each run."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def warm_up() -> None:
    """One `asup --version` first: its bytecode is cached before any run is timed."""
    subprocess.run([str(ASUP), "--version"], capture_output=True, check=True, env=_installed_env())


def measure(size: int, work: Path, repeats: int) -> dict[str, Any]:
    src = work / "source.bin"
    _progress(f"writing {size // MIB} MiB of seeded random bytes")
    checksum = make_source(src, size)
    asup: list[float] = []
    limit: list[float] = []
    for i in range(repeats):
        _progress(f"{size // MIB} MiB round {i + 1}/{repeats}")
        limit.append(limit_run(src, work))
        asup.append(asup_run(src, work, checksum))
    src.unlink()
    return _figure(size, asup, limit)


def _figure(size: int, asup: list[float], limit: list[float]) -> dict[str, Any]:
    floor = FLOORS.get(size)
    return {
        "section": "sync",
        "name": f"asup sync of {size // MIB} MiB, expected checksum given, CLI start-up included",
        "unit": "s",
        "higher_is_better": False,
        "value": statistics.median(asup),
        "runs": asup,
        "peers": {PEER: {"value": statistics.median(limit), "runs": limit}},
        "floors": [{"peer": PEER, "min_ratio": floor}] if floor else [],
        "note": "warm page cache (cannot be dropped here), bytecode cached; limit: cp, os.fsync, BLAKE3 over mmap, max_threads=AUTO",
    }


def check_disk(work: Path, size: int) -> None:
    """Source, asup's copy and the limit's copy at once, with a margin."""
    free = shutil.disk_usage(work).free
    if free < 3 * size + 256 * MIB:
        raise SystemExit(f"not enough free disk in {work}: {free // MIB} MiB free, {(3 * size + 256 * MIB) // MIB} MiB needed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=None, help="where the files go (default: a temp dir)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="64 MiB only")
    parser.add_argument("--large", action="store_true", help="512 MiB and 2 GiB")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    sizes = [64 * MIB] if args.quick else [512 * MIB, 2048 * MIB] if args.large else [512 * MIB]
    base = args.dir or Path(tempfile.gettempdir())
    base.mkdir(parents=True, exist_ok=True)
    check_disk(base, max(sizes))
    work = Path(tempfile.mkdtemp(prefix="sync-bench-", dir=base))
    try:
        warm_up()
        figures = [measure(size, work, max(1, args.repeats)) for size in sizes]
        machine = describe(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        print(json.dumps({"machine": machine, "figures": figures}, indent=2))
        return
    for line in summary_lines(machine):
        print(line)
    for fig in figures:
        peer = fig["peers"][PEER]["value"]
        print(f"{fig['name']}: {fig['value']:.2f} s; {PEER}: {peer:.2f} s; asup takes {fig['value'] / peer:.2f}x the limit")


def _progress(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


if __name__ == "__main__":
    main()
