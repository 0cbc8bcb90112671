"""Every transfer that failed closed has its cause in one line, said from the observation
its failure was decided on, never the generic fallback; a rerun that completes clears it;
and the fold reads the same from a fold checkpoint as from the start."""

from __future__ import annotations

from pathlib import Path

import msgspec

from events.scan import read_records
from events.vocabulary import State
from projections.causes import Causes, CausesState
from projections.transfers import Transfers

GOLDEN = Path(__file__).parents[1] / "golden" / "logs" / "scenarios.jsonl"


def fold(records: list) -> tuple[CausesState, dict]:  # type: ignore[type-arg]
    causes, transfers = Causes(), Transfers()
    state, views = causes.initial(), transfers.initial()
    for record in records:
        state = causes.apply(state, record)
        views = transfers.apply(views, record)
    return state, views.transfers


def test_every_failed_transfer_has_its_own_cause() -> None:
    state, views = fold(list(read_records(GOLDEN)))
    failed = sorted(t for t, v in views.items() if v.state is State.FAILED_CLOSED)
    assert len(failed) == 13 and sorted(state.causes) == failed
    assert not [c for c in state.causes.values() if "is not allowed from" in c]
    assert "(ENOSPC, target write)" in state.causes["disk_full-7"]
    assert "allows" in state.causes["capability_mismatch-7"] or "version 0" in state.causes["capability_mismatch-7"]


def test_a_fold_checkpoint_reads_the_same_causes() -> None:
    """The state round-trips through msgspec (a fold checkpoint): the last observations come
    back as plain objects and are typed again when a failure needs them."""
    records = list(read_records(GOLDEN))
    half = len(records) // 2
    first, _ = fold(records[:half])
    revived = msgspec.json.decode(msgspec.json.encode(first), type=CausesState)
    causes = Causes()
    for record in records[half:]:
        revived = causes.apply(revived, record)
    whole, _ = fold(records)
    assert revived.causes == whole.causes
