"""Replay by re-execution (`replay.reexecute.replay_log`, `asup replay`): recorded logs of
every built-in scenario reproduce with either lever setting; a decision changed in the test
(the retry budget off by one) is `diverged` at the recorded seq with the differing fields
and the leading transitions; transitions the table cannot produce are `impossible`; a torn
tail is reported and replayed up to; `--trace` equals `asup trace`; `--until` travels in
time; `--transfer` restricts."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec
import orjson
import pytest

from engine.decide import Progress
from engine.scenarios import SCENARIOS, Scenario
from events.observations import ChunkWritten, IntentRecorded
from events.payloads import Event, Transition
from events.record import Record
from events.vocabulary import ReasonCode, State, Trigger
from replay.reexecute import TransferReplay, replay_log
from tests.cli import run_asup
from tests.projections.helpers import copy_log, intent, invoke, payload, records, step, streams_of, write_log

SEED = 7
CHANGED_BY_BUDGET = {1: {"retry_exhausted", "strict_interruption"}, -1: {"retry_exhausted"}}


# --- recorded logs and what they hold ----------------------------------------------------------


def record_log(path: Path, lever: bool) -> Path:
    """Every built-in scenario through the real adapter, recorded by `asup scenario run all`."""
    flag = "--lever" if lever else "--no-lever"
    result = invoke("scenario", "run", "all", "--log", str(path), "--seed", str(SEED), flag, "--json")
    assert result.exit_code == 0, result.output
    return path


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, Path]:
    """Scenario logs recorded with the lever on (True) and off (False); read-only."""
    root = tmp_path_factory.mktemp("replay-logs")
    return {lever: record_log(root / f"scenarios-lever-{lever}.jsonl", lever) for lever in (True, False)}


@pytest.fixture
def log(logs: dict[bool, Path], tmp_path: Path) -> Path:
    """A private copy of the lever-on scenario log."""
    return copy_log(logs[True], tmp_path / "scenarios.jsonl")


def transitions(stream: list[Record]) -> list[Record]:
    return [r for r in stream if isinstance(r.data, Transition)]


def transition(record: Record) -> Transition:
    assert isinstance(record.data, Transition)
    return record.data


def final_stream(scenario: Scenario) -> str:
    """The stream of the scenario's last session (a resume may use another transfer id)."""
    return scenario.sessions[-1].transfer_id or f"{scenario.name}-{SEED}"


def by_id(transfers: Sequence[TransferReplay]) -> dict[str, TransferReplay]:
    return {t.transfer_id: t for t in transfers}


def json_transfers(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["transfer_id"]: t for t in document["transfers"]}


def budget_off_by(monkeypatch: pytest.MonkeyPatch, delta: int) -> None:
    """Today's decision code with the retry budget off by `delta` (the injected change)."""

    def max_attempts(self: Progress) -> int:
        assert self.intent is not None
        return self.intent.max_attempts + delta

    monkeypatch.setattr(Progress, "max_attempts", property(max_attempts))


def first_changed_decision(stream: list[Record], delta: int) -> Record:
    """The recorded transition a budget off by `delta` decides differently, found from the log alone."""
    start = next(r.data for r in stream if isinstance(r.data, IntentRecorded))
    budget = start.intent.max_attempts + delta
    for record in transitions(stream):
        data = transition(record)
        if delta > 0 and data.trigger is Trigger.RETRY_BUDGET_EXCEEDED:
            return record
        if delta < 0 and data.trigger is Trigger.TRANSPORT_INTERRUPTED and data.attempt > budget:
            return record
    raise AssertionError("the stream has no decision the budget change affects")


