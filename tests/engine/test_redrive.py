"""Re-driving recorded transfers from their log alone: every built-in scenario's transitions
come back identical from the log's bytes (no store), under either lever; a changed decision
shows up exactly at the transition it changes."""

from __future__ import annotations

import io
import shutil
from collections.abc import Iterable
from pathlib import Path

import anyio
import msgspec
import pytest

import engine.decide
import engine.redrive
from engine.appender import DirectAppender
from engine.decide import Decision, Progress
from engine.machine import make_dispatcher
from engine.redrive import redrive
from engine.scenarios import SCENARIOS, Scenario, ScenarioOutcome, run_scenario
from events.chain import ChainState
from events.clock import StepClock
from events.memory_log import MemoryLog
from events.observations import BackoffDrawn, Observation
from events.payloads import Event, Transition
from events.record import HEADER_STREAM, Record
from events.scan import Scanner
from events.vocabulary import ReasonCode, State, Trigger

SEED = 7
LEVERS = [True, False]
NAMES = [s.name for s in SCENARIOS]


class Recording(msgspec.Struct, frozen=True):
    scenario: Scenario
    lever: bool
    outcome: ScenarioOutcome
    data: bytes  # the log's bytes: everything a redrive may use


def _record(scenario: Scenario, lever: bool, workdir: Path) -> tuple[Recording, MemoryLog]:
    log = MemoryLog("redrive", clock=StepClock())

    async def go() -> ScenarioOutcome:
        return await run_scenario(scenario, workdir, DirectAppender(log), make_dispatcher(lever), seed=SEED, clock=StepClock)

    outcome = anyio.run(go)
    shutil.rmtree(workdir)  # the stores are gone: only the log's bytes remain
    return Recording(scenario, lever, outcome, bytes(log.data)), log


@pytest.fixture(scope="module")
def recordings(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[str, bool], tuple[Recording, MemoryLog]]:
    """Every built-in scenario recorded once per lever setting, into a MemoryLog with a StepClock."""
    out = {}
    for lever in LEVERS:
        for scenario in SCENARIOS:
            workdir = tmp_path_factory.mktemp(f"{scenario.name}-{lever}")
            out[(scenario.name, lever)] = _record(scenario, lever, workdir)
    return out


def _decode(data: bytes) -> list[Record]:
    """The log's bytes back into verified records (digests, chain) with no store."""
    scanner = Scanner(lambda: io.BytesIO(data), ChainState())
    records = list(scanner)
    assert scanner.problem is None, scanner.problem
    assert scanner.valid_size == len(data)
    return records


def _streams(records: Iterable[Record]) -> dict[str, list[Event]]:
    streams: dict[str, list[Event]] = {}
    for record in records:
        if record.stream != HEADER_STREAM:
            streams.setdefault(record.stream, []).append(record.data)
    return streams


def _transitions(events: Iterable[Event]) -> list[Transition]:
    return [e for e in events if isinstance(e, Transition)]


def _first_difference(a: list[Transition], b: list[Transition]) -> int | None:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def test_all_built_in_scenarios_are_covered() -> None:
    """16 built-in scenarios, one redrive case per scenario and lever."""
    assert len(SCENARIOS) == 16
    assert len(set(NAMES)) == 16


@pytest.mark.parametrize("lever", LEVERS, ids=["compiled", "machine"])
@pytest.mark.parametrize("name", NAMES)
def test_recorded_scenario_passes_its_own_checks(
    recordings: dict[tuple[str, bool], tuple[Recording, MemoryLog]], name: str, lever: bool
) -> None:
    """The recorded run reached the scenario's expected terminal state and reason code."""
    recording, _ = recordings[(name, lever)]
    assert recording.outcome.passed, recording.outcome.checks
    assert recording.outcome.state is recording.scenario.expect_state
    assert recording.outcome.reason_code == recording.scenario.expect_reason


@pytest.mark.parametrize("lever", LEVERS, ids=["compiled", "machine"])
@pytest.mark.parametrize("name", NAMES)
def test_redrive_from_log_alone_gives_the_recorded_transitions(
    recordings: dict[tuple[str, bool], tuple[Recording, MemoryLog]], name: str, lever: bool
) -> None:
    """Each stream's events, decoded from the log bytes alone, re-drive to exactly the recorded transitions under both dispatchers."""
    recording, _ = recordings[(name, lever)]
    streams = _streams(_decode(recording.data))
    assert streams
    for stream, events in streams.items():
        recorded = _transitions(events)
        assert recorded, f"{stream} recorded no transition"
        for redrive_lever in LEVERS:
            assert redrive(events, make_dispatcher(redrive_lever)) == recorded, (stream, redrive_lever)


