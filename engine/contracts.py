"""The contract artifacts shipped in `engine/contract/`: the capability matrix, the adapter
state machine and the adapter profiles. Loaded and validated by msgspec; a malformed
contract is an `AsupError(bad_input)` naming the file and field, never a silent default.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import msgspec

from events import strict_json
from events.errors import AsupError, ErrorCode
from events.vocabulary import TERMINAL_STATES, Mode, ReasonCode, State, Trigger

ParamValue = str | int

MATRIX_FILE = "asupersync_capability_matrix_v1.json"
STATE_MACHINE_FILE = "asupersync_adapter_state_machine_v1.json"
PROFILES_FILE = "asupersync_adapter_profiles_v1.json"


class Strict(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Base of contract structs: unknown fields are refused."""


# --- the capability matrix --------------------------------------------------------


class Primitive(Strict, frozen=True):
    id: str
    version: int
    params: dict[str, ParamValue]
    reference_id: str | None = None


class ModeBehavior(Strict, frozen=True):
    mode: Mode
    max_attempts: int
    execution_policy: str
    unsupported_capability_policy: str
    deterministic_replay_requirement: str
    fallback_behavior: str


class FailClosedContract(Strict, frozen=True):
    default_action: str
    reason_codes: list[ReasonCode]
    escalation_path: str


class CapabilityEntry(Strict, frozen=True):
    operation_id: str
    artifact_class: str
    description: str
    asupersync_primitives: list[Primitive]
    strict_mode_behavior: ModeBehavior
    hardened_mode_behavior: ModeBehavior
    fail_closed_contract: FailClosedContract
    telemetry_fields: list[str]

    def behavior(self, mode: Mode) -> ModeBehavior:
        return self.strict_mode_behavior if mode is Mode.STRICT else self.hardened_mode_behavior


class CapabilitySummary(Strict, frozen=True):
    operation_count: int
    artifact_class_count: int
    strict_fail_closed_default: bool
    hardened_fail_closed_default: bool


class CapabilityMatrix(Strict, frozen=True):
    schema_version: str
    artifact_id: str
    reference: str
    capability_summary: CapabilitySummary
    capability_matrix: list[CapabilityEntry]

    def entry(self, artifact_class: str) -> CapabilityEntry | None:
        return next((e for e in self.capability_matrix if e.artifact_class == artifact_class), None)

    @property
    def artifact_classes(self) -> list[str]:
        return [e.artifact_class for e in self.capability_matrix]


# --- the adapter state machine -------------------------------------------------------


class TransitionRow(Strict, frozen=True):
    from_state: State
    event: Trigger
    to_state: State
    reason_code: ReasonCode | None
    notes: str


class NonTerminalPolicy(Strict, frozen=True):
    to_state: State
    reason_code: ReasonCode
    notes: str


class TerminalPolicy(Strict, frozen=True):
    event: Trigger
    to_state: Literal["unchanged"]  # the only terminal policy: the state stays
    notes: str


class InvalidTriggerPolicy(Strict, frozen=True):
    non_terminal: NonTerminalPolicy
    terminal: TerminalPolicy


class MachineSpec(Strict, frozen=True):
    states: list[State]
    initial_state: State
    terminal_states: list[State]
    events: list[Trigger]
    reason_codes: list[ReasonCode]
    transition_table: list[TransitionRow]
    invalid_trigger_policy: InvalidTriggerPolicy


class StrictRetry(Strict, frozen=True):
    max_attempts: int
    notes: str


class HardenedRetry(Strict, frozen=True):
    max_attempts_default: int
    max_attempts_limit: int
    backoff_base_ms: int
    backoff_cap_ms: int
    jitter: str
    notes: str


class RetryPolicy(Strict, frozen=True):
    strict: StrictRetry
    hardened: HardenedRetry


class StateMachineContract(Strict, frozen=True):
    schema_version: str
    artifact_id: str
    reference: str
    state_machine: MachineSpec
    transition_invariants: list[str]
    retry_policy: RetryPolicy
    telemetry_fields: list[str]


# --- adapter profiles ------------------------------------------------------------------


class Offer(Strict, frozen=True):
    version: int
    params: dict[str, ParamValue]


class AdapterProfile(Strict, frozen=True):
    name: str
    description: str
    primitives: dict[str, Offer]


class AdapterProfiles(Strict, frozen=True):
    schema_version: str
    artifact_id: str
    notes: str
    profiles: list[AdapterProfile]


# --- loading ---------------------------------------------------------------------------


def contract_dir() -> Path:
    return Path(str(resources.files("engine") / "contract"))


def _decode(data: bytes, kind: type[Any], file: str) -> Any:
    return strict_json.decode(data, kind, what="contract", code=ErrorCode.BAD_INPUT, file=file)


def load_matrix(path: Path | None = None) -> CapabilityMatrix:
    path = path or contract_dir() / MATRIX_FILE
    matrix: CapabilityMatrix = _decode(_read(path), CapabilityMatrix, str(path))
    _check_matrix(matrix, str(path))
    return matrix


def load_state_machine(path: Path | None = None) -> StateMachineContract:
    path = path or contract_dir() / STATE_MACHINE_FILE
    contract: StateMachineContract = _decode(_read(path), StateMachineContract, str(path))
    _check_machine(contract.state_machine, str(path))
    return contract


def load_profiles(path: Path | None = None) -> AdapterProfiles:
    path = path or contract_dir() / PROFILES_FILE
    profiles: AdapterProfiles = _decode(_read(path), AdapterProfiles, str(path))
    return profiles