def tear_inside(path: Path, seq: int) -> None:
    """Cut the file in the middle of line `seq` (line number == seq), as a crash would."""
    data = path.read_bytes()
    lines = data.splitlines(keepends=True)
    start = sum(len(line) for line in lines[: seq - 1])
    path.write_bytes(data[: start + len(lines[seq - 1]) // 2])


# --- every scenario reproduces -----------------------------------------------------------------


@pytest.mark.parametrize("record_lever", [True, False], ids=["recorded-lever-on", "recorded-lever-off"])
@pytest.mark.parametrize("replay_lever", [True, False], ids=["replayed-lever-on", "replayed-lever-off"])
def test_every_scenario_log_reproduces(logs: dict[bool, Path], record_lever: bool, replay_lever: bool) -> None:
    """A recorded log of every built-in scenario reproduces transfer by transfer, with the lever on or off at record and at replay."""
    path = logs[record_lever]
    streams = streams_of(path)
    report, _ = replay_log(path, lever=replay_lever)
    assert report.problem is None
    assert report.reproduced
    replayed = by_id(report.transfers)
    assert set(replayed) == set(streams)
    for stream, recorded in streams.items():
        result = replayed[stream]
        assert result.outcome == "reproduced", (stream, result.divergence, result.impossible)
        assert result.divergence is None and result.impossible == ""
        assert result.transitions == len(transitions(recorded))
    for scenario in SCENARIOS:
        result = replayed[final_stream(scenario)]
        assert result.terminal_state == scenario.expect_state.value, scenario.name
        assert result.reason_code == (scenario.expect_reason.value if scenario.expect_reason else None), scenario.name


@pytest.mark.parametrize("flag", ["--lever", "--no-lever"])
def test_replay_cli_reproduces_every_scenario(log: Path, flag: str) -> None:
    """`asup replay LOG --json` exits 0 with every scenario's transfer reproduced, with either lever."""
    result = invoke("replay", str(log), flag, "--json")
    assert result.exit_code == 0, result.output
    document = payload(result)
    assert document["reproduced"] is True and document["problem"] is None
    replayed = json_transfers(document)
    assert set(replayed) == set(streams_of(log))
    assert {t["outcome"] for t in replayed.values()} == {"reproduced"}
    assert {final_stream(s) for s in SCENARIOS} <= set(replayed)


def test_a_real_process_replays_a_scenario_log(log: Path) -> None:
    """The real `asup replay` process exits 0 on a recorded scenario log and says every transfer reproduced."""
    done = run_asup("replay", log.name, cwd=log.parent)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{len(streams_of(log))} transfers replayed: reproduced" in done.stdout


# --- a changed decision diverges ---------------------------------------------------------------


@pytest.mark.parametrize("delta", [1, -1], ids=["budget-plus-one", "budget-minus-one"])
def test_changed_retry_budget_diverges_at_the_recorded_seq(log: Path, monkeypatch: pytest.MonkeyPatch, delta: int) -> None:
    """A retry budget off by one: exactly the affected transfers diverge, at the recorded seq, with fields and leading transitions."""
    streams = streams_of(log)
    budget_off_by(monkeypatch, delta)
    report, _ = replay_log(log)
    assert not report.reproduced
    changed = {f"{name}-{SEED}" for name in CHANGED_BY_BUDGET[delta]}
    replayed = by_id(report.transfers)
    assert {t for t, r in replayed.items() if r.outcome != "reproduced"} == changed
    for stream in changed:
        result = replayed[stream]
        assert result.outcome == "diverged" and result.impossible == ""
        divergence = result.divergence
        assert divergence is not None
        recorded = first_changed_decision(streams[stream], delta)
        recorded_transitions = transitions(streams[stream])
        index = recorded_transitions.index(recorded)
        assert divergence.seq == recorded.seq
        assert divergence.index == index
        recorded_data = msgspec.to_builtins(recorded.data)
        assert divergence.expected == recorded_data
        assert divergence.actual is not None
        want = Trigger.TRANSPORT_INTERRUPTED if delta > 0 else Trigger.RETRY_BUDGET_EXCEEDED
        assert divergence.actual["trigger"] == want.value
        assert set(divergence.fields) == {"attempt", "reason_code", "to_state", "trigger"}
        for field in divergence.fields:
            assert recorded_data[field] != divergence.actual[field]
        leading = recorded_transitions[max(0, index - 3) : index]
        assert [lead["seq"] for lead in divergence.leading] == [r.seq for r in leading]
        assert [lead["trigger"] for lead in divergence.leading] == [transition(r).trigger.value for r in leading]
        assert [lead["to_state"] for lead in divergence.leading] == [transition(r).to_state.value for r in leading]


def test_replay_cli_names_the_divergence(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`asup replay` exits 1 on a changed decision, printing the seq, each differing field (expected vs actual) and what led to it."""
    recorded = first_changed_decision(streams_of(log)[f"retry_exhausted-{SEED}"], 1)
    budget_off_by(monkeypatch, 1)
    result = invoke("replay", str(log), "--transfer", f"retry_exhausted-{SEED}")
    assert result.exit_code == 1, result.output
    text = result.output
    assert f"retry_exhausted-{SEED}: first divergence at seq {recorded.seq}" in text
    assert "trigger: expected 'retry_budget_exceeded', actual 'transport_interrupted'" in text
    assert "to_state: expected 'failed_closed', actual 'syncing'" in text
    assert "-transport_interrupted-> syncing" in text
    assert "NOT reproduced" in text
    as_json = invoke("replay", str(log), "--json")
    assert as_json.exit_code == 1
    document = payload(as_json)
    assert document["reproduced"] is False
    assert json_transfers(document)[f"retry_exhausted-{SEED}"]["divergence"]["seq"] == recorded.seq


def test_changed_decision_changes_only_the_affected_trace_rows(log: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a changed decision the replay trace differs from the recorded trace in the diverged transfers only."""
    recorded_trace = tmp_path / "recorded.jsonl"
    assert invoke("trace", str(log), "-o", str(recorded_trace)).exit_code == 0
    budget_off_by(monkeypatch, 1)
    _, replayed = replay_log(log)

    def rows_by_stream(data: bytes) -> dict[str, list[bytes]]:
        out: dict[str, list[bytes]] = {}
        for line in data.splitlines():
            out.setdefault(orjson.loads(line)["stream"], []).append(line)
        return out

    before, after = rows_by_stream(recorded_trace.read_bytes()), rows_by_stream(replayed)
    assert set(before) == set(after)
    assert {s for s in before if before[s] != after[s]} == {f"{n}-{SEED}" for n in CHANGED_BY_BUDGET[1]}


# --- impossible is not diverged ----------------------------------------------------------------


def crafted(path: Path, transfer: str, steps: list[Transition]) -> Path:
    """A hand-written log: an intent, then `steps`, all appended through JsonlLog."""
    entries: list[tuple[str, Event]] = [(transfer, IntentRecorded(intent=intent(transfer)))]
    entries += [(transfer, s) for s in steps]
    return write_log(path, entries)


T = "t-crafted"


def told(t: Transition) -> Transition:
    """`t` with the telemetry the adapter copies from the crafted intent (so only the decision can differ)."""
    i = intent(T)
    return msgspec.structs.replace(
        t, artifact_id=i.artifact_id, artifact_class=i.artifact_class, mode=i.mode, seed=i.seed, replay_command=i.replay_command
    )


START = told(step(T, State.IDLE, Trigger.START, State.CAPABILITY_CHECK))
IMPOSSIBLE: dict[str, tuple[list[Transition], int]] = {
    # name: (transitions after the intent, seq of the impossible one; header 1, intent 2)
    "not-in-table": ([START, step(T, State.CAPABILITY_CHECK, Trigger.CHUNK_COMMITTED, State.COMPLETED)], 4),
    "from-a-state-it-is-not-in": ([START, step(T, State.SYNCING, Trigger.CHUNK_COMMITTED, State.SYNCING)], 4),
    "exit-from-terminal": (
        [
            START,
            step(T, State.CAPABILITY_CHECK, Trigger.CAPABILITY_REJECTED, State.FAILED_CLOSED, ReasonCode.UNSUPPORTED_CAPABILITY),
            step(T, State.FAILED_CLOSED, Trigger.CHUNK_COMMITTED, State.SYNCING),
        ],
        5,
    ),
    "wrong-reason-for-the-row": (
        [START, step(T, State.CAPABILITY_CHECK, Trigger.CAPABILITY_REJECTED, State.FAILED_CLOSED, ReasonCode.RETRY_EXHAUSTED)],
        4,
    ),
}


@pytest.mark.parametrize("case", sorted(IMPOSSIBLE))
def test_a_transition_the_table_does_not_allow_is_impossible(tmp_path: Path, case: str) -> None:
    """A hand-written transition the table cannot produce is `impossible` (naming its seq), not `diverged`; the CLI exits 1."""
    steps, bad_seq = IMPOSSIBLE[case]
    path = crafted(tmp_path / "crafted.jsonl", T, steps)
    assert records(path)[bad_seq - 1].type == "transition"
    report, _ = replay_log(path)
    [result] = report.transfers
    assert result.outcome == "impossible"
    assert result.impossible.startswith(f"seq {bad_seq}:"), result.impossible
    assert not report.reproduced
    cli = invoke("replay", str(path), "--json")
    assert cli.exit_code == 1
    assert json_transfers(payload(cli))[T]["outcome"] == "impossible"


def test_an_allowed_but_undecided_transition_is_diverged_not_impossible(tmp_path: Path) -> None:
    """Transitions the table allows but today's code does not decide (no observation calls for them) are `diverged`, not `impossible`."""
    rejected = told(step(T, State.CAPABILITY_CHECK, Trigger.CAPABILITY_REJECTED, State.FAILED_CLOSED, ReasonCode.UNSUPPORTED_CAPABILITY))
    path = crafted(tmp_path / "crafted.jsonl", T, [START, rejected])
    report, _ = replay_log(path)
    [result] = report.transfers
    assert result.outcome == "diverged"
    assert result.impossible == ""
    assert result.divergence is not None
    assert result.divergence.seq == 4 and result.divergence.index == 1
    assert result.divergence.actual is None
    assert result.divergence.leading[0]["seq"] == 3


# --- a torn tail -------------------------------------------------------------------------------


def last_failure(path: Path) -> Record:
    """The last scenario's failing observation: the last observation of the log, followed by the
    fail-closed transition it decides (the last scenario is the disk_full one, a store_failed)."""
    last = records(path)[-1]
    record = records(path)[-2]
    assert (record.type, last.type, record.stream) == ("store_failed", "transition", last.stream)
    return record


def test_torn_tail_is_reported_and_the_log_replayed_up_to_it(log: Path) -> None:
    """A tail torn inside the last observation is reported (exit 1, line and torn_tail named) and every transfer before it is reproduced."""
    fault = last_failure(log)
    streams = streams_of(log)
    tear_inside(log, fault.seq)
    report, _ = replay_log(log)
    assert report.problem is not None
    assert "torn_tail" in report.problem and f":{fault.seq}:" in report.problem
    replayed = by_id(report.transfers)
    assert set(replayed) == set(streams)
    assert {r.outcome for r in replayed.values()} == {"reproduced"}
    late = replayed[fault.stream]
    assert late.transitions == len([r for r in transitions(streams[fault.stream]) if r.seq < fault.seq])
    assert late.terminal_state is None  # the decision that ended it was cut off
    cli = invoke("replay", str(log), "--json")
    assert cli.exit_code == 1
    document = payload(cli)
    assert document["reproduced"] is False
    assert "torn_tail" in document["problem"]


def test_torn_tail_still_compares_the_transfers_before_it(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a torn tail, transfers before it are still re-executed and compared: a changed decision diverges at the same seq."""
    expected = first_changed_decision(streams_of(log)[f"retry_exhausted-{SEED}"], 1)
    tear_inside(log, last_failure(log).seq)
    budget_off_by(monkeypatch, 1)
    report, _ = replay_log(log)
    assert report.problem is not None
    result = by_id(report.transfers)[f"retry_exhausted-{SEED}"]
    assert result.outcome == "diverged"
    assert result.divergence is not None and result.divergence.seq == expected.seq


def test_a_tear_through_a_decided_transition_is_not_a_divergence(log: Path) -> None:
    """A tail torn inside a transition whose observation is intact is reported, but the cut transfer is not `diverged`."""
    fault = last_failure(log)
    tear_inside(log, fault.seq + 1)  # the last line: the store failure's fail-closed transition
    report, _ = replay_log(log)
    assert report.problem is not None and "torn_tail" in report.problem
    late = by_id(report.transfers)[fault.stream]
    assert late.outcome != "diverged", late.divergence


# --- --trace, --until, --transfer --------------------------------------------------------------


def test_trace_out_equals_the_trace_projection_byte_for_byte(log: Path, tmp_path: Path) -> None:
    """`asup replay LOG --trace OUT` writes exactly the bytes of `asup trace LOG -o OUT`."""
    replayed, projected = tmp_path / "replayed.jsonl", tmp_path / "projected.jsonl"
    assert invoke("replay", str(log), "--trace", str(replayed)).exit_code == 0
    assert invoke("trace", str(log), "-o", str(projected)).exit_code == 0
    assert projected.read_bytes()
    assert replayed.read_bytes() == projected.read_bytes()
    assert len(replayed.read_bytes().splitlines()) == len(records(log)) - 1  # every record but the header


def test_trace_of_one_transfer_equals_the_projection_of_it(log: Path, tmp_path: Path) -> None:
    """`--transfer ID --trace OUT` equals `asup trace LOG -o OUT --transfer ID`, and holds only that transfer."""
    transfer = f"interruption_resume-{SEED}"
    replayed, projected = tmp_path / "replayed.jsonl", tmp_path / "projected.jsonl"
    assert invoke("replay", str(log), "--transfer", transfer, "--trace", str(replayed)).exit_code == 0
    assert invoke("trace", str(log), "-o", str(projected), "--transfer", transfer).exit_code == 0
    assert replayed.read_bytes() == projected.read_bytes()
    assert {orjson.loads(line)["stream"] for line in replayed.read_bytes().splitlines()} == {transfer}


def test_until_shows_each_transfer_state_at_that_seq(log: Path) -> None:
    """`--until SEQ` shows every transfer as of SEQ: a transfer completing later is mid-way, later ones are absent, earlier ones final."""
    streams = streams_of(log)
    middle = f"checksum_mismatch-{SEED}"
    chunk_commits = [r for r in transitions(streams[middle]) if transition(r).trigger is Trigger.CHUNK_COMMITTED]
    until = chunk_commits[1].seq
    result = invoke("replay", str(log), "--until", str(until), "--json")
    assert result.exit_code == 0, result.output
    document = payload(result)
    assert document["until"]["seq"] == until
    states = {row["transfer_id"]: row for row in document["until"]["transfers"]}
    started = {s for s, rs in streams.items() if rs[0].seq <= until}
    assert set(states) == started
    assert set(json_transfers(document)) == started
    assert states[middle]["state"] == State.SYNCING.value
    assert states[middle]["committed_cursor"] == transition(chunk_commits[1]).committed_cursor
    final = by_id(replay_log(log)[0].transfers)
    assert final[middle].terminal_state == State.FAILED_CLOSED.value
    for stream in started - {middle}:
        assert states[stream]["state"] == transition(transitions(streams[stream])[-1]).to_state.value
    text = invoke("replay", str(log), "--until", str(until))
    assert f"state as of seq {until}:" in text.output
    assert f"{middle}: syncing" in text.output


def test_until_between_an_observation_and_its_transition_reproduces(log: Path) -> None:
    """`--until` at an observation whose transition comes next shows the state there and does not report the intact log as diverged."""
    stream = streams_of(log)[f"success-{SEED}"]
    chunk = next(r for r in stream if isinstance(r.data, ChunkWritten))
    following = stream[stream.index(chunk) + 1]
    assert isinstance(following.data, Transition) and following.seq == chunk.seq + 1
    result = invoke("replay", str(log), "--until", str(chunk.seq), "--json")
    document = payload(result)
    states = {row["transfer_id"]: row["state"] for row in document["until"]["transfers"]}
    assert states[f"success-{SEED}"] == following.data.from_state.value
    outcomes = {t["transfer_id"]: t["outcome"] for t in document["transfers"]}
    assert outcomes == {f"success-{SEED}": "reproduced"}
    assert result.exit_code == 0


def test_transfer_restricts_the_replay(log: Path) -> None:
    """`--transfer ID` replays only that transfer."""
    transfer = f"stale_metadata-{SEED}"
    result = invoke("replay", str(log), "--transfer", transfer, "--json")
    assert result.exit_code == 0, result.output
    document = payload(result)
    assert list(json_transfers(document)) == [transfer]
    assert json_transfers(document)[transfer]["reason_code"] == ReasonCode.RESUME_SEED_MISMATCH.value
    report, _ = replay_log(log, transfer=transfer)
    assert [t.transfer_id for t in report.transfers] == [transfer]


def test_unknown_transfer_and_missing_log_are_usage_errors(log: Path) -> None:
    """An unknown `--transfer` id and a missing log are exit 2 with one line naming them."""
    unknown = invoke("replay", str(log), "--transfer", "t-nowhere")
    assert unknown.exit_code == 2
    assert "t-nowhere" in unknown.output and unknown.output.count("\n") == 1
    missing = invoke("replay", str(log.with_name("absent.jsonl")))
    assert missing.exit_code == 2
    assert "log_not_found" in missing.output
