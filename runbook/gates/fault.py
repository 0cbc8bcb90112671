"""The fault gate: every fault class of the suite injected into real transfers on real
files, each ending in its expected reason code and terminal state with no partial
artifact; and the determinism property — the same seed and plan give a byte-identical log
— over the suite's seeds."""

from __future__ import annotations

import tempfile
from pathlib import Path

import anyio
import msgspec

from engine.appender import DirectAppender
from engine.contracts import contract_dir
from engine.machine import make_dispatcher
from engine.scenarios import Check, Scenario, Session, run_scenario
from events import strict_json
from events.clock import StepClock
from events.errors import AsupError, ErrorCode
from events.memory_log import MemoryLog
from events.vocabulary import Mode, ReasonCode, State
from runbook.gates.report import GateReport

SUITE_FILE = "asupersync_fault_injection_suite_v1.json"


class FaultClass(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    fault_id: str
    fault_type: str
    mode: Mode
    sessions: list[str]  # a plan per session; "resume:PLAN" resumes from the previous checkpoint
    trigger: str
    expected_reason_code: ReasonCode | None
    expected_terminal_state: State


class StructuredLogContract(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    required_fields: list[str]
    correlation_key: str
    fail_closed_policy: str


class FaultSuite(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    schema_version: str
    artifact_id: str
    reference: str
    deterministic_seed_policy: str
    fault_classes: list[FaultClass]
    structured_log_contract: StructuredLogContract
    determinism_seeds: list[int]


def load_suite(path: Path | None = None) -> FaultSuite:
    path = path or contract_dir() / SUITE_FILE
    return strict_json.load(path, FaultSuite, what="fault suite", code=ErrorCode.BAD_INPUT)


def as_scenario(fault: FaultClass) -> Scenario:
    sessions = []
    for plan in fault.sessions:
        resume = plan.startswith("resume:")
        sessions.append(Session(plan.removeprefix("resume:"), resume=resume))
    return Scenario(
        name=fault.fault_id.lower(),
        reference_id=fault.fault_id,
        description=fault.trigger,
        mode=fault.mode,
        expect_state=fault.expected_terminal_state,
        expect_reason=fault.expected_reason_code,
        sessions=sessions,
    )


def run(suite_path: Path | None = None, *, seeds: int | None = None) -> GateReport:
    report = GateReport("fault")
    try:
        suite = load_suite(suite_path)
    except AsupError as error:
        report.check("suite_validates", False, error.one_line())
        return report
    report.check("suite_validates", True, f"{len(suite.fault_classes)} fault classes")
    chosen_seeds = suite.determinism_seeds[:seeds] if seeds else suite.determinism_seeds
    has_faults = report.check("suite_has_fault_classes", bool(suite.fault_classes), f"{len(suite.fault_classes)} classes")
    has_seeds = report.check("suite_has_determinism_seeds", bool(chosen_seeds), f"{len(chosen_seeds)} seeds")
    if not (has_faults and has_seeds):
        return report
    for fault in suite.fault_classes:
        scenario = as_scenario(fault)
        first = _run(scenario, chosen_seeds[0])
        for check in first[1]:
            report.check(f"{fault.fault_id}/{check.name}", check.passed, check.detail)
        for seed in chosen_seeds:
            a, b = _run(scenario, seed)[0], _run(scenario, seed)[0]
            report.check(f"{fault.fault_id}/deterministic/seed-{seed}", a == b, f"{len(a)} vs {len(b)} log bytes")
    return report


def _run(scenario: Scenario, seed: int) -> tuple[bytes, list[Check]]:
    log = MemoryLog(f"fault-gate-{scenario.name}", clock=StepClock())

    async def go() -> list[Check]:
        with tempfile.TemporaryDirectory(prefix="asup-fault-gate-") as tmp:
            outcome = await run_scenario(scenario, Path(tmp), DirectAppender(log), make_dispatcher(True), seed=seed, clock=StepClock)
        return list(outcome.checks)

    checks = anyio.run(go)
    return bytes(log.data), checks
