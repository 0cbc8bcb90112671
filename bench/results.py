"""Run every bench that emits figures and write bench/RESULTS.md from them.

    python bench/results.py              # each script in turn with --json; writes bench/RESULTS.md
    python bench/results.py --quick      # passes --quick to the scripts that take it
    python bench/results.py --strict     # exit 1 when a floor fails or none was checked

`make bench` runs this in .venv-bench (where the peers are installed). A script that is
missing, or whose source never mentions "figures", is skipped with a line saying so; one
that fails or prints no figures is reported and skipped. The page is deterministic for a
given set of figures: no dates, fixed section and script order, fixed number formats.
Ratios are asup's speed over the peer's (> 1: asup faster; for times, peer / asup).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
SCRIPTS = (
    "peers_bench.py",
    "log_bench.py",
    "engine_bench.py",
    "replay_bench.py",
    "sidecar_bench.py",
    "tail_bench.py",
    "sync_bench.py",
    "scaling_bench.py",
    "console_bench.py",
)
SECTIONS = ("append", "read", "replay", "sync", "engine", "sidecar", "tail", "memory", "scaling", "console")
LIBRARIES = ("msgspec", "blake3", "orjson", "pyeclib", "transitions", "eventsourcing")
TIME_UNITS = ("s", "ms")


# --- collecting ------------------------------------------------------------------------------


def emits_figures(script: Path) -> bool:
    return '"figures"' in script.read_text(encoding="utf-8")


def takes_quick(script: Path) -> bool:
    return '"--quick"' in script.read_text(encoding="utf-8")


def run_script(script: Path, quick: bool) -> dict[str, Any] | str:
    """The script's JSON document, or why there is none."""
    argv = [sys.executable, str(script), "--json", *(["--quick"] if quick and takes_quick(script) else [])]
    _progress("running " + " ".join([script.name, *argv[3:]]))
    proc = subprocess.run(argv, stdout=subprocess.PIPE, stderr=None, text=True, check=False)
    if proc.returncode != 0:
        return f"exited {proc.returncode}"
    try:
        doc = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return "printed no JSON document"
    if not isinstance(doc, dict) or not isinstance(doc.get("figures"), list):
        return 'printed no "figures"'
    return doc


def collect(bench: Path, scripts: Sequence[str], quick: bool) -> tuple[list[dict[str, Any]], list[str], dict[str, Any]]:
    """Figures of every script (each tagged with its script), skip lines, and the first machine seen."""
    figures: list[dict[str, Any]] = []
    skipped: list[str] = []
    machine: dict[str, Any] = {}
    for name in scripts:
        script = bench / name
        doc: dict[str, Any] | str
        if not script.exists():
            doc = "not present"
        elif not emits_figures(script):
            doc = "emits no figures yet"
        else:
            doc = run_script(script, quick)
        if isinstance(doc, str):
            skipped.append(f"{name}: {doc}")
            _progress("skipped " + skipped[-1])
            continue
        machine = machine or dict(doc.get("machine") or {})
        figures.extend({**fig, "script": name} for fig in doc["figures"])
    return figures, skipped, machine


# --- ratios and floors --------------------------------------------------------------------------


def speed_ratio(figure: dict[str, Any], peer_value: float) -> float | None:
    """asup's speed over the peer's: > 1 means asup is faster (or smaller, when lower is better)."""
    value = float(figure["value"])
    if figure.get("higher_is_better", True):
        return value / peer_value if peer_value else None
    return peer_value / value if value else None


def judge(figure: dict[str, Any], floor: dict[str, Any]) -> tuple[str, str, str]:
    """(the floor as text, the measured quantity as text, verdict: PASS / FAIL / PASS, aim met)."""
    value = float(figure["value"])
    if "peer" in floor:
        peer = figure.get("peers", {}).get(floor["peer"])
        ratio = None if peer is None else speed_ratio(figure, float(peer["value"]))
        aim = floor.get("aim_ratio")
        text = f">= {floor['min_ratio']:g}x {floor['peer']}" + (f" (aim {aim:g}x)" if aim is not None else "")
        if ratio is None:
            return text, "no peer figure", "FAIL"
        verdict = "PASS" if ratio >= floor["min_ratio"] else "FAIL"
        if verdict == "PASS" and aim is not None and ratio >= aim:
            verdict = "PASS, aim met"
        return text, f"{ratio:.2f}x", verdict
    if "min" in floor:
        return f">= {_num(floor['min'])} {figure['unit']}", _num(value), "PASS" if value >= floor["min"] else "FAIL"
    if "max" in floor:
        return f"<= {_num(floor['max'])} {figure['unit']}", _num(value), "PASS" if value <= floor["max"] else "FAIL"
    return json.dumps(floor, sort_keys=True), _num(value), "FAIL"  # a floor this page cannot read is not a pass


def floor_rows(figures: Iterable[dict[str, Any]]) -> list[tuple[str, str, str, str, str]]:
    """(section, figure, floor, measured, verdict) for every floor of every figure."""
    rows = []
    for fig in figures:
        for floor in fig.get("floors", []):
            rows.append((fig["section"], fig["name"], *judge(fig, floor)))
    return rows


def gate(rows: Sequence[tuple[str, str, str, str, str]]) -> bool:
    """Passes only when at least one floor was checked and none failed."""
    return bool(rows) and all(row[4] != "FAIL" for row in rows)


# --- rendering -------------------------------------------------------------------------------------


def _num(value: float) -> str:
    value = float(value)
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:,.2f}"
    return f"{value:.3g}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def _section_order(section: str) -> tuple[int, str]:
    return (SECTIONS.index(section) if section in SECTIONS else len(SECTIONS), section)


