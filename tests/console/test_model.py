"""The console's model over real logs: pages, one transfer, replay, health, read-only."""

from __future__ import annotations

import tempfile
from pathlib import Path

import msgspec
import pytest

from events.errors import AsupError
from events.record import Record
from events.scan import read_records
from events.vocabulary import ReasonCode, State
from runbook.console.model import OPS_LOG, LogModel
from runbook.console.views import Query
from tests.console.helpers import SEED, tree


def cold(log: Path, root: Path | None = None) -> LogModel:
    model = LogModel([str(log)], root)
    model.cold_start(0)
    model.catch_up(0)
    return model


def test_the_page_counts_every_transfer_and_filters_by_state_reason_class_and_text(log: Path) -> None:
    model = cold(log)
    views = {r.stream for r in read_records(log) if r.stream != "$log"}
    everything = model.transfers(Query(size=500))
    assert everything.total == len(views) == len(everything.rows)
    assert sum(everything.by_state.values()) == len(views)
    assert everything.events == len(list(read_records(log)))
    failed = model.transfers(Query(state=State.FAILED_CLOSED.value, size=500))
    assert failed.total == everything.by_state[State.FAILED_CLOSED.value] > 0
    assert {r.state for r in failed.rows} == {State.FAILED_CLOSED.value}
    assert all(r.reason_code and r.cause for r in failed.rows), "a failed transfer shows its reason code and cause"
    exhausted = model.transfers(Query(reason=ReasonCode.RETRY_EXHAUSTED.value))
    assert exhausted.total == everything.by_reason[ReasonCode.RETRY_EXHAUSTED.value]
    assert {r.reason_code for r in exhausted.rows} == {ReasonCode.RETRY_EXHAUSTED.value}
    by_text = model.transfers(Query(text="DISK_FULL"))
    assert [r.transfer_id for r in by_text.rows] == [f"disk_full-{SEED}"]
    by_cause = model.transfers(Query(text="ENOSPC"))
    assert f"disk_full-{SEED}" in {r.transfer_id for r in by_cause.rows}
    klass = everything.classes[0]
    assert {r.artifact_class for r in model.transfers(Query(artifact_class=klass, size=500)).rows} == {klass}
    assert model.transfers(Query(artifact_class="no-such-class")).total == 0


def test_pages_sort_both_ways_and_never_overlap(log: Path) -> None:
    model = cold(log)
    total = model.transfers(Query()).total
    seen: list[str] = []
    page = 1
    while True:
        got = model.transfers(Query(sort="transfer", descending=False, page=page, size=4))
        seen += [r.transfer_id for r in got.rows]
        if page >= got.pages:
            break
        page += 1
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == total
    down = [r.transfer_id for r in model.transfers(Query(sort="transfer", descending=True, size=500)).rows]
    assert down == sorted(seen, reverse=True)
    by_seq = [r.last_seq for r in model.transfers(Query(size=500)).rows]
    assert by_seq == sorted(by_seq, reverse=True)
    assert model.transfers(Query(page=999, size=4)).page == got.pages  # past the end: the last page
    assert len(model.transfers(Query(size=10_000)).rows) <= 500


def test_the_same_log_gives_byte_identical_views(log: Path) -> None:
    one, two = cold(log), cold(log)
    for query in (Query(), Query(state="failed_closed", sort="reason")):
        assert msgspec.json.encode(one.transfers(query)) == msgspec.json.encode(two.transfers(query))
    key = f"0:retry_exhausted-{SEED}"
    assert msgspec.json.encode(one.transfer(key)) == msgspec.json.encode(two.transfer(key))


def test_a_failed_transfer_shows_its_cause_next_step_commands_timeline_and_path(log: Path) -> None:
    model = cold(log)
    detail = model.transfer(f"0:disk_full-{SEED}")
    assert detail is not None
    assert detail.row.reason_code == ReasonCode.IO_FAILED.value and "ENOSPC" in detail.row.cause
    assert detail.section == "D" and detail.level == "P1"
    assert "asup resume" in detail.next_step and "runbook section D" in detail.next_step
    purposes = {c.purpose: c.command for c in detail.commands}
    assert purposes["reproduce"] == f"asup replay {log} --transfer disk_full-{SEED}"
    assert purposes["resume"] == f"asup resume disk_full-{SEED} --log {log}"
    recorded = [r for r in read_records(log) if r.stream == f"disk_full-{SEED}"]
    assert [e.seq for e in detail.timeline] == [r.seq for r in recorded]
    assert [e.digest for e in detail.timeline] == [r.h for r in recorded]
    assert detail.timeline[-1].group == "transition" and detail.timeline[-1].to_state == State.FAILED_CLOSED.value
    assert detail.diagram.path[0] == State.IDLE.value and detail.diagram.current == State.FAILED_CLOSED.value
    taken = {(e.source, e.trigger, e.target) for e in detail.diagram.edges if e.taken}
    assert (State.SYNCING.value, "io_failed", State.FAILED_CLOSED.value) in taken
    assert "<script" not in detail.diagram.svg and detail.diagram.svg.startswith("<svg")
    assert model.transfer("0:no-such-transfer") is None and model.transfer("9:x") is None and model.transfer("junk") is None


