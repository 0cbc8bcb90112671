"""The runbook's artifact paths under an output root (default `artifacts/`)."""

from __future__ import annotations

from pathlib import Path

import msgspec

V1 = Path("asupersync/v1")


class ArtifactPaths(msgspec.Struct, frozen=True):
    root: Path
    remote_logs: tuple[str, ...] = ()  # nats:// logs the checklist and the pack cover besides the root's files

    def rel(self, path: Path) -> str:
        """`path` relative to the root, '/'-separated (what packs and events record)."""
        try:
            return path.resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return path.as_posix()

    @property
    def v1(self) -> Path:
        return self.root / V1

    @property
    def ops_log(self) -> Path:
        return self.v1 / "asupersync_ops_events_v1.jsonl"

    @property
    def pack(self) -> Path:
        return self.v1 / "asupersync_final_evidence_pack_v1.json"

    @property
    def sidecar(self) -> Path:
        return self.v1 / "asupersync_final_evidence_pack_v1.json.ec.json"

    @property
    def recovered(self) -> Path:
        return self.v1 / "asupersync_final_evidence_pack_v1.recovered.json"

    @property
    def scrub_report(self) -> Path:
        return self.v1 / "asupersync_final_evidence_pack_v1_scrub_report.json"

    @property
    def signoff(self) -> Path:
        return self.v1 / "asupersync_signoff_v1.json"

    @property
    def gates(self) -> Path:
        return self.v1 / "gates"

    @property
    def contracts(self) -> list[Path]:
        return [
            self.v1 / "asupersync_capability_matrix_v1.json",
            self.v1 / "asupersync_adapter_state_machine_v1.json",
            self.v1 / "asupersync_adapter_profiles_v1.json",
            self.v1 / "asupersync_fault_injection_suite_v1.json",
        ]

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def e2e_events(self) -> Path:
        return self.root / "e2e" / "latest" / "e2e_script_pack_events_v1.jsonl"

    def sealed_outputs(self) -> set[Path]:
        """Files the pack cannot list: itself and what is made from it after sealing."""
        return {self.pack, self.sidecar, self.recovered, self.scrub_report, self.signoff, self.ops_log}
