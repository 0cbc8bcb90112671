"""What every gate returns and writes: checks counted one by one, a verdict that is `fail`
when any check failed or none ran, a JSON report under `asupersync/v1/gates/` and a
`gate_finished` event in the operations log."""

from __future__ import annotations

from typing import Any

import msgspec

from events.atomic import make_dirs, write_atomic
from events.digest import digest_bytes
from events.operations import GateFinished
from projections.artifact_paths import ArtifactPaths
from projections.base import canonical_json
from runbook.evidence import record_op


class Check(msgspec.Struct, frozen=True):
    name: str
    passed: bool
    detail: str = ""


class GateReport(msgspec.Struct):
    gate: str
    checks: list[Check] = msgspec.field(default_factory=list)
    measurements: dict[str, Any] = msgspec.field(default_factory=dict)

    def check(self, name: str, passed: bool, detail: str = "") -> bool:
        self.checks.append(Check(name, bool(passed), detail))
        return bool(passed)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    @property
    def verdict(self) -> str:
        return "pass" if self.checks and not self.failed else "fail"

    def document(self) -> dict[str, Any]:
        return {
            "schema_version": "1.0.0",
            "artifact_id": f"asupersync-{self.gate.replace('_', '-')}-gate-report-v1",
            "gate": self.gate,
            "verdict": self.verdict,
            "checks_executed": len(self.checks),
            "checks_failed": len(self.failed),
            "failed": [msgspec.to_builtins(c) for c in self.failed],
            "checks": [msgspec.to_builtins(c) for c in self.checks],
            "measurements": self.measurements,
        }


def publish(paths: ArtifactPaths, report: GateReport) -> tuple[str, int]:
    """Write the report and record the gate event; returns (report path, event seq)."""
    make_dirs(paths.gates, under=paths.root)
    target = paths.gates / f"asupersync_{report.gate}_gate_report_v1.json"
    data = canonical_json(report.document())
    write_atomic(target, data)
    event = GateFinished(
        gate=report.gate,
        verdict=report.verdict,
        checks=len(report.checks),
        failed=len(report.failed),
        report=paths.rel(target),
        report_digest=digest_bytes(data),
    )
    return str(target), record_op(paths, f"gate/{report.gate}", event)