@pytest.mark.parametrize("lever", LEVERS, ids=["compiled", "machine"])
@pytest.mark.parametrize("name", NAMES)
def test_log_ends_in_the_scenario_outcome(recordings: dict[tuple[str, bool], tuple[Recording, MemoryLog]], name: str, lever: bool) -> None:
    """The last transition in the log is the scenario's terminal state and reason code, and nothing follows a terminal state."""
    recording, _ = recordings[(name, lever)]
    records = _decode(recording.data)
    last = next(r.data for r in reversed(records) if isinstance(r.data, Transition))
    assert last.to_state is recording.scenario.expect_state
    assert last.reason_code == recording.scenario.expect_reason
    for stream, events in _streams(records).items():
        transitions = _transitions(events)
        terminal_at = [i for i, t in enumerate(transitions) if t.to_state in (State.COMPLETED, State.FAILED_CLOSED)]
        assert len(terminal_at) <= 1, stream
        if terminal_at:
            assert terminal_at[0] == len(transitions) - 1, stream


@pytest.mark.parametrize("name", NAMES)
def test_memory_log_read_matches_decoded_bytes(recordings: dict[tuple[str, bool], tuple[Recording, MemoryLog]], name: str) -> None:
    """MemoryLog.read yields the same records as decoding the captured bytes."""
    recording, log = recordings[(name, True)]
    assert list(log.read()) == _decode(recording.data)


@pytest.mark.parametrize("name", NAMES)
def test_both_levers_record_the_same_transitions(recordings: dict[tuple[str, bool], tuple[Recording, MemoryLog]], name: str) -> None:
    """The Machine and the compiled lever record identical transitions for the same scenario and seed."""
    on = _streams(_decode(recordings[(name, True)][0].data))
    off = _streams(_decode(recordings[(name, False)][0].data))
    assert on.keys() == off.keys()
    for stream in on:
        assert _transitions(on[stream]) == _transitions(off[stream]), stream


def _only_stream(recording: Recording) -> list[Event]:
    streams = _streams(_decode(recording.data))
    assert len(streams) == 1
    return next(iter(streams.values()))


