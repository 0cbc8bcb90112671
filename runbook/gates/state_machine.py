"""The state-machine gate: the table is complete and consistent, the transitions.Machine
built from it matches it row for row, the compiled lever equals the Machine for every
(state, trigger, guard outcome), and live runs of the scenarios reach every reason code."""

from __future__ import annotations

from pathlib import Path

import anyio

from engine.appender import DirectAppender
from engine.contracts import MachineSpec, load_state_machine
from engine.machine import AdapterMachine, CompiledDispatch, Dispatcher, TransferModel
from engine.rules import Rules
from engine.scenarios import SCENARIOS, run_scenarios
from events.clock import StepClock
from events.errors import AsupError
from events.memory_log import MemoryLog
from events.payloads import Transition
from events.vocabulary import ReasonCode, State, Trigger
from runbook.gates.report import GateReport


def run(table_path: Path | None = None, *, live: bool = True) -> GateReport:
    report = GateReport("state_machine")
    try:
        spec = load_state_machine(table_path).state_machine
        rules = Rules(spec)
    except AsupError as error:
        report.check("table_validates", False, error.one_line())
        return report
    report.check("table_validates", True, f"{len(spec.transition_table)} rows")
    _table(report, rules)
    machine, lever = AdapterMachine(rules), CompiledDispatch(rules)
    _machine_matches_table(report, spec, machine)
    report.measurements["equivalence_cases"] = _equivalence(report, machine, lever)
    if live:
        _live_reason_codes(report, lever)
    return report


def _table(report: GateReport, rules: Rules) -> None:
    for row in rules.spec.transition_table:
        where = f"{row.from_state}-{row.event}->{row.to_state}"
        report.check(f"row/{where}/not_from_terminal", not rules.is_terminal(row.from_state))
        if row.to_state is rules.failed:
            report.check(f"row/{where}/has_reason", row.reason_code is not None)
    declared = {r.reason_code for r in rules.spec.transition_table} | {rules.invalid}
    for code in ReasonCode:
        report.check(f"reason/{code}/in_table", code in declared)


def _machine_matches_table(report: GateReport, spec: MachineSpec, machine: AdapterMachine) -> None:
    rows = {(r.from_state.value, r.event.value, r.to_state.value) for r in spec.transition_table}
    built = {
        (t.source, name, t.dest)
        for name, event in machine.machine.events.items()
        for transitions in event.transitions.values()
        for t in transitions
    }
    report.check("machine/rows_equal_table", built == rows, f"machine {len(built)} transitions, table {len(rows)} (distinct)")
    report.check("machine/no_auto_transitions", not any(name.startswith("to_") for name in machine.machine.events))


def _equivalence(report: GateReport, machine: Dispatcher, lever: Dispatcher) -> int:
    cases = 0
    for state in State:
        for trigger in Trigger:
            for reason in [None, *ReasonCode]:
                a, b = TransferModel("machine", state), TransferModel("lever", state)
                machine.add(a)
                step_a, step_b = machine.fire(a, trigger, reason), lever.fire(b, trigger, reason)
                machine.remove(a)
                report.check(f"equal/{state}/{trigger}/{reason}", step_a == step_b and a.state == b.state, f"{step_a} vs {step_b}")
                cases += 1
    return cases


def _live_reason_codes(report: GateReport, lever: Dispatcher) -> None:
    log = MemoryLog("state-machine-gate", clock=StepClock())

    anyio.run(lambda: run_scenarios(list(SCENARIOS), DirectAppender(log), lever, seed=1))
    reached = {r.data.reason_code for r in log.read() if isinstance(r.data, Transition) and r.data.reason_code is not None}
    for code in ReasonCode:
        report.check(f"live/{code}/reached", code in reached)
