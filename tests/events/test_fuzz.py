"""Mutational fuzzing of log bytes: damage anywhere yields typed outcomes only, never a crash or a hang."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from events.chain import ChainState
from events.clock import StepClock
from events.errors import AsupError
from events.jsonl_log import JsonlLog
from events.memory_log import MemoryLog
from events.payloads import Transition
from events.scan import Scanner
from events.vocabulary import State, Trigger

_LOG = MemoryLog("fuzz", clock=StepClock())
for _i in range(12):
    _LOG.append(
        f"s{_i % 3}",
        [
            Transition(
                transfer_id=f"s{_i % 3}",
                from_state=State.SYNCING,
                trigger=Trigger.CHUNK_COMMITTED,
                to_state=State.SYNCING,
                attempt=0,
                committed_cursor=_i,
            )
        ],
    )
PRISTINE = bytes(_LOG.data)

EDITS = st.lists(
    st.tuples(st.integers(0, len(PRISTINE) - 1), st.sampled_from(["flip", "delete", "insert", "zero"]), st.binary(min_size=1, max_size=8)),
    min_size=1,
    max_size=4,
)


def mutate(data: bytes, edits: list[tuple[int, str, bytes]]) -> bytes:
    out = bytearray(data)
    for at, kind, chunk in edits:
        at = min(at, len(out) - 1) if out else 0
        if kind == "flip" and out:
            out[at] ^= chunk[0] or 1
        elif kind == "delete":
            del out[at : at + len(chunk)]
        elif kind == "insert":
            out[at:at] = chunk
        else:
            out[at : at + len(chunk)] = bytes(len(chunk))
    return bytes(out)


@settings(max_examples=150, deadline=None)
@given(edits=EDITS)
def test_damaged_logs_give_typed_outcomes_only(tmp_path_factory: pytest.TempPathFactory, edits: list[tuple[int, str, bytes]]) -> None:
    """Any mutation: the scanner reads valid records then reports at most one problem; opening for append either works
    (only a torn tail was repaired, into a quarantine file holding exactly the cut bytes) or raises AsupError."""
    data = mutate(PRISTINE, edits)
    path = tmp_path_factory.mktemp("fuzz") / "log.jsonl"
    path.write_bytes(data)
    scanner = Scanner(path, ChainState())
    records = list(scanner)
    assert [r.seq for r in records] == list(range(1, len(records) + 1))
    if data == PRISTINE:
        assert scanner.problem is None
    try:
        with JsonlLog.open(path) as log:
            repaired = log.repaired
    except AsupError:
        assert path.read_bytes() == data  # a refused log is left exactly as it was
        return
    if repaired is not None:
        kept = (path.parent / repaired.quarantine).read_bytes()
        assert data.endswith(kept) and path.read_bytes().startswith(data[: len(data) - len(kept)])