def test_every_record_is_found_again_by_seq(log: Path) -> None:
    model = cold(log)
    records = list(read_records(log))
    for record in records:
        entry = model.event(0, record.seq)
        assert entry is not None and (entry.seq, entry.digest) == (record.seq, record.h)
    assert model.event(0, len(records) + 1) is None and model.event(0, 0) is None and model.event(OPS_LOG, 1) is None


def test_replay_reproduces_the_recorded_log(log: Path) -> None:
    result = cold(log).replay(0)
    assert result.outcome == "reproduced" and result.reproduced == result.transfers > 0
    assert result.command == f"asup replay {log}"


def test_replay_of_an_edited_decision_names_the_field_that_differs(diverging: tuple[Path, int]) -> None:
    path, seq = diverging
    model = cold(path)
    result = model.replay(0)
    assert result.outcome == "diverged"
    assert result.first_divergent_transfer == f"retry_exhausted-{SEED}"
    assert result.first_divergent_seq == seq  # the edited record
    fields = {d.field: (d.recorded, d.replayed) for d in result.diff}
    assert fields["attempt"] == (5, 1)
    one = model.replay(0, f"retry_exhausted-{SEED}")
    assert one.outcome == "diverged" and one.transfers == 1
    assert one.command == f"asup replay {path} --transfer retry_exhausted-{SEED}"
    assert model.replay(0, f"disk_full-{SEED}").outcome == "reproduced"


def test_health_judges_the_logs_with_evidence_linked(log: Path, root: Path) -> None:
    health = cold(log, root).health()
    assert health.level == "P0"  # capability codes failed closed
    failed = [r for r in health.rules if r.rule == "failed_closed_unsupported_capability"]
    assert failed and failed[0].evidence[0].href == f"/transfer/0%3Aunsupported_capability-{SEED}"
    assert health.root == str(root) and health.checklist, "a root gives the checklist"
    assert health.verdict in ("fail", "pending")  # no gates or evidence under a scenario root
    bare = cold(log).health()
    assert bare.verdict == "" and bare.checklist == [] and bare.level == "P0"


def test_artifact_metadata_only_under_the_root(log: Path, root: Path) -> None:
    model = cold(log, root)
    meta = model.artifact("scenarios/scenarios.jsonl")
    assert meta is not None and meta["kind"] == "file" and meta["size"] == log.stat().st_size
    assert model.artifact("/etc/passwd") is None and model.artifact("../../etc/passwd") is None
    (root / "escape").symlink_to("/etc")
    assert model.artifact("escape/passwd") is None
    assert cold(log).artifact("scenarios/scenarios.jsonl") is None


def test_the_model_writes_nothing(log: Path, root: Path, diverging: tuple[Path, int]) -> None:
    """Cold start, every view, replay and health leave every file as it was: no checkpoint,
    no head record, no lock file, no artifact."""
    before, before_div = tree(root), tree(diverging[0].parent)
    model = LogModel([str(log), str(diverging[0])], root)
    for index in (0, 1):
        model.cold_start(index)
        model.catch_up(index)
    for row in model.transfers(Query(size=500)).rows:
        model.transfer(row.key)
    model.replay(0)
    model.replay(1)
    model.health()
    model.event(0, 3)
    model.records_between(0, 0, 50)
    assert tree(root) == before
    assert tree(diverging[0].parent) == before_div