def load_profile(name_or_path: str) -> AdapterProfile:
    """A built-in profile by name, or a profile JSON file."""
    if name_or_path.endswith(".json"):
        path = Path(name_or_path)
        profile: AdapterProfile = _decode(_read(path), AdapterProfile, str(path))
        return profile
    for profile in default_profiles().profiles:
        if profile.name == name_or_path:
            return profile
    known = ", ".join(p.name for p in default_profiles().profiles)
    raise AsupError(ErrorCode.USAGE, f"unknown adapter profile {name_or_path!r} (built in: {known}; or a .json file)")


@cache
def default_matrix() -> CapabilityMatrix:
    return load_matrix()


@cache
def default_state_machine() -> StateMachineContract:
    return load_state_machine()


@cache
def default_profiles() -> AdapterProfiles:
    return load_profiles()


def _read(path: Path) -> bytes:
    return strict_json.read(path, what="contract", code=ErrorCode.BAD_INPUT)


def _check_matrix(matrix: CapabilityMatrix, file: str) -> None:
    classes = matrix.artifact_classes
    if len(set(classes)) != len(classes):
        raise AsupError(ErrorCode.BAD_INPUT, "an artifact class is listed twice", file=file, field="$.capability_matrix")
    if matrix.capability_summary.artifact_class_count != len(classes):
        raise AsupError(ErrorCode.BAD_INPUT, "artifact_class_count disagrees with the matrix", file=file, field="$.capability_summary")
    for i, entry in enumerate(matrix.capability_matrix):
        where = f"$.capability_matrix[{i}]"
        if not any(p.id == "asupersync::checksum::verify_blake3" for p in entry.asupersync_primitives):
            raise AsupError(ErrorCode.BAD_INPUT, f"{entry.artifact_class} does not require BLAKE3 verification", file=file, field=where)
        for mode in Mode:
            behavior = entry.behavior(mode)
            if behavior.mode is not mode or behavior.unsupported_capability_policy != "fail_closed":
                raise AsupError(ErrorCode.BAD_INPUT, f"{entry.artifact_class} {mode} mode is not fail-closed", file=file, field=where)
        if entry.strict_mode_behavior.max_attempts != 0:
            raise AsupError(ErrorCode.BAD_INPUT, "strict mode allows no retries", file=file, field=f"{where}.strict_mode_behavior")


def _check_machine(spec: MachineSpec, file: str) -> None:
    _check_vocabulary(spec, file)
    field = "$.state_machine.transition_table"
    terminal = set(spec.terminal_states)
    failed = spec.invalid_trigger_policy.non_terminal.to_state
    seen: set[tuple[State, Trigger, ReasonCode | None]] = set()
    for i, row in enumerate(spec.transition_table):
        where = f"{field}[{i}]"
        if row.from_state in terminal:
            raise AsupError(ErrorCode.BAD_INPUT, f"terminal state {row.from_state} has an exit", file=file, field=where)
        if (row.to_state == failed) != (row.reason_code is not None):
            raise AsupError(ErrorCode.BAD_INPUT, "a failed_closed row needs a reason code, and only such a row", file=file, field=where)
        key = (row.from_state, row.event, row.reason_code)
        if key in seen:
            raise AsupError(
                ErrorCode.BAD_INPUT, f"duplicate row {row.from_state} -{row.event}-> ({row.reason_code})", file=file, field=where
            )
        seen.add(key)
        for name in (row.from_state, row.to_state):
            if name not in spec.states:
                raise AsupError(ErrorCode.BAD_INPUT, f"unknown state {name}", file=file, field=where)
        if row.event not in spec.events:
            raise AsupError(ErrorCode.BAD_INPUT, f"unknown event {row.event}", file=file, field=where)
    unreachable = set(spec.states) - _reachable(spec)
    if unreachable:
        raise AsupError(ErrorCode.BAD_INPUT, f"states unreachable from {spec.initial_state}: {sorted(unreachable)}", file=file, field=field)


def _check_vocabulary(spec: MachineSpec, file: str) -> None:
    """The table may not redefine the vocabulary the engine and the log are built on."""
    checks = (
        ("states", set(spec.states), set(State)),
        ("terminal_states", set(spec.terminal_states), set(TERMINAL_STATES)),
        ("events", set(spec.events), set(Trigger)),
        ("reason_codes", set(spec.reason_codes), set(ReasonCode)),
    )
    for name, declared, known in checks:
        if declared != known:
            differ = sorted(str(x) for x in declared ^ known)
            raise AsupError(ErrorCode.BAD_INPUT, f"{name} differ from the vocabulary: {differ}", file=file, field=f"$.state_machine.{name}")
    if spec.initial_state is not State.IDLE:
        raise AsupError(ErrorCode.BAD_INPUT, "the initial state must be idle", file=file, field="$.state_machine.initial_state")
    starts = {row.event for row in spec.transition_table if row.from_state is spec.initial_state}
    if not {Trigger.START, Trigger.RESUME_REQUESTED} <= starts:
        # engine.rules begins a session with one of these two
        where = "$.state_machine.transition_table"
        raise AsupError(ErrorCode.BAD_INPUT, "a session must start from idle by start or resume_requested", file=file, field=where)


def _reachable(spec: MachineSpec) -> set[State]:
    seen = {spec.initial_state}
    frontier = [spec.initial_state]
    while frontier:
        state = frontier.pop()
        for row in spec.transition_table:
            if row.from_state == state and row.to_state not in seen:
                seen.add(row.to_state)
                frontier.append(row.to_state)
    return seen
