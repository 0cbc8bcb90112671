"""Semantic log diff (`replay.diff.diff_logs`, `asup diff`): two runs of the same scenarios
with the same seed are the same stream by stream; another seed gives other streams; a
changed fault plan, adapter or decision differs at the first differing event with its
fields; differences only in timestamps, clock readings, durations, digests, ids and seq are
ignored."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from pathlib import Path

import anyio
import msgspec
import pytest

from engine.appender import DirectAppender
from engine.decide import Progress
from engine.machine import make_dispatcher
from engine.scenarios import SCENARIOS, Scenario, Session, get, run_scenario
from events.clock import Clock, StepClock
from events.jsonl_log import JsonlLog
from events.payloads import Transition
from events.vocabulary import Trigger
from replay.diff import StreamDiff, diff_logs
from tests.projections.helpers import invoke, payload, streams_of

SEED = 7


def run_log(
    path: Path,
    scenarios: Sequence[Scenario],
    *,
    seed: int = SEED,
    log_id: str = "scenarios",
    clock: Callable[[], Clock] = StepClock,
) -> Path:
    """Run `scenarios` through the real adapter into a new JSONL log at `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with JsonlLog.open(path, log_id=log_id, clock=clock()) as log:

        async def go() -> None:
            appender, dispatcher = DirectAppender(log), make_dispatcher(True)
            for scenario in scenarios:
                workdir = path.parent / f"work-{path.stem}" / scenario.name
                await run_scenario(scenario, workdir, appender, dispatcher, seed=seed, clock=clock)

        anyio.run(go)
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Every scenario run twice with seed 7 ('a', 'b') and once with seed 8 ('c'); read-only."""
    root = tmp_path_factory.mktemp("diff-logs")
    return {
        "a": run_log(root / "a.jsonl", SCENARIOS),
        "b": run_log(root / "b.jsonl", SCENARIOS),
        "c": run_log(root / "c.jsonl", SCENARIOS, seed=SEED + 1),
    }


def one(diffs: list[StreamDiff], stream: str) -> StreamDiff:
    [found] = [d for d in diffs if d.stream == stream]
    return found


def budget_plus_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """A new code version in the test: the retry budget one larger than the intent's."""

    def max_attempts(self: Progress) -> int:
        assert self.intent is not None
        return self.intent.max_attempts + 1

    monkeypatch.setattr(Progress, "max_attempts", property(max_attempts))


# --- same, other seed --------------------------------------------------------------------------


def test_same_seed_runs_are_the_same_stream_by_stream(runs: dict[str, Path]) -> None:
    """Two runs of every scenario with the same seed: every stream `same`, with the same event counts."""
    diffs = diff_logs(runs["a"], runs["b"])
    streams = streams_of(runs["a"])
    assert [d.stream for d in diffs] == sorted(streams)
    for d in diffs:
        assert d.status == "same", d
        assert d.events_a == d.events_b == len(streams[d.stream]) > 0
        assert d.index == -1 and d.fields == []


def test_diff_cli_same_is_exit_0(runs: dict[str, Path]) -> None:
    """`asup diff A B --json` on two same-seed runs exits 0 and counts every stream as same."""
    result = invoke("diff", str(runs["a"]), str(runs["b"]), "--json")
    assert result.exit_code == 0, result.output
    document = payload(result)
    assert document["counts"] == {"same": len(streams_of(runs["a"]))}
    human = invoke("diff", str(runs["a"]), str(runs["b"]))
    assert human.exit_code == 0
    assert f"summary: same {len(streams_of(runs['a']))}" in human.output


def test_another_seed_gives_other_streams(runs: dict[str, Path]) -> None:
    """With another seed the seed-named transfers are only_in_a / only_in_b; a fixed transfer id present in both differs at its intent."""
    diffs = diff_logs(runs["a"], runs["c"])
    status = {d.stream: d.status for d in diffs}
    for scenario in SCENARIOS:
        assert status[f"{scenario.name}-{SEED}"] == "only_in_a"
        assert status[f"{scenario.name}-{SEED + 1}"] == "only_in_b"
    shared = one(diffs, "t-another-transfer")  # resume_transfer_mismatch's foreign checkpoint id
    assert shared.status == "differs"
    assert shared.index == 0 and shared.fields == ["intent"]
    assert shared.a is not None and shared.b is not None
    assert shared.a["intent"]["seed"] == SEED and shared.b["intent"]["seed"] == SEED + 1
    result = invoke("diff", str(runs["a"]), str(runs["c"]), "--json")
    assert result.exit_code == 1
    assert payload(result)["counts"] == {"differs": 1, "only_in_a": len(SCENARIOS), "only_in_b": len(SCENARIOS)}


# --- an edited run differs at the first differing event ----------------------------------------


def test_another_fault_plan_differs_at_the_first_differing_event(tmp_path: Path) -> None:
    """retry_exhausted run with one interruption fewer differs where the recorded fourth interruption was met, naming the fields."""
    scenario = get("retry_exhausted")
    fewer = msgspec.structs.replace(scenario, sessions=[Session("interruption@1,interruption@1,interruption@1")])
    a = run_log(tmp_path / "a.jsonl", [scenario])
    b = run_log(tmp_path / "b.jsonl", [fewer])
    stream = f"retry_exhausted-{SEED}"
    recorded = streams_of(a)[stream]
    faults = [r for r in recorded if r.type == "fault_met"]
    assert len(faults) == 4
    fourth = faults[3]
    [d] = diff_logs(a, b)
    assert d.stream == stream and d.status == "differs"
    assert d.index == recorded.index(fourth)
    assert d.seq_a == fourth.seq
    assert d.seq_b == streams_of(b)[stream][d.index].seq
    assert d.a is not None and d.b is not None
    assert d.a["type"] == "fault_met" and d.a["kind"] == "interruption"
    assert d.b["type"] == "chunk_written"
    assert "type" in d.fields and "kind" in d.fields
    assert set(d.fields) == {k for k in set(d.a) | set(d.b) if d.a.get(k) != d.b.get(k)}
    human = invoke("diff", str(a), str(b))
    assert human.exit_code == 1
    assert f"{stream}: differs at event #{d.index} (seq {d.seq_a} vs {d.seq_b})" in human.output


def test_another_adapter_differs_at_the_intent(tmp_path: Path) -> None:
    """capability_mismatch run with the full adapter instead of legacy_protocol differs at its first event, the intent."""
    scenario = get("capability_mismatch")
    other = msgspec.structs.replace(scenario, sessions=[Session(adapter="full")])
    a = run_log(tmp_path / "a.jsonl", [scenario])
    b = run_log(tmp_path / "b.jsonl", [other])
    [d] = diff_logs(a, b)
    assert d.status == "differs" and d.index == 0 and d.fields == ["intent"]
    assert d.a is not None and d.b is not None
    assert (d.a["intent"]["adapter"], d.b["intent"]["adapter"]) == ("legacy_protocol", "full")


def test_a_changed_decision_differs_at_the_decided_transition(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run by code whose retry budget is one larger differs from the baseline at the transition the fourth interruption decided."""
    scenario = get("retry_exhausted")
    a = run_log(tmp_path / "a.jsonl", [scenario])
    budget_plus_one(monkeypatch)
    b = run_log(tmp_path / "b.jsonl", [scenario])
    stream = f"retry_exhausted-{SEED}"
    recorded = streams_of(a)[stream]
    exceeded = next(r for r in recorded if isinstance(r.data, Transition) and r.data.trigger is Trigger.RETRY_BUDGET_EXCEEDED)
    [d] = diff_logs(a, b)
    assert d.status == "differs"
    assert d.index == recorded.index(exceeded) and d.seq_a == exceeded.seq
    assert d.a is not None and d.b is not None
    assert (d.a["trigger"], d.b["trigger"]) == ("retry_budget_exceeded", "transport_interrupted")
    assert set(d.fields) == {"attempt", "reason_code", "to_state", "trigger"}


# --- what may differ between faithful runs is ignored ------------------------------------------


def test_clock_ids_digests_and_seq_alone_are_ignored(runs: dict[str, Path], tmp_path: Path) -> None:
    """A run in reverse order, with another log id and clock, differs in ts, at_ns, durations, digests, ids, seq only: all same."""
    clock = functools.partial(StepClock, start_ns=1_900_000_000_000_000_000, step_ns=3_000_000)
    other = run_log(tmp_path / "other.jsonl", list(reversed(SCENARIOS)), log_id="another-log", clock=clock)
    a, b = streams_of(runs["a"]), streams_of(other)
    assert set(a) == set(b)
    differing: set[str] = set()
    for stream in a:
        assert len(a[stream]) == len(b[stream])
        for left, right in zip(a[stream], b[stream], strict=True):
            assert left.type == right.type
            differing |= {name for name in ("seq", "ts", "id", "h", "prev") if getattr(left, name) != getattr(right, name)}
            da, db = msgspec.to_builtins(left.data), msgspec.to_builtins(right.data)
            differing |= {k for k in ("at_ns", "duration_ms", "stream_digest") if k in da and da[k] != db[k]}
    assert differing == {"seq", "ts", "id", "h", "prev", "at_ns", "duration_ms", "stream_digest"}
    diffs = diff_logs(runs["a"], other)
    assert {d.status for d in diffs} == {"same"}
    assert invoke("diff", str(runs["a"]), str(other)).exit_code == 0
