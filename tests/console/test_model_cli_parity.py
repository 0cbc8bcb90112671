"""The console's model says what the CLI says, and keeps the process as it found it: health's
rules and checklist equal `asup escalate --json` and `asup checklist --json` over the same
log and root, evidence for evidence; the page's counts follow new records; an event behind
damage is None, not an exception for the web layer; the garbage collector is back as it was
after a cold start."""

from __future__ import annotations

import gc
import json
from array import array
from pathlib import Path

import msgspec
import pytest

from events.jsonl_log import JsonlLog
from events.observations import IntentRecorded
from events.record import Record
from runbook.console import split_fold
from runbook.console.model import LogModel
from runbook.console.views import Query
from tests.projections.helpers import intent, invoke, payload, streams_of, write_log


def cold(log: Path, root: Path | None = None) -> LogModel:
    model = LogModel([str(log)], root)
    model.cold_start(0)
    model.catch_up(0)
    return model


def test_health_has_the_rules_asup_escalate_gives(log: Path, root: Path) -> None:
    cli = payload(invoke("escalate", str(log), "--root", str(root), "--json"))
    health = cold(log, root).health()
    assert health.level == cli["level"]
    mine = sorted(json.dumps([r.level, r.rule, r.detail, [e.detail for e in r.evidence]], sort_keys=True) for r in health.rules)
    theirs = sorted(json.dumps([r["level"], r["rule"], r["detail"], r["evidence"]], sort_keys=True) for r in cli["rules"])
    assert mine == theirs


def test_health_has_the_checklist_asup_checklist_gives(log: Path, root: Path) -> None:
    cli = payload(invoke("checklist", "--root", str(root), "--json"))
    health = cold(log, root).health()
    assert health.verdict == cli["verdict"]
    mine = [[i.id, i.status, i.reason, [e.detail for e in i.evidence]] for i in health.checklist]
    assert mine == [[i["id"], i["status"], i["reason"], i["evidence"]] for i in cli["items"]]


def test_the_page_counts_follow_new_records(log: Path) -> None:
    model = cold(log)
    before = model.transfers(Query())
    with JsonlLog.open(log) as writer:
        writer.append("t-new", [IntentRecorded(intent=intent("t-new"))])
    model.apply(0, model.logs[0].tailer.drain())
    after = model.transfers(Query())
    assert after.total == before.total + 1
    assert sum(after.by_state.values()) == sum(before.by_state.values()) + 1
    assert after.rows[0].transfer_id == "t-new"


def test_an_event_behind_damage_is_none_not_an_error(log: Path) -> None:
    model = cold(log)
    data = bytearray(log.read_bytes())
    data[100] ^= 0x01  # inside the first records
    log.write_bytes(bytes(data))
    assert model.event(0, model.logs[0].last_seq) is None


def test_the_collector_is_back_as_it_was_after_a_cold_start(log: Path) -> None:
    assert gc.isenabled()
    seen: list[bool] = []
    model = LogModel([str(log)], None)
    state = model.logs[0]
    folding = state.fold

    def watched(record: Record) -> None:
        seen.append(gc.isenabled())
        folding(record)

    state.fold = watched  # type: ignore[method-assign]
    model.cold_start(0)
    assert seen and not any(seen)  # off while folding
    assert gc.isenabled()
    gc.disable()
    try:
        cold(log)
        assert not gc.isenabled()  # a caller's choice is kept
    finally:
        gc.enable()


# --- a transfer's records found again by its seqs ----------------------------------------------


def interleaved(path: Path, streams: int, rounds: int) -> Path:
    """`streams` transfers whose records alternate (as a runner's concurrent transfers do)."""
    entries = [(f"t-{s:03d}", IntentRecorded(intent=intent(f"t-{s:03d}"))) for s in range(streams)]
    entries += [(f"t-{s:03d}", IntentRecorded(intent=intent(f"t-{s:03d}"))) for _ in range(rounds) for s in range(streams)]
    return write_log(path, entries)


@pytest.mark.parametrize("streams", [3, 400])  # gaps below and above what is read through
def test_interleaved_transfers_read_back_whole_and_in_order(tmp_path: Path, streams: int) -> None:
    log = interleaved(tmp_path / "interleaved.jsonl", streams, 4)
    model = cold(log)
    for name in ("t-000", f"t-{streams // 2:03d}", f"t-{streams - 1:03d}"):
        detail = model.transfer(f"0:{name}")
        assert detail is not None
        assert [e.digest for e in detail.timeline] == [r.h for r in streams_of(log)[name]]


def test_a_split_cold_start_indexes_every_stream_as_one_pass_does(log: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    one = cold(log)
    monkeypatch.setattr(split_fold, "SPLIT_FROM", 0)
    born: list[int] = []
    seqs_of = split_fold.seqs_of

    def counted(half: split_fold.Half) -> dict[str, array[int]]:
        born.append(len(half.seqs))
        return seqs_of(half)

    monkeypatch.setattr(split_fold, "seqs_of", counted)
    split = cold(log)
    assert born and born[0] > 0  # the second half's worker did fold streams born there
    assert split.logs[0].seqs == one.logs[0].seqs
    for row in one.transfers(Query(size=500)).rows:
        assert msgspec.json.encode(split.transfer(row.key)) == msgspec.json.encode(one.transfer(row.key))