def section_table(figures: Sequence[dict[str, Any]]) -> list[str]:
    """One row per figure: asup's value, each peer's value and asup/peer, its floors and verdicts."""
    peers = sorted({name for fig in figures for name in fig.get("peers", {})})
    header = ["figure", "unit", "asup", *peers, "floor", "verdict", "note"]
    numbers = note_numbers(figures)
    rows = []
    for fig in figures:
        row = [fig["name"], fig["unit"], _num(fig["value"])]
        for name in peers:
            peer = fig.get("peers", {}).get(name)
            ratio = None if peer is None else speed_ratio(fig, float(peer["value"]))
            row.append("-" if peer is None else f"{_num(peer['value'])} ({'-' if ratio is None else f'{ratio:.2f}x'})")
        judged = [judge(fig, floor) for floor in fig.get("floors", [])]
        row.append("; ".join(text for text, _, _ in judged) or "-")
        row.append("; ".join(f"{verdict} ({measured})" for _, measured, verdict in judged) or "-")
        row.append(f"[{numbers[fig['note']]}]" if fig.get("note") else "-")
        rows.append(row)
    return _table(header, rows)


def note_numbers(figures: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Each distinct note's number, in order of first use: a note shared by figures is written once."""
    numbers: dict[str, int] = {}
    for fig in figures:
        if fig.get("note"):
            numbers.setdefault(fig["note"], len(numbers) + 1)
    return numbers


def machine_lines(machine: dict[str, Any], versions: dict[str, str], commit: str) -> list[str]:
    cpu, osinfo, py = (dict(machine.get(key) or {}) for key in ("cpu", "os", "python"))
    mem = machine.get("memory_bytes")
    fs = dict(machine.get("filesystem") or {})
    disk = dict(fs.get("device") or {})
    return [
        f"- CPU: {cpu.get('model', '?')} ({cpu.get('arch', '?')}), {cpu.get('logical_cores', '?')} logical cores, "
        f"{cpu.get('usable_cores', '?')} usable",
        f"- Memory: {mem / (1 << 30):.1f} GiB" if isinstance(mem, int) else "- Memory: ?",
        f"- OS: {osinfo.get('distribution', '?')}, kernel {osinfo.get('kernel', '?')}",
        f"- Python: {py.get('implementation', '?')} {py.get('version', '?')}",
        f"- Disk: {fs.get('fs_type', '?')} on {disk.get('model') or '?'}",
        "- Libraries: " + ", ".join(f"{name} {version}" for name, version in versions.items()),
        f"- Commit: {commit}",
    ]


def render(
    figures: Sequence[dict[str, Any]],
    skipped: Sequence[str],
    machine: dict[str, Any],
    versions: dict[str, str],
    commit: str,
    quick: bool = False,
) -> str:
    """The whole page; the same inputs give the same bytes."""
    lines = ["# Benchmark results", "", "Written by `make bench` (bench/results.py); regenerate it, do not edit it.", ""]
    if quick:
        lines += ["**A --quick run: short smoke runs, not figures to quote.**", ""]
    lines += machine_lines(machine, versions, commit)
    lines += ["", "Each value is the median of the runs its script states, interleaved with its peers in the same run.",
              "A peer's cell is its value and, in brackets, asup's speed over the peer's (> 1: asup is faster).", ""]
    for section in sorted({fig["section"] for fig in figures}, key=_section_order):
        chosen = [fig for fig in figures if fig["section"] == section]
        lines += [f"## {section}", "", *section_table(chosen), ""]
        notes = [f"{number}. {note}" for note, number in note_numbers(chosen).items()]
        lines += [*notes, ""] if notes else []
    rows = floor_rows(figures)
    failed = sum(row[4] == "FAIL" for row in rows)
    lines += ["## Floors", ""]
    if rows:
        lines += [*_table(["section", "figure", "floor", "measured", "verdict"], rows), ""]
    lines.append(f"{len(rows)} floors checked, {len(rows) - failed} passed, {failed} failed: " + ("PASS" if gate(rows) else "FAIL")
                 + ("" if rows else " (no floor was checked)"))
    if skipped:
        lines += ["", "Skipped:", "", *(f"- {line}" for line in skipped)]
    return "\n".join(lines) + "\n"


# --- main -------------------------------------------------------------------------------------------


def library_versions() -> dict[str, str]:
    out = {}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def commit_of(root: Path) -> str:
    try:
        proc = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain"], capture_output=True, text=True, check=False)
    except OSError:
        return "unknown"
    if proc.returncode != 0:
        return "unknown"
    return proc.stdout.strip() + (" (with uncommitted changes)" if dirty.stdout.strip() else "")


def _progress(message: str) -> None:
    print(f"[results] {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="pass --quick to every script that takes it")
    parser.add_argument("--strict", action="store_true", help="exit 1 unless floors were checked and all passed")
    parser.add_argument("--out", type=Path, default=BENCH / "RESULTS.md")
    parser.add_argument("--from-json", type=Path, default=None, help="render a saved {figures, skipped, machine} document, run nothing")
    args = parser.parse_args(argv)
    if args.from_json is not None:
        saved = json.loads(args.from_json.read_text(encoding="utf-8"))
        figures, skipped, machine = saved["figures"], saved.get("skipped", []), saved.get("machine", {})
    else:
        figures, skipped, machine = collect(BENCH, SCRIPTS, args.quick)
    page = render(figures, skipped, machine, library_versions(), commit_of(BENCH.parent), args.quick)
    args.out.write_text(page, encoding="utf-8")
    print(page)
    _progress(f"wrote {args.out}")
    return 1 if args.strict and not gate(floor_rows(figures)) else 0


if __name__ == "__main__":
    sys.exit(main())
