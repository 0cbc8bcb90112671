"""Capability negotiation: a transfer's requested primitives against the matrix (what the
class allows) and the adapter profile (what it offers) -> accepted, unsupported_capability
or capability_mismatch, with requested, offered and allowed values in the event."""

from __future__ import annotations

import msgspec
import pytest

from engine.contracts import CapabilityMatrix, default_matrix, load_profile
from engine.negotiation import default_requests, negotiate
from events.observations import CapabilityNegotiated, Intent, PrimitiveRequest
from events.vocabulary import Mode

SYNC = "asupersync::remote::sync_manifest"
RESUME = "asupersync::remote::resume_transfer"
EPOCH = "asupersync::replication::reconcile_epoch"
BLAKE3 = "asupersync::checksum::verify_blake3"
DECODE = "asupersync::erasure::decode_proof"
CLASSES = [
    "conformance_fixture_bundle",
    "benchmark_baseline_bundle",
    "migration_manifest",
    "reproducibility_ledger",
    "long_lived_state_snapshot",
]
KIB = 1024
MIB = 1024 * KIB


def _matrix() -> CapabilityMatrix:
    return default_matrix()


def _intent(
    artifact_class: str, *, chunk_size: int = 64 * KIB, mode: Mode = Mode.HARDENED, requested: list[PrimitiveRequest] | None = None
) -> Intent:
    if requested is None:
        requested = default_requests(_matrix(), artifact_class, chunk_size)
    return Intent(
        transfer_id="t-negotiate",
        artifact_id="artifact.bin",
        artifact_class=artifact_class,
        mode=mode,
        seed=1,
        expected_checksum="blake3:" + "0" * 64,
        size=1,
        max_attempts=0 if mode is Mode.STRICT else 3,
        chunk_size=chunk_size,
        source="artifact.bin",
        target="artifact.out",
        adapter="full",
        requested=requested,
    )


def _negotiate(intent: Intent, profile: str) -> CapabilityNegotiated:
    return negotiate(intent, _matrix(), load_profile(profile), at_ns=42)


def test_matrix_lists_the_five_classes() -> None:
    """The classes these tests walk are exactly the matrix's."""
    assert _matrix().artifact_classes == CLASSES


@pytest.mark.parametrize("mode", list(Mode))
@pytest.mark.parametrize("artifact_class", CLASSES)
def test_default_requests_with_full_profile_are_accepted(artifact_class: str, mode: Mode) -> None:
    """Every class's default requests, in either mode, are accepted by the full profile with nothing to report."""
    intent = _intent(artifact_class, mode=mode)
    event = _negotiate(intent, "full")
    assert event.outcome == "accepted"
    assert event.detail == []
    assert event.at_ns == 42
    entry = _matrix().entry(artifact_class)
    assert entry is not None
    assert [r.id for r in intent.requested] == [p.id for p in entry.asupersync_primitives]


@pytest.mark.parametrize(
    ("artifact_class", "missing"),
    [
        ("conformance_fixture_bundle", [RESUME]),
        ("benchmark_baseline_bundle", [EPOCH]),
        ("migration_manifest", [RESUME]),
        ("reproducibility_ledger", [EPOCH]),
        ("long_lived_state_snapshot", [RESUME, DECODE]),
    ],
)
def test_minimal_profile_is_unsupported_naming_the_primitive(artifact_class: str, missing: list[str]) -> None:
    """The minimal profile lacks resume/epoch/decode proof: unsupported_capability naming each missing primitive."""
    event = _negotiate(_intent(artifact_class), "minimal")
    assert event.outcome == "unsupported_capability"
    for primitive in missing:
        assert any(primitive in line and "does not offer" in line for line in event.detail), event.detail
        assert event.offered[primitive] is None
        assert event.allowed[primitive] is not None
    assert len(event.detail) == len(missing)


@pytest.mark.parametrize("artifact_class", CLASSES)
def test_legacy_protocol_is_a_version_mismatch(artifact_class: str) -> None:
    """An adapter speaking sync_manifest v0 is capability_mismatch naming the version."""
    event = _negotiate(_intent(artifact_class), "legacy_protocol")
    assert event.outcome == "capability_mismatch"
    assert len(event.detail) == 1
    assert SYNC in event.detail[0] and "version 0" in event.detail[0] and "requested 1" in event.detail[0]
    offered = event.offered[SYNC]
    assert offered is not None and offered.version == 0


@pytest.mark.parametrize("artifact_class", CLASSES)
def test_sha256_only_is_an_algorithm_mismatch(artifact_class: str) -> None:
    """An adapter that verifies with sha256 is capability_mismatch naming the algorithm."""
    event = _negotiate(_intent(artifact_class), "sha256_only")
    assert event.outcome == "capability_mismatch"
    assert len(event.detail) == 1
    assert BLAKE3 in event.detail[0] and "sha256" in event.detail[0] and "algorithm" in event.detail[0]
    offered = event.offered[BLAKE3]
    assert offered is not None and offered.params == {"algorithm": "sha256"}


def test_small_chunks_refuses_1_mib_chunks() -> None:
    """small_chunks allows at most 64 KiB: a 1 MiB chunk request is capability_mismatch naming the bound."""
    event = _negotiate(_intent("conformance_fixture_bundle", chunk_size=MIB), "small_chunks")
    assert event.outcome == "capability_mismatch"
    assert len(event.detail) == 1
    assert "chunk_size" in event.detail[0] and "65536" in event.detail[0] and str(MIB) in event.detail[0]


