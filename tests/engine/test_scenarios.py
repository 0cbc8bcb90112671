"""The built-in scenarios: each passes its own checks with either dispatcher, its log
verifies, and together they reach every reason code."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from engine.appender import DirectAppender
from engine.machine import make_dispatcher
from engine.scenarios import SCENARIOS, Scenario, ScenarioOutcome, get, run_scenario
from events.chain import ChainState
from events.clock import StepClock
from events.errors import AsupError, ErrorCode
from events.jsonl_log import JsonlLog
from events.payloads import Transition
from events.scan import read_records, scan
from events.vocabulary import TERMINAL_STATES, ReasonCode

SEED = 7


def run_one(scenario: Scenario, tmp_path: Path, lever: bool) -> tuple[ScenarioOutcome, Path]:
    log_path = tmp_path / "scenario.jsonl"
    with JsonlLog.open(log_path, log_id="scenarios", clock=StepClock()) as log:
        outcome = anyio.run(
            lambda: run_scenario(scenario, tmp_path / "work", DirectAppender(log), make_dispatcher(lever), seed=SEED, clock=StepClock)
        )
    return outcome, log_path


@pytest.mark.parametrize("lever", [True, False], ids=["lever", "machine"])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario_passes_and_its_log_verifies(tmp_path: Path, scenario: Scenario, lever: bool) -> None:
    """A built-in scenario runs at least one check, passes all of them, and leaves a log that verifies end to end."""
    outcome, log_path = run_one(scenario, tmp_path, lever)
    assert outcome.checks, "a scenario that ran no check fails"
    assert outcome.passed, [c for c in outcome.checks if not c.passed]
    assert (outcome.state, outcome.reason_code) == (scenario.expect_state, scenario.expect_reason)
    assert outcome.sessions == len(scenario.sessions)
    result = scan(log_path, ChainState())
    assert result.problem is None and result.records == log_path.read_bytes().count(b"\n")
    records = list(read_records(log_path, tolerate_torn_tail=False))
    stream = scenario.sessions[-1].transfer_id or outcome.transfer_id  # the last session's stream
    last = [r for r in records if r.stream == stream][-1].data
    assert isinstance(last, Transition) and last.to_state is scenario.expect_state and last.to_state in TERMINAL_STATES
    assert last.reason_code == scenario.expect_reason


def test_scenarios_cover_every_reason_code() -> None:
    """Every one of the ten reason codes is the expected outcome of some built-in scenario."""
    covered = {s.expect_reason for s in SCENARIOS if s.expect_reason is not None}
    assert covered == set(ReasonCode)
    assert len(ReasonCode) == 10
    assert len({s.name for s in SCENARIOS}) == len(SCENARIOS)


def test_unknown_scenario_is_a_usage_error() -> None:
    """Asking for a scenario that does not exist is a USAGE error listing the known ones."""
    with pytest.raises(AsupError) as caught:
        get("no-such-scenario")
    assert caught.value.code is ErrorCode.USAGE and "success" in caught.value.message