@pytest.mark.parametrize("lever", LEVERS, ids=["compiled", "machine"])
def test_one_fewer_attempt_diverges_at_the_last_allowed_interruption(
    recordings: dict[tuple[str, bool], tuple[Recording, MemoryLog]], lever: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With max_attempts one lower, redrive fails closed at the interruption that used the last attempt, and not before."""
    recording, _ = recordings[("retry_exhausted", lever)]
    events = _only_stream(recording)
    recorded = _transitions(events)
    interrupted = [i for i, t in enumerate(recorded) if t.trigger is Trigger.TRANSPORT_INTERRUPTED]
    assert len(interrupted) == 3  # max_attempts of a hardened transfer
    assert recorded[-1].trigger is Trigger.RETRY_BUDGET_EXCEEDED

    def one_fewer(self: Progress) -> int:
        assert self.intent is not None
        return self.intent.max_attempts - 1

    monkeypatch.setattr(Progress, "max_attempts", property(one_fewer))
    changed = redrive(events, make_dispatcher(lever))
    at = _first_difference(recorded, changed)
    assert at == interrupted[-1]
    assert changed[:at] == recorded[:at]
    assert (changed[at].trigger, changed[at].to_state, changed[at].reason_code) == (
        Trigger.RETRY_BUDGET_EXCEEDED,
        State.FAILED_CLOSED,
        ReasonCode.RETRY_EXHAUSTED,
    )
    assert all(t.trigger is Trigger.TRIGGER_REJECTED for t in changed[at + 1 :])


@pytest.mark.parametrize("lever", LEVERS, ids=["compiled", "machine"])
def test_one_more_attempt_diverges_at_the_exhausting_interruption(
    recordings: dict[tuple[str, bool], tuple[Recording, MemoryLog]], lever: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With max_attempts one higher, redrive retries where the recording gave up: it differs at the last transition only."""
    recording, _ = recordings[("retry_exhausted", lever)]
    events = _only_stream(recording)
    recorded = _transitions(events)

    def one_more(self: Progress) -> int:
        assert self.intent is not None
        return self.intent.max_attempts + 1

    monkeypatch.setattr(Progress, "max_attempts", property(one_more))
    changed = redrive(events, make_dispatcher(lever))
    assert _first_difference(recorded, changed) == len(recorded) - 1
    assert changed[-1].trigger is Trigger.TRANSPORT_INTERRUPTED
    assert changed[-1].to_state is State.SYNCING


@pytest.mark.parametrize("lever", LEVERS, ids=["compiled", "machine"])
def test_wrapped_decide_diverges_at_the_changed_decision(
    recordings: dict[tuple[str, bool], tuple[Recording, MemoryLog]], lever: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decide that calls a validated checksum a mismatch makes redrive differ exactly at checksum_validated."""
    recording, _ = recordings[("success", lever)]
    events = _only_stream(recording)
    recorded = _transitions(events)
    validated = [i for i, t in enumerate(recorded) if t.trigger is Trigger.CHECKSUM_VALIDATED]
    assert validated == [len(recorded) - 1]
    original = engine.decide.decide

    def tampered(progress: Progress, obs: Event) -> list[Decision]:
        return [
            Decision(Trigger.CHECKSUM_MISMATCH, ReasonCode.INTEGRITY_PRECHECK_FAILED) if d.trigger is Trigger.CHECKSUM_VALIDATED else d
            for d in original(progress, obs)
        ]

    monkeypatch.setattr(engine.redrive, "decide", tampered)
    changed = redrive(events, make_dispatcher(lever))
    at = _first_difference(recorded, changed)
    assert at == validated[0]
    assert changed[at].to_state is State.FAILED_CLOSED
    assert changed[at].reason_code is ReasonCode.INTEGRITY_PRECHECK_FAILED


@pytest.mark.parametrize("lever", LEVERS, ids=["compiled", "machine"])
def test_wrapped_decide_diverges_at_the_first_changed_chunk(
    recordings: dict[tuple[str, bool], tuple[Recording, MemoryLog]], lever: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A decide that drops the third chunk commit makes redrive differ at that commit's transition, not earlier."""
    recording, _ = recordings[("success", lever)]
    events = _only_stream(recording)
    recorded = _transitions(events)
    commits = [i for i, t in enumerate(recorded) if t.trigger is Trigger.CHUNK_COMMITTED]
    assert len(commits) >= 3
    original = engine.decide.decide
    seen = {"commits": 0}

    def tampered(progress: Progress, obs: Event) -> list[Decision]:
        decisions = original(progress, obs)
        if any(d.trigger is Trigger.CHUNK_COMMITTED for d in decisions):
            seen["commits"] += 1
            if seen["commits"] == 3:
                return [Decision(Trigger.CONFLICT_DETECTED, ReasonCode.CONFLICT_DETECTED)]
        return decisions

    monkeypatch.setattr(engine.redrive, "decide", tampered)
    changed = redrive(events, make_dispatcher(lever))
    at = _first_difference(recorded, changed)
    assert at == commits[2]
    assert changed[at].reason_code is ReasonCode.CONFLICT_DETECTED


@pytest.mark.parametrize("name", ["retry_exhausted", "interruption_resume"])
def test_redrive_uses_the_recorded_backoff_not_a_recomputed_one(
    recordings: dict[tuple[str, bool], tuple[Recording, MemoryLog]], name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Changing backoff_ms after the fact does not change a redrive: the drawn delay is an observation in the log."""
    recording, _ = recordings[(name, True)]
    streams = _streams(_decode(recording.data))
    drawn = [e for events in streams.values() for e in events if isinstance(e, BackoffDrawn)]
    assert drawn, "the scenario must have drawn a backoff"
    assert all(d.delay_ms == engine.decide.backoff_ms(SEED, d.attempt) for d in drawn)
    monkeypatch.setattr(engine.decide, "backoff_ms", lambda seed, attempt: engine.decide.BACKOFF_CAP_MS * 99)
    for events in streams.values():
        assert redrive(events, make_dispatcher(True)) == _transitions(events)


def test_redrive_ignores_events_before_any_intent() -> None:
    """Observations recorded before a session's intent drive nothing."""
    stray: list[Event] = [BackoffDrawn(attempt=1, delay_ms=10, at_ns=1)]
    assert isinstance(stray[0], Observation)
    assert redrive(stray, make_dispatcher(True)) == []
    assert redrive(stray, make_dispatcher(False)) == []