@pytest.mark.parametrize("chunk_size", [4 * KIB, 32 * KIB, 64 * KIB])
def test_small_chunks_accepts_chunks_within_its_bound(chunk_size: int) -> None:
    """small_chunks accepts a chunk size inside [4 KiB, 64 KiB] (32 KiB, and both edges)."""
    assert _negotiate(_intent("conformance_fixture_bundle", chunk_size=chunk_size), "small_chunks").outcome == "accepted"


def test_small_chunks_refuses_one_byte_past_its_bound() -> None:
    """64 KiB + 1 is past small_chunks' maximum: capability_mismatch."""
    assert _negotiate(_intent("conformance_fixture_bundle", chunk_size=64 * KIB + 1), "small_chunks").outcome == "capability_mismatch"


@pytest.mark.parametrize("chunk_size", [1, 1024, 4095])
def test_chunk_size_below_matrix_minimum_is_a_mismatch(chunk_size: int) -> None:
    """A chunk below the matrix's 4096-byte minimum is capability_mismatch from the matrix (and the adapter)."""
    event = _negotiate(_intent("migration_manifest", chunk_size=chunk_size), "full")
    assert event.outcome == "capability_mismatch"
    assert any("the matrix allows chunk_size in [4096, 8388608]" in line for line in event.detail), event.detail


def test_chunk_size_above_matrix_maximum_is_a_mismatch() -> None:
    """A chunk above the matrix's 8 MiB maximum is capability_mismatch."""
    event = _negotiate(_intent("migration_manifest", chunk_size=8 * MIB + 1), "full")
    assert event.outcome == "capability_mismatch"


def test_request_missing_verify_blake3_is_unsupported() -> None:
    """Leaving out verify_blake3, which every class requires, is unsupported_capability (required by class)."""
    requested = [r for r in default_requests(_matrix(), "conformance_fixture_bundle", 64 * KIB) if r.id != BLAKE3]
    event = _negotiate(_intent("conformance_fixture_bundle", requested=requested), "full")
    assert event.outcome == "unsupported_capability"
    assert event.detail == [f"{BLAKE3}: required by conformance_fixture_bundle but not requested"]


def test_request_for_a_primitive_the_class_does_not_allow_is_unsupported() -> None:
    """Asking for decode proof on a class whose matrix entry does not list it is unsupported_capability."""
    requested = [
        *default_requests(_matrix(), "conformance_fixture_bundle", 64 * KIB),
        PrimitiveRequest(DECODE, 1, {"codec": "isa_l_rs_vand"}),
    ]
    event = _negotiate(_intent("conformance_fixture_bundle", requested=requested), "full")
    assert event.outcome == "unsupported_capability"
    assert event.allowed[DECODE] is None
    assert event.offered[DECODE] is not None
    assert any(DECODE in line and "not allowed" in line for line in event.detail)


def test_unknown_artifact_class_is_unsupported() -> None:
    """A class missing from the matrix is unsupported_capability, whatever it requests."""
    requested = default_requests(_matrix(), "conformance_fixture_bundle", 64 * KIB)
    event = _negotiate(_intent("mystery_class", requested=requested), "full")
    assert event.outcome == "unsupported_capability"
    assert any("'mystery_class' is not in the capability matrix" in line for line in event.detail)
    assert all(value is None for value in event.allowed.values())
    assert default_requests(_matrix(), "mystery_class", 64 * KIB) == []
    bare = _negotiate(_intent("mystery_class"), "full")
    assert bare.outcome == "unsupported_capability"


def test_unsupported_wins_over_mismatch() -> None:
    """With both a missing primitive and a bad chunk size, the outcome is unsupported_capability and both are reported."""
    event = _negotiate(_intent("benchmark_baseline_bundle", chunk_size=1024), "minimal")
    assert event.outcome == "unsupported_capability"
    assert any(EPOCH in line and "does not offer" in line for line in event.detail)
    assert any("chunk_size" in line for line in event.detail)
    mismatch_only = _negotiate(_intent("benchmark_baseline_bundle", chunk_size=1024), "full")
    assert mismatch_only.outcome == "capability_mismatch"


def test_event_carries_requested_offered_and_allowed_values() -> None:
    """The event records what was requested, what the adapter offers and what the matrix allows, per primitive."""
    intent = _intent("conformance_fixture_bundle", chunk_size=MIB)
    event = _negotiate(intent, "small_chunks")
    assert event.requested == intent.requested
    assert set(event.offered) == set(event.allowed) == {r.id for r in intent.requested}
    assert event.offered[SYNC] == PrimitiveRequest(SYNC, 1, {"chunk_size_min": 4096, "chunk_size_max": 65536})
    assert event.allowed[SYNC] == PrimitiveRequest(SYNC, 1, {"chunk_size_min": 4096, "chunk_size_max": 8388608})
    requested_sync = next(r for r in event.requested if r.id == SYNC)
    assert requested_sync.params == {"chunk_size": MIB}
    assert event.offered[BLAKE3] == event.allowed[BLAKE3] == PrimitiveRequest(BLAKE3, 1, {"algorithm": "blake3"})
    decoded = msgspec.json.decode(msgspec.json.encode(event), type=CapabilityNegotiated)
    assert decoded == event  # what is recorded is what was decided


def test_negotiation_is_deterministic() -> None:
    """The same intent and profile give an identical event, byte for byte."""
    intent = _intent("long_lived_state_snapshot", chunk_size=1024)
    first = msgspec.json.encode(_negotiate(intent, "minimal"))
    assert first == msgspec.json.encode(_negotiate(intent, "minimal"))
