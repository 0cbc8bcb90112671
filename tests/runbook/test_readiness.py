"""`asup readiness` end to end in a temp output root: every step passes with checks, the
checklist is fully pass and every artifact exists; a second run gives the same verdicts,
seals a new pack (the previous one and its sidecar move to history/) and adds a decode
proof; a failing gate makes the drill exit 1 with a checklist that is not pass."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from events.digest import digest_file
from projections.artifact_paths import ArtifactPaths
from runbook import evidence, readiness
from runbook.gates import performance
from runbook.gates.report import Check, GateReport
from tests.projections.helpers import invoke, payload

GATE_NAMES = ("capability", "state_machine", "fault", "performance")


class Drill(msgspec.Struct):
    """Two readiness runs in one root, with what the first left behind."""

    paths: ArtifactPaths
    first: dict[str, Any]
    second: dict[str, Any]
    first_pack: bytes
    first_sidecar: bytes
    ops_after_first: list[dict[str, Any]]
    ops_after_second: list[dict[str, Any]]


def ops_events(paths: ArtifactPaths) -> list[dict[str, Any]]:
    """The operations log as plain rows (type, seq, data), read as JSON lines."""
    return [json.loads(line) for line in paths.ops_log.read_bytes().splitlines()]


def of_type(rows: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [row for row in rows if row["type"] == kind]


def run_readiness(paths: ArtifactPaths) -> dict[str, Any]:
    result = invoke("readiness", "--root", str(paths.root), "--json")
    assert result.exit_code == 0, result.output[-3000:]
    return payload(result)


def steady_performance() -> GateReport:
    """The real performance gate over real transfers, timed by an injected clock (lever on 5 %
    faster), so the drill's verdict never depends on how busy the machine is."""

    def measure(variant: str, work: Callable[[], None]) -> float:
        work()
        return 10.0 if variant == "baseline" else 9.5

    return performance.run(pairs=14, warmup=2, size=16 * 1024, measure=measure)


@pytest.fixture(scope="module")
def drill(tmp_path_factory: pytest.TempPathFactory) -> Drill:
    """`asup readiness --root R --json` run twice (a few seconds each)."""
    paths = ArtifactPaths(tmp_path_factory.mktemp("readiness") / "artifacts")
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(readiness.GATES, "performance", steady_performance)
        first = run_readiness(paths)
        first_pack, first_sidecar = paths.pack.read_bytes(), paths.sidecar.read_bytes()
        after_first = ops_events(paths)
        second = run_readiness(paths)
    return Drill(paths, first, second, first_pack, first_sidecar, after_first, ops_events(paths))


def verdicts(summary: dict[str, Any]) -> tuple[list[tuple[str, bool]], dict[str, str], bool]:
    steps = [(s["name"], s["passed"]) for s in summary["steps"]]
    items = {i["id"]: i["status"] for i in summary["checklist"]["items"]}
    return steps, items, summary["passed"]


def test_readiness_passes_every_step_and_the_checklist(drill: Drill) -> None:
    """A readiness run exits 0 with every step passed, each with checks > 0, and a fully pass checklist."""
    summary = drill.first
    assert summary["passed"] is True
    names = [s["name"] for s in summary["steps"]]
    assert names == [label for label, _ in readiness.steps(drill.paths)]
    expected = {f"gate {g}" for g in GATE_NAMES} | {"e2e script pack", "evidence build", "sidecar encode", "scrub", "decode drill"}
    assert expected <= set(names)
    for step in summary["steps"]:
        assert step["passed"] is True, step
        assert step["checks"] > 0, step
    assert summary["checks"] == sum(s["checks"] for s in summary["steps"])
    assert summary["checklist"]["verdict"] == "pass"
    items = {i["id"]: i["status"] for i in summary["checklist"]["items"]}
    assert items == {"gates": "pass", "durability": "pass", "logs_replayable": "pass", "pack_current": "pass", "signoff": "pass"}


