"""Sidecar size on disk: an 8+4 sidecar (manifest + 12 fragment files) next to its pack, for
packs of 1 MiB and 64 MiB and for the small pack the readiness drill protects (its evidence
pack, about 7 KB: the committed golden one when run from the repository). DESIGN asks for at
most 1.6x at 1 MiB and above; the small pack pays the fixed costs (fragment headers and
trailers, the manifest) on few bytes.

Rates of a 64 MiB pack, against pyeclib measured in the same run, interleaved, medians of
`--repeats`: encode (asup: encode + `write_sidecar`; peer: pyeclib encode in memory, each
fragment written to its own file and fsynced, then the directory fsynced; each side's
previous output removed first, untimed: `free_previous`) and decode (asup:
`read_sidecar` + decode of fragments 4..11; peer: read those fragment files + pyeclib
decode). Floors: within 2x of each peer; on disk <= 1.6x the pack.

    python bench/sidecar_bench.py [--repeats 3] [--json]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
from pyeclib.ec_iface import ECDriver

from engine import durability
from engine.sidecar_write import write_sidecar

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import describe

GOLDEN_PACK = Path(__file__).resolve().parent.parent / "tests/golden/root/asupersync/v1/asupersync_final_evidence_pack_v1.json"
LIMIT = 1.6


def ratio(work: Path, name: str, data: bytes) -> dict[str, float | int | str]:
    pack = work / name
    pack.write_bytes(data)
    write_sidecar(durability.sidecar_path(pack), durability.encode(pack, k=8, m=4))
    files = durability.sidecar_files(pack)
    on_disk = sum(p.stat().st_size for p in files)
    manifest = files[0].stat().st_size
    return {
        "pack": name,
        "pack_bytes": len(data),
        "sidecar_bytes": on_disk,
        "manifest_bytes": manifest,
        "files": len(files),
        "ratio": on_disk / len(data),
    }


RATE_MB = 64
ENCODE_PEER = "pyeclib + durable write"
DECODE_PEER = "read fragments + pyeclib"
ENCODE_NOTE = "encode + write_sidecar (fragment files fsynced, published); each side's previous output freed first, untimed"


def peer_encode(work: Path, data: bytes) -> float:
    """pyeclib encode in memory, each fragment to its own file, fsync each, fsync the dir: seconds."""
    out = work / "peer"
    out.mkdir(exist_ok=True)
    free_previous(out.glob("f.*"))
    start = time.perf_counter()
    fragments = ECDriver(k=8, m=4, ec_type="isa_l_rs_vand").encode(data)
    for i, fragment in enumerate(fragments):
        fd = os.open(out / f"f.{i:02d}", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, fragment)
            os.fsync(fd)
        finally:
            os.close(fd)
    dir_fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    os.fsync(dir_fd)
    os.close(dir_fd)
    return time.perf_counter() - start


def free_previous(files: Iterable[Path]) -> None:
    """Remove the previous round's output before a timed write (not timed): each side then
    writes into pages just freed. Kept, the sidecar asup moves aside (by design) holds its
    pages while the peer's O_TRUNC frees its own, and on this VM writing into fresh pages
    runs at ~300 MB/s against ~2 GB/s into recycled ones: that measured the page allocator,
    not the work (0.39x then; the same write loop alone shows it, old files kept or not)."""
    for path in files:
        path.unlink()


def peer_decode(work: Path) -> float:
    """Read fragment files 4..11 and pyeclib-decode them: seconds."""
    start = time.perf_counter()
    fragments = [(work / "peer" / f"f.{i:02d}").read_bytes() for i in range(4, 12)]
    ECDriver(k=8, m=4, ec_type="isa_l_rs_vand").decode(fragments)
    return time.perf_counter() - start


def asup_encode(pack: Path) -> float:
    free_previous(pack.parent.glob(f"{pack.name}*.superseded-*"))
    start = time.perf_counter()
    write_sidecar(durability.sidecar_path(pack), durability.encode(pack, k=8, m=4))
    return time.perf_counter() - start


def asup_decode(pack: Path) -> float:
    start = time.perf_counter()
    durability.decode(durability.read_sidecar(durability.sidecar_path(pack)), list(range(4, 12)))
    return time.perf_counter() - start


def rate_figures(work: Path, repeats: int) -> list[dict[str, Any]]:
    data = os.urandom(RATE_MB << 20)
    pack = work / "pack_rates.bin"
    pack.write_bytes(data)
    runs: dict[str, list[float]] = {"enc": [], "peer_enc": [], "dec": [], "peer_dec": []}
    for i in range(repeats):
        print(f"rates round {i + 1}/{repeats}", file=sys.stderr, flush=True)
        runs["peer_enc"].append(RATE_MB / peer_encode(work, data))
        runs["enc"].append(RATE_MB / asup_encode(pack))
        runs["peer_dec"].append(RATE_MB / peer_decode(work))
        runs["dec"].append(RATE_MB / asup_decode(pack))
    return [
        _rate("encode", runs["enc"], ENCODE_PEER, runs["peer_enc"], ENCODE_NOTE),
        _rate("decode", runs["dec"], DECODE_PEER, runs["peer_dec"], "read_sidecar (every fragment verified) + decode of fragments 4..11"),
    ]


def _rate(what: str, ours: list[float], peer: str, theirs: list[float], note: str) -> dict[str, Any]:
    return {
        "section": "sidecar",
        "name": f"{what} of a {RATE_MB} MiB pack, 8+4 isa_l_rs_vand",
        "unit": "MB/s",
        "higher_is_better": True,
        "value": statistics.median(ours),
        "runs": ours,
        "peers": {peer: {"value": statistics.median(theirs), "runs": theirs}},
        "floors": [{"peer": peer, "min_ratio": 0.5}],
        "note": note + " (MB = MiB)",
    }


def size_figure(row: dict[str, float | int | str]) -> dict[str, Any]:
    return {
        "section": "sidecar",
        "name": f"sidecar on disk, {int(row['pack_bytes']) >> 20} MiB pack, 8+4",
        "unit": "x",
        "higher_is_better": False,
        "value": float(row["ratio"]),
        "runs": [float(row["ratio"])],
        "peers": {},
        "floors": [{"max": LIMIT}],
        "note": f"manifest + {int(row['files']) - 1} fragment files over the pack's bytes",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    small = GOLDEN_PACK.read_bytes() if GOLDEN_PACK.exists() else os.urandom(6986)
    work = Path(tempfile.mkdtemp(prefix="asup-sidecar-bench-"))
    try:
        rows = [
            ratio(work, "drill_pack.json", small),
            ratio(work, "pack_1mib.bin", os.urandom(1 << 20)),
            ratio(work, "pack_64mib.bin", os.urandom(64 << 20)),
        ]
        figures = [size_figure(rows[2]), *rate_figures(work, max(1, args.repeats))]
        machine = describe(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        report = {"machine": machine, "figures": figures, "sizes": rows}
        sys.stdout.buffer.write(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE))
        return
    print("== sidecar size on disk (8+4, isa_l_rs_vand) ==")
    for row in rows:
        big = int(row["pack_bytes"]) >= 1 << 20
        verdict = f" (target <= {LIMIT}x: {'PASS' if float(row['ratio']) <= LIMIT else 'FAIL'})" if big else " (fixed costs dominate)"
        print(
            f"{row['pack']}: pack {int(row['pack_bytes']):,} B, sidecar {int(row['sidecar_bytes']):,} B in {row['files']} files "
            f"(manifest {int(row['manifest_bytes']):,} B): {float(row['ratio']):.4f}x{verdict}"
        )
    for fig in figures[1:]:
        ((peer, theirs),) = fig["peers"].items()
        ratio_ = fig["value"] / theirs["value"]
        print(f"{fig['name']}: {fig['value']:.0f} MB/s; {peer}: {theirs['value']:.0f} MB/s; ratio {ratio_:.2f} (floor 0.5)")


if __name__ == "__main__":
    main()
