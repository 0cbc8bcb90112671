"""The line template that appends use must encode exactly as the Record struct does."""

from __future__ import annotations

from pathlib import Path

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from events.memory_log import MemoryLog
from events.payloads import LogRepaired, Transition
from events.record import SCHEMA_VERSION, TRAILER_LEN, encode_into
from events.schema import RECORD_CLASSES
from events.store import Pending
from events.vocabulary import State, Trigger

TEXT = st.text(min_size=1, max_size=40)


@given(stream=TEXT, event_id=TEXT, ts=TEXT, prev=TEXT, seq=st.integers(1, 2**62), sv=st.integers(1, 2**62), note=st.text(max_size=40))
def test_template_equals_struct_encoding(stream: str, event_id: str, ts: str, prev: str, seq: int, sv: int, note: str) -> None:
    """For any strings (escapes, non-ASCII) the templated line's prefix is the struct's encoding less `h`."""
    for data in (
        LogRepaired(offset=seq, length=sv, torn_digest=note, quarantine=note, reason=note),
        Transition(
            transfer_id=note, from_state=State.IDLE, trigger=Trigger.START, to_state=State.CAPABILITY_CHECK, attempt=0, committed_cursor=0
        ),
    ):
        buf = bytearray()
        encode_into(buf, seq=seq, stream=stream, sv=sv, event_id=event_id, ts=ts, data=data, prev=prev)
        record = RECORD_CLASSES[type(data)](v=SCHEMA_VERSION, seq=seq, stream=stream, sv=sv, id=event_id, ts=ts, data=data, prev=prev)
        expected = msgspec.json.encode(record)[: -len(b',"h":""}')]
        assert bytes(buf[: -(TRAILER_LEN + 1)]) == expected


def test_a_callers_event_id_with_quotes_is_escaped_in_the_line(tmp_path: Path) -> None:
    """An explicit id holding a quote and a backslash round-trips through the log intact."""
    log = MemoryLog("ids")
    event = LogRepaired(offset=0, length=0, torn_digest="", quarantine="", reason="")
    log.append_batch([Pending("s", event, id='a "quoted" \\ id')])
    assert [r.id for r in log.read() if r.stream == "s"] == ['a "quoted" \\ id']