def test_readiness_writes_every_artifact(drill: Drill) -> None:
    """Readiness leaves the pack, sidecar, recovered copy, scrub report, sign-off, e2e rows, four gate reports, each step's artifact."""
    paths = drill.paths
    for path in (paths.pack, paths.sidecar, paths.recovered, paths.scrub_report, paths.signoff, paths.e2e_events, paths.ops_log):
        assert path.is_file(), path
    assert paths.recovered.read_bytes() == paths.pack.read_bytes()
    reports = {p.name for p in paths.gates.glob("*.json")}
    assert reports == {f"asupersync_{g}_gate_report_v1.json" for g in GATE_NAMES}
    for name in reports:
        assert json.loads((paths.gates / name).read_bytes())["verdict"] == "pass"
    for step in drill.second["steps"]:
        if step["artifact"]:
            assert (paths.root / step["artifact"]).exists(), step
    signoff = json.loads(paths.signoff.read_bytes())
    assert signoff["verdict"] == "pass" and signoff["pack_digest"] == digest_file(paths.pack)
    assert json.loads(paths.scrub_report.read_bytes())["status"] == "ok"


def test_second_run_gives_the_same_verdicts(drill: Drill) -> None:
    """Running readiness twice in one root gives the same step and checklist verdicts."""
    assert verdicts(drill.second) == verdicts(drill.first)
    assert [s["checks"] > 0 for s in drill.second["steps"]] == [True] * len(drill.second["steps"])


def test_second_run_seals_a_new_pack_and_retires_the_previous(drill: Drill) -> None:
    """The second run records one more evidence_sealed event for the new pack and moves the previous pack and sidecar to history/."""
    paths = drill.paths
    seals_before = of_type(drill.ops_after_first, "evidence_sealed")
    seals_after = of_type(drill.ops_after_second, "evidence_sealed")
    assert len(seals_before) == 1 and len(seals_after) == 2
    assert seals_after[0] == seals_before[0]
    newest = seals_after[-1]
    assert newest["seq"] > seals_before[0]["seq"]
    assert newest["data"]["digest"] == digest_file(paths.pack) != seals_before[0]["data"]["digest"]
    retired = paths.v1 / "history" / f"seal-{seals_before[0]['seq']}"
    assert (retired / paths.pack.name).read_bytes() == drill.first_pack
    assert (retired / paths.sidecar.name).read_bytes() == drill.first_sidecar
    sidecars = of_type(drill.ops_after_second, "sidecar_written")
    assert len(sidecars) == 2 and sidecars[-1]["data"]["pack_digest"] == newest["data"]["digest"]


def test_second_run_adds_a_decode_proof(drill: Drill) -> None:
    """Decode proofs only grow: the second run appends one more successful decode_proof event, for the new pack."""
    before = of_type(drill.ops_after_first, "decode_proof")
    after = of_type(drill.ops_after_second, "decode_proof")
    assert len(before) == 1 and len(after) == 2
    assert after[0] == before[0]
    assert all(p["data"]["ok"] and p["data"]["one_more_loss_failed_closed"] for p in after)
    assert after[-1]["data"]["digest"] == digest_file(drill.paths.pack)


def failing_performance() -> GateReport:
    """A performance gate whose only check failed."""
    return GateReport("performance", checks=[Check("latency_ms/median_paired_ratio", False, "injected: candidate 10 % slower")])


def test_readiness_with_a_failing_gate_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A readiness whose performance gate fails exits 1, says NOT READY, and its checklist is not pass (gates fail, sign-off not pass)."""
    monkeypatch.setitem(readiness.GATES, "performance", failing_performance)
    paths = ArtifactPaths(tmp_path / "artifacts")
    result = invoke("readiness", "--root", str(paths.root))
    assert result.exit_code == 1, result.output[-3000:]
    assert "NOT READY" in result.output
    items = {i.id: i.status for i in evidence.current_checklist(paths)}
    assert items["gates"] == "fail"
    assert items["signoff"] != "pass"
    report = json.loads((paths.gates / "asupersync_performance_gate_report_v1.json").read_bytes())
    assert report["verdict"] == "fail" and report["checks_failed"] == 1
    assert json.loads(paths.signoff.read_bytes())["verdict"] == "fail"
