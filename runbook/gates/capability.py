"""The capability gate: the matrix validates, every class is fail-closed in both modes,
every declared primitive is negotiable by some adapter or rejected, and negotiation cases
(supported, unsupported, mismatch) behave as the contract says."""

from __future__ import annotations

from pathlib import Path

from engine.contracts import AdapterProfile, CapabilityMatrix, load_matrix, load_profiles
from engine.intent import DEFAULT_CHUNK
from engine.negotiation import default_requests, negotiate
from events.errors import AsupError
from events.observations import Intent
from events.vocabulary import Mode, ReasonCode
from runbook.gates.report import GateReport

MINIMAL = {"asupersync::remote::sync_manifest", "asupersync::checksum::verify_blake3"}
PROFILES = ("full", "legacy_protocol", "minimal", "sha256_only", "small_chunks")


def expected(profile: str, needs: set[str]) -> str:
    """What each built-in profile must get for a class, given what the class requires."""
    if profile == "full":
        return "accepted"
    if profile == "minimal":
        return ReasonCode.UNSUPPORTED_CAPABILITY.value if needs - MINIMAL else "accepted"
    return ReasonCode.CAPABILITY_MISMATCH.value  # protocol 0, sha256, 64 KiB chunk bound: all mismatches


def run(matrix_path: Path | None = None, profiles_path: Path | None = None) -> GateReport:
    report = GateReport("capability")
    try:
        matrix = load_matrix(matrix_path)
        profiles = load_profiles(profiles_path).profiles
    except AsupError as error:
        report.check("contracts_validate", False, error.one_line())
        return report
    report.check("contracts_validate", True, f"{len(matrix.capability_matrix)} classes, {len(profiles)} profiles")
    report.check("matrix_has_classes", bool(matrix.capability_matrix), f"{len(matrix.capability_matrix)} artifact classes")
    for entry in matrix.capability_matrix:
        for mode in Mode:
            behavior = entry.behavior(mode)
            report.check(f"{entry.operation_id}/{mode}/fail_closed", behavior.unsupported_capability_policy == "fail_closed")
    _negotiable(report, matrix, profiles)
    _cases(report, matrix, {p.name: p for p in profiles})
    return report


def _intent(matrix: CapabilityMatrix, artifact_class: str, mode: Mode, adapter: str, chunk: int = DEFAULT_CHUNK) -> Intent:
    return Intent(
        transfer_id="gate",
        artifact_id="gate",
        artifact_class=artifact_class,
        mode=mode,
        seed=0,
        expected_checksum="",
        size=0,
        max_attempts=0,
        chunk_size=chunk,
        source="",
        target="",
        adapter=adapter,
        requested=default_requests(matrix, artifact_class, chunk),
    )


def _negotiable(report: GateReport, matrix: CapabilityMatrix, profiles: list[AdapterProfile]) -> None:
    """Every primitive the matrix declares is offered by some profile (so it can be accepted)."""
    declared = {p.id for e in matrix.capability_matrix for p in e.asupersync_primitives}
    for primitive in sorted(declared):
        offered_by = [p.name for p in profiles if primitive in p.primitives]
        report.check(f"negotiable/{primitive}", bool(offered_by), f"offered by {offered_by}")


def _cases(report: GateReport, matrix: CapabilityMatrix, profiles: dict[str, AdapterProfile]) -> None:
    for entry in matrix.capability_matrix:
        needs = {p.id for p in entry.asupersync_primitives}
        for mode in Mode:
            for name in PROFILES:
                if name not in profiles:
                    report.check(f"{entry.operation_id}/{mode}/{name}", False, "profile missing from the contract")
                    continue
                outcome = negotiate(_intent(matrix, entry.artifact_class, mode, name), matrix, profiles[name]).outcome
                want = expected(name, needs)
                report.check(f"{entry.operation_id}/{mode}/{name}", outcome == want, f"expected {want}, got {outcome}")
    unknown = negotiate(_intent(matrix, "no_such_class", Mode.STRICT, "full"), matrix, profiles["full"]).outcome
    report.check("unknown_class_unsupported", unknown == ReasonCode.UNSUPPORTED_CAPABILITY.value, unknown)
