"""The evidence workflow end to end through the CLI in a temp output root: scenarios,
evidence build (seal), durability encode/scrub/decode-drill, gates, a second build that
retires the first pack and sidecar to history/, protection again, sign-off and a fully
passing checklist; the pack's inventory and log heads match the files, and no sealed
pack is ever edited."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from blake3 import blake3

from events.digest import digest_file
from events.operations import GateFinished
from projections.artifact_paths import ArtifactPaths
from projections.checklist import REQUIRED_GATES
from runbook import evidence
from tests.projections.helpers import invoke, payload, records


def b3(data: bytes) -> str:
    return "blake3:" + blake3(data).hexdigest()


def ops(paths: ArtifactPaths, kind: str) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in paths.ops_log.read_bytes().splitlines()]
    return [{"seq": row["seq"], **row["data"]} for row in rows if row["type"] == kind]


def build(paths: ArtifactPaths) -> dict[str, Any]:
    result = invoke("evidence", "build", "--root", str(paths.root), "--json")
    assert result.exit_code == 0, result.output
    return payload(result)


def protect(paths: ArtifactPaths, seed: int) -> None:
    """encode, scrub and decode-drill the current pack through the CLI."""
    root = ("--root", str(paths.root))
    assert invoke("durability", "encode", str(paths.pack), *root).exit_code == 0
    assert invoke("durability", "scrub", str(paths.pack), str(paths.sidecar), *root).exit_code == 0
    drill = invoke("durability", "decode-drill", str(paths.sidecar), str(paths.recovered), "--seed", str(seed), *root)
    assert drill.exit_code == 0, drill.output
    assert paths.recovered.read_bytes() == paths.pack.read_bytes()


def checklist(paths: ArtifactPaths) -> tuple[int, dict[str, str]]:
    result = invoke("checklist", "--root", str(paths.root), "--json")
    return result.exit_code, {i["id"]: i["status"] for i in payload(result)["items"]}


def record_gates(paths: ArtifactPaths) -> None:
    """Four passing gate results, each with a real report file under the root."""
    for gate in REQUIRED_GATES:
        report = paths.gates / f"{gate}_report.json"
        report.parent.mkdir(parents=True, exist_ok=True)
        report.write_text(json.dumps({"gate": gate, "verdict": "pass", "checks": 7}) + "\n")
        event = GateFinished(gate=gate, verdict="pass", checks=7, failed=0, report=paths.rel(report), report_digest=digest_file(report))
        evidence.record_op(paths, "gates", event)


def test_full_evidence_workflow(tmp_path: Path) -> None:
    """scenario run all -> build -> protect -> gates -> build again (old pack to history) -> protect -> sign-off pass, checklist pass."""
    paths = ArtifactPaths(tmp_path / "artifacts")
    log = paths.root / "scenarios" / "scenarios.jsonl"
    assert invoke("scenario", "run", "all", "--log", str(log), "--json").exit_code == 0

    first = build(paths)
    first_pack = paths.pack.read_bytes()
    assert first["digest"] == b3(first_pack)
    protect(paths, seed=7)
    code, items = checklist(paths)
    assert code == 1
    assert items == {"gates": "pending", "durability": "pass", "logs_replayable": "pass", "pack_current": "pass", "signoff": "pending"}

    record_gates(paths)
    first_sidecar = paths.sidecar.read_bytes()
    second = build(paths)
    assert second["seal_seq"] > first["seal_seq"]
    assert second["digest"] != first["digest"]
    history = paths.v1 / "history" / f"seal-{first['seal_seq']}"
    assert (history / paths.pack.name).read_bytes() == first_pack
    assert (history / paths.sidecar.name).read_bytes() == first_sidecar
    assert not paths.sidecar.exists()
    assert checklist(paths)[1]["durability"] == "fail"  # the last sidecar protects the first pack

    protect(paths, seed=11)
    signoff = invoke("evidence", "signoff", "--root", str(paths.root), "--json")
    assert signoff.exit_code == 0, signoff.output
    assert payload(signoff)["verdict"] == "pass"
    code, items = checklist(paths)
    assert (code, set(items.values())) == (0, {"pass"})
    human = invoke("checklist", "--root", str(paths.root))
    assert human.exit_code == 0

    [signed] = ops(paths, "signoff_recorded")
    assert (signed["digest"], signed["pack_digest"]) == (b3(paths.signoff.read_bytes()), second["digest"])
    assert signed["checklist"] == dict.fromkeys(("gates", "durability", "logs_replayable", "pack_current"), "pass")


def test_pack_lists_every_artifact_and_log_head(tmp_path: Path) -> None:
    """The pack inventories every artifact under the root (path, size, BLAKE3 of the file), the log heads, and the gate results."""
    paths = ArtifactPaths(tmp_path / "artifacts")
    log = paths.root / "scenarios" / "scenarios.jsonl"
    assert invoke("scenario", "run", "all", "--log", str(log)).exit_code == 0
    record_gates(paths)
    (paths.root / "reports").mkdir()
    (paths.root / "reports" / "notes.md").write_text("operator notes\n")
    build(paths)
    pack = json.loads(paths.pack.read_bytes())
    expected = {
        *(paths.rel(p) for p in paths.contracts),
        *(f"asupersync/v1/gates/{g}_report.json" for g in REQUIRED_GATES),
        "reports/notes.md",
    }
    inventory = {row["path"]: row for row in pack["evidence_inventory"]}
    assert set(inventory) == expected
    for rel, row in inventory.items():
        data = (paths.root / rel).read_bytes()
        assert (row["size"], row["digest"]) == (len(data), b3(data)), rel
    last = records(log)[-1]
    heads = {h["path"]: (h["last_seq"], h["last_h"]) for h in pack["log_heads"]}
    assert heads["scenarios/scenarios.jsonl"] == (last.seq, last.h)
    [sealed] = ops(paths, "evidence_sealed")
    before_seal = records(paths.ops_log)[sealed["seq"] - 2]  # the ops log as it stood when the pack was built
    assert heads == {"scenarios/scenarios.jsonl": (last.seq, last.h), paths.rel(paths.ops_log): (before_seal.seq, before_seal.h)}
    assert sorted(pack["gate_results"]) == sorted(REQUIRED_GATES)
    gate_seqs = {e["gate"]: e["seq"] for e in ops(paths, "gate_finished")}
    assert {g: r["seq"] for g, r in pack["gate_results"].items()} == gate_seqs
    assert pack["checklist"]["items"][0] == {**pack["checklist"]["items"][0], "id": "gates", "status": "pass"}


def test_no_sealed_pack_is_ever_edited(tmp_path: Path) -> None:
    """After three builds with protection in between, every evidence_sealed event's digest and size match a pack file's bytes."""
    paths = ArtifactPaths(tmp_path / "artifacts")
    assert invoke("scenario", "run", "success", "--log", str(paths.root / "scenarios" / "s.jsonl")).exit_code == 0
    for number in range(3):
        (paths.root / f"artifact-{number}.txt").write_text(f"artifact {number}\n")
        build(paths)
        protect(paths, seed=number)
    seals = ops(paths, "evidence_sealed")
    assert len(seals) == 3
    packs = [paths.pack, *sorted((paths.v1 / "history").glob("seal-*/" + paths.pack.name))]
    on_disk = {b3(p.read_bytes()): p.stat().st_size for p in packs}
    assert {s["digest"]: s["size"] for s in seals} == on_disk
    assert b3(paths.pack.read_bytes()) == seals[-1]["digest"]
    assert all(s["pack"] == paths.rel(paths.pack) for s in seals)
