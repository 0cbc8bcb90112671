"""bench/results.py: the RESULTS.md page from fixed figures (bytes, ratios, floors), and the
collection that tolerates missing, figure-less and failing scripts. No real benchmark runs."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
import results

MACHINE: dict[str, Any] = {
    "cpu": {"model": "Test CPU", "arch": "x86_64", "logical_cores": 2, "usable_cores": 2},
    "memory_bytes": 8 << 30,
    "os": {"distribution": "Debian 12", "kernel": "6.1"},
    "python": {"implementation": "CPython", "version": "3.11.7"},
    "filesystem": {"fs_type": "ext4", "device": {"model": "virtio block device"}},
}
VERSIONS = {"msgspec": "0.22.0", "eventsourcing": "9.5.6"}


def figure(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "section": "append",
        "name": "1,000 streams, batches of 1,000, durable",
        "unit": "events/s",
        "higher_is_better": True,
        "value": 300_000.0,
        "runs": [290_000.0, 300_000.0, 310_000.0],
        "peers": {"naive": {"value": 100_000.0, "runs": []}, "eventsourcing sqlite": {"value": 40_000.0, "runs": []}},
        "floors": [
            {"peer": "naive", "min_ratio": 1.5, "aim_ratio": 2.0},
            {"peer": "eventsourcing sqlite", "min_ratio": 8.0, "aim_ratio": 10.0},
        ],
        "note": "fsync per batch",
    }
    return {**base, **overrides}


def page(figures: list[dict[str, Any]], skipped: list[str] | None = None) -> str:
    return results.render(figures, skipped or [], MACHINE, VERSIONS, "abc1234")


def test_the_page_is_the_same_bytes_for_the_same_figures_and_carries_no_date() -> None:
    figs = [figure(), figure(section="read", name="verify + fold", floors=[{"peer": "naive", "min_ratio": 1.3}])]
    first, second = page(figs), page(json.loads(json.dumps(figs)))
    assert first == second
    assert "- Libraries: msgspec 0.22.0, eventsourcing 9.5.6" in first
    assert "- Commit: abc1234" in first
    assert "2026" not in first and "UTC" not in first
    assert "--quick" not in first
    quick = results.render(figs, [], MACHINE, VERSIONS, "abc1234", quick=True)
    assert "**A --quick run: short smoke runs, not figures to quote.**" in quick


def test_sections_follow_the_contract_order_whatever_order_the_scripts_gave() -> None:
    text = page([figure(section="tail", floors=[]), figure(section="read", floors=[]), figure(floors=[])])
    assert text.index("## append") < text.index("## read") < text.index("## tail") < text.index("## Floors")


def test_a_row_shows_each_peer_value_and_asup_over_peer() -> None:
    text = page([figure()])
    row = next(line for line in text.splitlines() if line.startswith("| 1,000 streams"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # peers sorted by name: eventsourcing sqlite, naive
    assert cells[:5] == ["1,000 streams, batches of 1,000, durable", "events/s", "300,000", "40,000 (7.50x)", "100,000 (3.00x)"]
    assert cells[6:] == ["PASS, aim met (3.00x); FAIL (7.50x)", "[1]"]


def test_for_times_the_ratio_is_peer_time_over_asup_time() -> None:
    fig = figure(unit="s", higher_is_better=False, value=2.0, peers={"cp": {"value": 3.0, "runs": []}},
                 floors=[{"peer": "cp", "min_ratio": 0.5}])
    assert results.speed_ratio(fig, 3.0) == pytest.approx(1.5)
    assert results.judge(fig, {"peer": "cp", "min_ratio": 0.5}) == (">= 0.5x cp", "1.50x", "PASS")
    assert results.judge(fig, {"peer": "cp", "min_ratio": 2.0})[2] == "FAIL"


def test_absolute_bounds_and_a_missing_peer() -> None:
    fig = figure(value=9.0, unit="ms", higher_is_better=False)
    assert results.judge(fig, {"max": 10.0}) == ("<= 10.00 ms", "9.00", "PASS")
    assert results.judge(fig, {"max": 5.0})[2] == "FAIL"
    assert results.judge(fig, {"min": 50_000})[2] == "FAIL"
    assert results.judge(fig, {"peer": "absent", "min_ratio": 1.0}) == (">= 1x absent", "no peer figure", "FAIL")
    assert results.judge(fig, {"unknown": 1})[2] == "FAIL"


def test_the_summary_counts_floors_and_fails_on_any_failure() -> None:
    text = page([figure()])
    assert text.splitlines()[-1] == "2 floors checked, 1 passed, 1 failed: FAIL"
    passing = page([figure(floors=[{"peer": "naive", "min_ratio": 1.5}])])
    assert passing.splitlines()[-1] == "1 floors checked, 1 passed, 0 failed: PASS"


def test_a_gate_that_checked_no_floor_says_fail() -> None:
    text = page([figure(floors=[])], skipped=["log_bench.py: emits no figures yet"])
    assert "0 floors checked, 0 passed, 0 failed: FAIL (no floor was checked)" in text
    assert text.endswith("- log_bench.py: emits no figures yet\n")
    assert results.gate([]) is False


def write(directory: Path, name: str, body: str) -> None:
    (directory / name).write_text(textwrap.dedent(body), encoding="utf-8")


def test_collect_skips_missing_and_figureless_scripts_and_reports_failing_ones(tmp_path: Path) -> None:
    write(tmp_path, "old_bench.py", "print('a human table')\n")
    write(tmp_path, "broken_bench.py", "import sys\n# emits \"figures\" one day\nsys.exit(3)\n")
    write(
        tmp_path,
        "good_bench.py",
        """
        import json, sys
        quick = "--quick" in sys.argv
        fig = {"section": "read", "name": "n", "unit": "x", "value": 1.0, "runs": [], "peers": {}, "floors": [],
               "note": "quick" if quick else "full"}
        print(json.dumps({"machine": {"cpu": {"model": "m"}}, "figures": [fig]}))
        """,
    )
    figures, skipped, machine = results.collect(tmp_path, ["missing.py", "old_bench.py", "broken_bench.py", "good_bench.py"], quick=True)
    assert skipped == ["missing.py: not present", "old_bench.py: emits no figures yet", "broken_bench.py: exited 3"]
    assert [(f["script"], f["note"]) for f in figures] == [("good_bench.py", "quick")]
    assert machine == {"cpu": {"model": "m"}}


def test_quick_is_passed_only_to_scripts_that_take_it(tmp_path: Path) -> None:
    write(
        tmp_path,
        "plain_bench.py",
        """
        import argparse, json
        parser = argparse.ArgumentParser()
        parser.add_argument("--json", action="store_true")
        parser.parse_args()  # an unknown --quick would exit 2
        print(json.dumps({"figures": []}))
        """,
    )
    figures, skipped, _ = results.collect(tmp_path, ["plain_bench.py"], quick=True)
    assert (figures, skipped) == ([], [])


def test_main_writes_the_page_and_strict_fails_without_floors(tmp_path: Path) -> None:
    saved = tmp_path / "saved.json"
    saved.write_text(json.dumps({"figures": [figure(floors=[])], "skipped": [], "machine": MACHINE}), encoding="utf-8")
    out = tmp_path / "RESULTS.md"
    assert results.main(["--from-json", str(saved), "--out", str(out)]) == 0
    assert out.read_text(encoding="utf-8").startswith("# Benchmark results\n")
    assert results.main(["--from-json", str(saved), "--out", str(out), "--strict"]) == 1


def test_notes_are_numbered_once_each_and_every_row_points_at_its_own() -> None:
    text = page([figure(name="a", floors=[]), figure(name="b", floors=[], note="only b"), figure(name="c", floors=[])])
    assert "\n1. fsync per batch\n2. only b\n" in text
    rows = [line for line in text.splitlines() if line.startswith(("| a |", "| b |", "| c |"))]
    assert [row.rsplit("|", 2)[1].strip() for row in rows] == ["[1]", "[2]", "[1]"]