def test_a_damaged_log_shows_what_was_read_and_the_problem(log: Path) -> None:
    data = bytearray(log.read_bytes())
    middle = data.index(b"\n", len(data) // 2) + 20
    data[middle] = ord("#") if data[middle] != ord("#") else ord("$")
    log.write_bytes(bytes(data))
    model = cold(log)
    page = model.transfers(Query(size=500))
    assert 0 < page.events < len(data.splitlines())
    assert model.logs[0].problem and "corrupt" in model.logs[0].problem
    assert model.health().problems == [model.logs[0].problem]
    assert model.health().pending == ""
    assert model.progress()["problems"] == 1


@pytest.mark.parametrize("given", ["nats://127.0.0.1:4222/LOG?replicas=0", "missing.jsonl", "nats://[bad/LOG"])
def test_a_log_that_cannot_be_shown_is_refused_before_serving(given: str, tmp_path: Path) -> None:
    with pytest.raises(AsupError) as caught:
        LogModel([str(tmp_path / given) if "://" not in given else given])
    assert caught.value.code in ("usage", "log_not_found")


def test_a_refused_argument_leaves_no_copy_of_a_stream_before_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with pytest.raises(AsupError) as caught:
        LogModel(["nats://127.0.0.1:1/FIRST?timeout=1", str(tmp_path / "missing.jsonl")])
    assert caught.value.code == "log_not_found"
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_stream_is_a_problem_shown_and_its_copy_removed() -> None:
    model = LogModel(["nats://127.0.0.1:1/GONE?timeout=1"])
    copy = model.logs[0].mirror_dir
    assert copy is not None and copy.is_dir() and oct(copy.stat().st_mode & 0o777) == "0o700"
    model.cold_start(0)
    assert model.ready and "log_unreachable" in model.logs[0].problem
    assert model.transfers(Query()).total == 0
    model.close()
    assert not copy.exists()


def test_a_copy_that_cannot_be_written_is_a_problem_shown_not_a_crash() -> None:
    model = LogModel(["nats://127.0.0.1:1/GONE?timeout=1"])
    state = model.logs[0]
    assert state.mirror_dir is not None
    state.mirror_dir.rmdir()  # as a full or unwritable $TMPDIR refuses the copy: before any server is asked
    model.cold_start(0)
    assert model.ready and "cannot write the stream's local copy" in state.problem and str(state.path) in state.problem
    model.close()


def test_the_escalation_folds_catch_up_behind_the_rows_and_agree_with_one_pass(log: Path) -> None:
    """Rows first; the second pass reaches them even while records keep arriving, and then
    holds the same states as folding everything at once."""
    from tests.console.test_live import append_elsewhere

    model = LogModel([str(log)])
    model.cold_start(0)
    assert model.health().pending, "before the second pass the health page says it is incomplete"
    append_elsewhere(log, 5)
    model.apply(0, model.logs[0].tailer.drain())  # the follower is ahead of the second pass
    model.catch_up(0)
    assert model.health().pending == "" and model.logs[0].judged_seq == model.logs[0].last_seq
    append_elsewhere(log, 5)
    model.apply(0, model.logs[0].tailer.drain())  # now folded by both as they come
    fresh = cold(log)
    for name in ("audit", "metrics", "violations", "transfers", "causes"):
        assert msgspec.json.encode(model.logs[0].states[name]) == msgspec.json.encode(fresh.logs[0].states[name]), name


def test_a_large_log_folded_in_two_halves_equals_one_pass(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The two-core cold start (a worker folds the second half) gives the same rows, causes,
    counts and chain as the sequential pass, including streams that cross the cut."""
    from runbook.console import split_fold
    from tests.console.test_live import append_elsewhere

    one = LogModel([str(log)])
    one.cold_start(0)
    carried: list[int] = []
    original = split_fold.carried_records
    def counted(half: split_fold.Half) -> list[Record]:
        carried.append(len(half.carried))
        return original(half)

    monkeypatch.setattr(split_fold, "carried_records", counted)
    monkeypatch.setattr(split_fold, "SPLIT_FROM", 0)
    two = LogModel([str(log)])
    two.cold_start(0)
    assert carried and carried[0] > 0, "the cut fell inside a stream: its later records came back to be folded here"
    for name in ("transfers", "causes"):  # the same maps (their insertion order may differ)
        assert msgspec.to_builtins(two.logs[0].states[name]) == msgspec.to_builtins(one.logs[0].states[name]), name
    assert (two.logs[0].events, two.logs[0].last_seq) == (one.logs[0].events, one.logs[0].last_seq)
    assert msgspec.json.encode(two.transfers(Query(size=500))) == msgspec.json.encode(one.transfers(Query(size=500)))
    assert two.logs[0].tailer.offset == log.stat().st_size
    append_elsewhere(log, 3)  # the follower goes on from the stitched chain, verifying
    assert [r.stream for r in two.logs[0].tailer.drain()] == ["live-0", "live-1", "live-2"]


def test_a_damaged_large_log_falls_back_to_the_sequential_pass(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from runbook.console import split_fold

    data = bytearray(log.read_bytes())
    at = data.index(b"\n", len(data) * 3 // 4) + 20  # in the second half
    data[at] = ord("#") if data[at] != ord("#") else ord("$")
    log.write_bytes(bytes(data))
    sequential = cold(log)
    monkeypatch.setattr(split_fold, "SPLIT_FROM", 0)
    split = cold(log)
    assert split.logs[0].problem == sequential.logs[0].problem != ""
    assert split.logs[0].events == sequential.logs[0].events
