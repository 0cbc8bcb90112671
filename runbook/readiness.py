"""The readiness drill — the main job: gates, the e2e pack, evidence build, sidecar, scrub,
decode drill, sign-off, checklist and escalation, in that order, under one output root.
Each step reports pass/fail and how many checks it ran; the drill passes only when every
step does and the final checklist is fully pass."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from engine.contracts import contract_dir
from engine.durability import sidecar_path
from projections import checklist
from projections.artifact_paths import ArtifactPaths
from projections.escalation import Inputs, escalate, level_of
from projections.fold import fold_log
from projections.runbook_map import Level
from projections.violations import Violations
from runbook import e2e, evidence
from runbook.gates import capability, fault, performance, state_machine
from runbook.gates.report import GateReport, publish

GATES: dict[str, Callable[[], GateReport]] = {
    "capability": capability.run,
    "state_machine": state_machine.run,
    "fault": fault.run,
    "performance": performance.run,
}


class Step(msgspec.Struct, frozen=True):
    name: str
    passed: bool
    checks: int
    detail: str
    artifact: str = ""


def run_gate(paths: ArtifactPaths, name: str, gate: Callable[[], GateReport] | None = None) -> tuple[GateReport, str]:
    report = (gate or GATES[name])()
    target, _ = publish(paths, report)
    return report, target


def steps(paths: ArtifactPaths, *, seed: int = 7) -> list[tuple[str, Callable[[], Step]]]:
    """The drill as named thunks, so a caller can show progress between them."""
    out: list[tuple[str, Callable[[], Step]]] = [("export contracts", lambda: _export(paths))]
    for name in GATES:
        out.append((f"gate {name}", lambda name=name: _gate(paths, name)))  # type: ignore[misc]
    out += [
        ("e2e script pack", lambda: _e2e(paths, seed)),
        ("evidence build", lambda: _build(paths)),
        ("sidecar encode", lambda: _encode(paths)),
        ("scrub", lambda: _scrub(paths)),
        ("decode drill", lambda: _drill(paths, seed)),
        ("sign-off", lambda: _signoff(paths)),
        ("escalation", lambda: _escalation(paths)),
    ]
    return out


def _export(paths: ArtifactPaths) -> Step:
    written = evidence.export_contracts(paths)
    exported = sorted(contract_dir().glob("*.json"))
    present = all((paths.v1 / source.name).read_bytes() == source.read_bytes() for source in exported)
    return Step("export contracts", present and bool(exported), len(exported), f"{len(written)} updated", paths.rel(paths.v1))


def _gate(paths: ArtifactPaths, name: str) -> Step:
    report, target = run_gate(paths, name)
    detail = f"{len(report.failed)} failed" + (f": {report.failed[0].name} {report.failed[0].detail}" if report.failed else "")
    return Step(f"gate {name}", report.verdict == "pass", len(report.checks), detail, paths.rel(Path(target)))


def _e2e(paths: ArtifactPaths, seed: int) -> Step:
    result = e2e.run_e2e(paths, seed=seed)
    rows, problems = e2e.validate(Path(result["events"]))
    passed = bool(result["passed"]) and not problems
    detail = f"{result['rows']} rows, {result['failed']} failed, trace equal {result['determinism']['trace_equal']}"
    return Step(
        "e2e script pack",
        passed,
        int(result["checks"]) + rows,
        detail + ("; " + problems[0] if problems else ""),
        paths.rel(Path(result["events"])),
    )


def _build(paths: ArtifactPaths) -> Step:
    pack, digest, seq = evidence.build_pack(paths)
    return Step("evidence build", True, 1, f"sealed {digest[:23]}… at ops seq {seq}", paths.rel(pack))


def _encode(paths: ArtifactPaths) -> Step:
    target, sidecar = evidence.encode_sidecar(paths, paths.pack, k=8, m=4, codec="isa_l_rs_vand")
    return Step("sidecar encode", True, len(sidecar.fragments), f"{sidecar.codec} k={sidecar.k} m={sidecar.m}", paths.rel(target))


def _scrub(paths: ArtifactPaths) -> Step:
    sidecar = sidecar_path(paths.pack)
    report = evidence.run_scrub(paths, paths.pack, sidecar, repair=False)
    # the manifest, every fragment against it and a fresh encode, the pack against its digest and the seals
    return Step("scrub", report.healthy, report.checked, report.status, paths.rel(paths.scrub_report))


def _drill(paths: ArtifactPaths, seed: int) -> Step:
    event = evidence.run_drill(paths, sidecar_path(paths.pack), paths.recovered, seed=seed)
    passed = event.ok and event.one_more_loss_failed_closed
    return Step("decode drill", passed, 2, f"dropped {event.dropped}; proof #{event.proof_count}", paths.rel(paths.recovered))


def _signoff(paths: ArtifactPaths) -> Step:
    verdict, items = evidence.sign_off(paths)
    open_items = [i.id for i in items if i.status != "pass" and i.id != "signoff"]
    return Step(
        "sign-off", verdict == "pass", len(items), f"{verdict}" + (f" (open: {open_items})" if open_items else ""), paths.rel(paths.signoff)
    )


def _escalation(paths: ArtifactPaths) -> Step:
    """Contract breaks only: the e2e logs fail closed on purpose, and their own checks judge that."""
    ops = evidence.ops_state(paths)
    facts = evidence.gather_facts(paths)
    rules = escalate(Inputs(ops=ops, checklist=checklist.derive(ops, facts), pack_drift=facts.pack_drift))
    for log in facts.logs:
        if not log.ok:
            rules += escalate(Inputs(log_problems=[{"log": log.path, "message": log.problem}]))
            continue
        violations = fold_log(Path(log.path), [Violations()]).states["violations"]
        rules += escalate(Inputs(terminal_exits=violations.terminal_exits, forbidden_accepts=violations.forbidden_accepts))
    level = level_of(rules)
    detail = f"level {level or 'none'}" + (f": {rules[0].rule} {rules[0].detail}" if rules else "")
    return Step("escalation", level not in (Level.P0, Level.P1), len(facts.logs) + 3, detail)


def summary(paths: ArtifactPaths, results: list[Step]) -> dict[str, Any]:
    items = evidence.current_checklist(paths)
    rendered = checklist.render(items)
    return {
        "root": str(paths.root),
        "passed": all(s.passed for s in results) and rendered["verdict"] == "pass",
        "steps": [msgspec.to_builtins(s) for s in results],
        "checks": sum(s.checks for s in results),
        "checklist": rendered,
    }
