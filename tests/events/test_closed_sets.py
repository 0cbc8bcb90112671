"""The closed sets recorded in event fields are StrEnums: records written as plain strings
decode to members, encode to the same bytes, and a value outside the set is refused.
A negotiation refusal is the reason code the transfer fails closed with."""

from __future__ import annotations

import msgspec
import pytest

from events.observations import CapabilityNegotiated, FaultMet
from events.operations import SignoffRecorded
from events.vocabulary import CheckStatus, FaultKind, NegotiationOutcome, ReasonCode

NEGOTIATED = b'{"outcome":"capability_mismatch","requested":[],"offered":{},"allowed":{},"detail":["x"],"at_ns":3}'
FAULT = b'{"kind":"late_ack","chunk":2,"detail":"","at_ns":0}'
SIGNOFF = b'{"verdict":"fail","checklist":{"gates":"pass","durability":"pending"},"signoff":"s.json","digest":"d","pack_digest":"p"}'


def test_recorded_strings_decode_to_members_and_encode_unchanged() -> None:
    """Outcome, fault kind and check statuses written as strings decode to enum members and re-encode byte for byte."""
    negotiated = msgspec.json.decode(NEGOTIATED, type=CapabilityNegotiated)
    fault = msgspec.json.decode(FAULT, type=FaultMet)
    signoff = msgspec.json.decode(SIGNOFF, type=SignoffRecorded)
    assert negotiated.outcome is NegotiationOutcome.CAPABILITY_MISMATCH
    assert fault.kind is FaultKind.LATE_ACK
    assert signoff.verdict is CheckStatus.FAIL and signoff.checklist["durability"] is CheckStatus.PENDING
    for raw, event in ((NEGOTIATED, negotiated), (FAULT, fault), (SIGNOFF, signoff)):
        assert msgspec.json.encode(event) == raw


@pytest.mark.parametrize(
    ("raw", "type_"),
    [
        (NEGOTIATED.replace(b"capability_mismatch", b"maybe"), CapabilityNegotiated),
        (FAULT.replace(b"late_ack", b"meteor"), FaultMet),
        (SIGNOFF.replace(b'"pending"', b'"skipped"'), SignoffRecorded),
    ],
)
def test_a_value_outside_the_set_is_refused(raw: bytes, type_: type[msgspec.Struct]) -> None:
    """A recorded value that is not a member does not decode (it is not silently kept as a string)."""
    with pytest.raises(msgspec.ValidationError, match="Invalid enum value"):
        msgspec.json.decode(raw, type=type_)


def test_negotiation_refusals_are_reason_codes() -> None:
    """Every outcome but `accepted` is spelled as, and maps to, the reason code it fails closed with."""
    assert NegotiationOutcome.ACCEPTED.reason_code is None
    refusals = [o for o in NegotiationOutcome if o is not NegotiationOutcome.ACCEPTED]
    assert [o.reason_code for o in refusals] == [ReasonCode.UNSUPPORTED_CAPABILITY, ReasonCode.CAPABILITY_MISMATCH]
    assert all(o.value == o.reason_code for o in refusals)
