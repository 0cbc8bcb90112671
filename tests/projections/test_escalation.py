"""Escalation: every rule reached by a crafted log or real damage, with its level and the
evidence that proves it; `asup escalate` exits 1 on P0/P1 and 0 on P2 or nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from events.observations import ChunkWritten, IntentRecorded, TargetHashed
from events.payloads import Transition
from events.vocabulary import State, Trigger
from projections.artifact_paths import ArtifactPaths
from projections.escalation import Inputs, escalate, level_of
from runbook import evidence
from tests.projections.helpers import (
    CHECKSUM,
    OTHER_CHECKSUM,
    blank_fragments,
    copy_log,
    copy_sidecar,
    crafted_violations_log,
    intent,
    invoke,
    lines,
    payload,
    records,
    scenario_log,
    step,
    write_log,
)

ONE_SCENARIO = (
    "success",
    "capability_mismatch",
    "unsupported_capability",
    "checksum_mismatch",
    "partial_write",
    "late_ack",
    "retry_exhausted",
)


@pytest.fixture(scope="module")
def single(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One log per scenario (seed 7), written once for the module."""
    root = tmp_path_factory.mktemp("single")
    return {name: scenario_log(root / f"{name}.jsonl", root / "work", [name]) for name in ONE_SCENARIO}


def escalate_log(log: Path, root: Path) -> tuple[int, dict[str, Any]]:
    """`asup escalate LOG --root ROOT --json`: (exit code, document)."""
    result = invoke("escalate", str(log), "--root", str(root), "--json")
    return result.exit_code, payload(result)


def fired(document: dict[str, Any]) -> list[tuple[str, str]]:
    """The rules that fired, less the checklist rule that any root with a sealed but not yet
    signed-off pack also fires (its own tests assert it)."""
    return [(r["level"], r["rule"]) for r in document["rules"] if r["rule"] != "checklist_not_fully_pass"]


def completed_log(path: Path, hashed: str | None) -> Path:
    """A hand-written transfer that reaches completed; its target hashed to `hashed` (None: never hashed)."""
    entries: list[tuple[str, Any]] = [
        ("t-1", IntentRecorded(intent=intent("t-1", expected=CHECKSUM))),
        ("t-1", step("t-1", State.IDLE, Trigger.START, State.CAPABILITY_CHECK)),
        ("t-1", step("t-1", State.CAPABILITY_CHECK, Trigger.CAPABILITY_ACCEPTED, State.SYNCING)),
    ]
    if hashed is not None:
        entries.append(("t-1", TargetHashed(digest=hashed, size=3 * 4096, at_ns=5)))
    entries += [
        ("t-1", step("t-1", State.SYNCING, Trigger.CHECKSUM_VERIFICATION_STARTED, State.VERIFYING_CHECKSUM)),
        ("t-1", step("t-1", State.VERIFYING_CHECKSUM, Trigger.CHECKSUM_VALIDATED, State.COMPLETED, cursor=3 * 4096)),
    ]
    return write_log(path, entries)


# --- P0 ------------------------------------------------------------------------------------


def test_p0_log_fails_verification(single: dict[str, Path], tmp_path: Path) -> None:
    """A log with one flipped byte mid-file escalates P0 log_fails_verification naming the line; exit 1."""
    log = copy_log(single["success"], tmp_path / "flipped.jsonl")
    data = bytearray(log.read_bytes())
    data[sum(len(line) for line in lines(log)[:9]) + 50] ^= 0x04  # inside line 10
    log.write_bytes(bytes(data))
    code, document = escalate_log(log, tmp_path / "root")
    assert code == 1
    assert document["level"] == "P0"
    rule = next(r for r in document["rules"] if r["rule"] == "log_fails_verification")
    assert rule["level"] == "P0"
    assert rule["evidence"][0]["line"] == 10
    assert rule["evidence"][0]["log"] == str(log)


@pytest.mark.parametrize("hashed", [OTHER_CHECKSUM, None], ids=["other_digest", "never_hashed"])
def test_p0_completed_without_checksum_match(tmp_path: Path, hashed: str | None) -> None:
    """A transfer recorded as completed whose target digest differs from (or never met) the expected checksum is P0."""
    log = completed_log(tmp_path / "completed.jsonl", hashed)
    code, document = escalate_log(log, tmp_path / "root")
    assert code == 1
    assert fired(document) == [("P0", "completed_without_checksum_match")]
    evidence = document["rules"][0]["evidence"][0]
    assert (evidence["transfer_id"], evidence["last_seq"], evidence["verified"]) == ("t-1", records(log)[-1].seq, hashed)


def test_completed_with_matching_checksum_escalates_nothing(tmp_path: Path) -> None:
    """The same transfer with a matching target digest fires no rule; exit 0."""
    log = completed_log(tmp_path / "completed.jsonl", CHECKSUM)
    code, document = escalate_log(log, tmp_path / "root")
    assert (code, document["level"], document["rules"]) == (0, None, [])


def test_p0_transition_after_terminal_and_forbidden_accept(tmp_path: Path) -> None:
    """The crafted log's exit from failed_closed and its forbidden 'accepted' are each a P0 rule citing the record's seq."""
    log = crafted_violations_log(tmp_path / "violations.jsonl")
    code, document = escalate_log(log, tmp_path / "root")
    assert code == 1
    rules = {r["rule"]: r for r in document["rules"]}
    seq_of = {(r.stream, getattr(r.data, "trigger", r.type)): r.seq for r in records(log)}
    after = rules["transition_after_terminal"]
    assert (after["level"], after["detail"]) == ("P0", "t-exit")
    assert after["evidence"][0]["seq"] == seq_of[("t-exit", Trigger.CHUNK_COMMITTED)]
    forbidden = rules["capability_accepted_but_forbidden"]
    assert (forbidden["level"], forbidden["detail"]) == ("P0", "t-forbidden")
    assert forbidden["evidence"][0]["seq"] == seq_of[("t-forbidden", "capability_negotiated")]


@pytest.mark.parametrize(
    ("scenario", "code_", "level", "section"),
    [
        ("capability_mismatch", "capability_mismatch", "P0", "A"),
        ("unsupported_capability", "unsupported_capability", "P0", "A"),
        ("checksum_mismatch", "integrity_precheck_failed", "P1", "B"),
        ("partial_write", "conflict_detected", "P1", "C"),
        ("late_ack", "invalid_transition", "P1", "C"),
    ],
)
def test_failed_closed_codes_escalate_by_section(
    single: dict[str, Path], tmp_path: Path, scenario: str, code_: str, level: str, section: str
) -> None:
    """A transfer failing closed on a capability code is P0 (section A); integrity, conflict and invalid-transition codes P1; exit 1."""
    log = single[scenario]
    code, document = escalate_log(log, tmp_path / "root")
    assert code == 1
    assert fired(document) == [(level, f"failed_closed_{code_}")]
    evidence = document["rules"][0]["evidence"][0]
    failing = next(r for r in records(log) if isinstance(r.data, Transition) and r.data.to_state is State.FAILED_CLOSED)
    assert (evidence["seq"], evidence["transfer_id"], evidence["section"]) == (failing.seq, f"{scenario}-7", section)
    assert 0 < evidence["evidence_seq"] < failing.seq


# --- P1 ------------------------------------------------------------------------------------


def timed_log(path: Path, gaps_ms: list[int]) -> Path:
    entries: list[tuple[str, Any]] = [("t-slow", IntentRecorded(intent=intent("t-slow"), at_ns=0))]
    at = 0
    for number, gap in enumerate(gaps_ms):
        at += gap * 1_000_000
        entries.append(("t-slow", ChunkWritten(chunk=number, offset=0, length=1, digest="d", committed=1, epoch="e", at_ns=at)))
    return write_log(path, entries)


def test_p1_tail_latency_over_threshold(tmp_path: Path) -> None:
    """Chunk writes whose p99 gap exceeds the 2000 ms threshold escalate P1 tail_latency_over_threshold; exit 1."""
    log = timed_log(tmp_path / "slow.jsonl", [10, 10, 10, 5000])
    code, document = escalate_log(log, tmp_path / "root")
    assert code == 1
    assert fired(document) == [("P1", "tail_latency_over_threshold")]
    rule = document["rules"][0]
    assert rule["detail"].startswith("chunk_written p99 ")
    assert rule["evidence"][0]["count"] == 4
    assert rule["evidence"][0]["p99_ms"] > 2000


def test_tail_latency_under_threshold_is_quiet(tmp_path: Path) -> None:
    """Gaps up to 1999 ms keep chunk_written p99 under its threshold: nothing fires."""
    log = timed_log(tmp_path / "ok.jsonl", [10, 1999, 1999, 1999])
    code, document = escalate_log(log, tmp_path / "root")
    assert (code, document["rules"]) == (0, [])


def sealed_root(root: Path, k: int = 4, m: int = 2) -> ArtifactPaths:
    """A root with a real sealed pack and its sidecar (through the evidence workflow)."""
    paths = ArtifactPaths(root)
    evidence.build_pack(paths)
    evidence.encode_sidecar(paths, paths.pack, k=k, m=m, codec="isa_l_rs_vand")
    return paths


def escalate_root(paths: ArtifactPaths) -> tuple[int, dict[str, Any]]:
    result = invoke("escalate", "--root", str(paths.root), "--json")
    return result.exit_code, payload(result)


def test_p1_decode_proof_failed(tmp_path: Path) -> None:
    """A decode drill over a sidecar that lost m+1 fragments records a failed proof: P1 decode_proof_failed citing it; exit 1."""
    paths = sealed_root(tmp_path / "root")
    blank_fragments(paths.sidecar, [0, 2, 4])
    drill = invoke("durability", "decode-drill", str(paths.sidecar), str(paths.recovered), "--root", str(paths.root))
    assert drill.exit_code == 1
    assert not paths.recovered.exists()
    code, document = escalate_root(paths)
    assert code == 1
    assert fired(document) == [("P1", "decode_proof_failed")]
    proof = [r for r in records(paths.ops_log) if r.type == "decode_proof"][-1]
    assert document["rules"][0]["evidence"] == [{"seq": proof.seq, "record_digest": proof.h}]


@pytest.mark.parametrize("damage", ["corrupt", "missing_pack", "fragments_damaged", "manifest_damaged"])
def test_p1_scrub_failed(tmp_path: Path, damage: str) -> None:
    """A scrub that finds an edited pack, no pack, damaged fragments or a damaged manifest (not
    repaired) is P1 scrub_failed; exit 1."""
    paths = sealed_root(tmp_path / "root")
    if damage == "corrupt":
        paths.pack.write_bytes(paths.pack.read_bytes().replace(b"schema_version", b"schema_versioN"))
    elif damage == "missing_pack":
        paths.pack.unlink()
    elif damage == "manifest_damaged":
        paths.sidecar.write_bytes(paths.sidecar.read_bytes().replace(b'"k":4', b'"k":5', 1))
    else:
        blank_fragments(paths.sidecar, [1])
    scrub = invoke("durability", "scrub", str(paths.pack), str(paths.sidecar), "--root", str(paths.root))
    assert scrub.exit_code == 1
    code, document = escalate_root(paths)
    assert code == 1
    assert fired(document) == [("P1", "scrub_failed")]
    scrubbed = [r for r in records(paths.ops_log) if r.type == "scrub_finished"][-1]
    assert document["rules"][0]["detail"] == damage
    assert document["rules"][0]["evidence"] == [{"seq": scrubbed.seq, "record_digest": scrubbed.h, "status": damage}]


# --- P2 ------------------------------------------------------------------------------------


def test_p2_stale_sidecar_exits_zero(tmp_path: Path) -> None:
    """A pack rebuilt and sealed after its sidecar scrubs as drift: P2 stale_sidecar only, exit 0."""
    paths = sealed_root(tmp_path / "root")
    old_sidecar = copy_sidecar(paths.pack, tmp_path / "old")
    (paths.root / "notes.txt").write_text("a new artifact, so the next pack differs\n")
    evidence.build_pack(paths)
    scrub = invoke("durability", "scrub", str(paths.pack), str(old_sidecar), "--root", str(paths.root), "--json")
    assert payload(scrub)["status"] == "drift"
    code, document = escalate_root(paths)
    assert (code, document["level"]) == (0, "P2")
    assert fired(document) == [("P2", "stale_sidecar")]


def test_p2_failed_closed_retry_exhausted_exits_zero(single: dict[str, Path], tmp_path: Path) -> None:
    """Retry exhaustion is operational drift: P2 failed_closed_retry_exhausted, exit 0."""
    code, document = escalate_log(single["retry_exhausted"], tmp_path / "root")
    assert (code, document["level"]) == (0, "P2")
    assert fired(document) == [("P2", "failed_closed_retry_exhausted")]


def test_clean_log_escalates_nothing(single: dict[str, Path], tmp_path: Path) -> None:
    """A successful transfer's log fires no rule: level none, exit 0."""
    code, document = escalate_log(single["success"], tmp_path / "root")
    assert (code, document["level"], document["rules"]) == (0, None, [])


def test_p2_checklist_not_fully_pass(tmp_path: Path) -> None:
    """A checklist with pending or failing items is P2 checklist_not_fully_pass listing each open item; the sealed pack records it."""
    paths = sealed_root(tmp_path / "root")
    items = evidence.current_checklist(paths)
    rules = escalate(Inputs(checklist=items))
    assert [(r.level, r.rule) for r in rules] == [("P2", "checklist_not_fully_pass")]
    open_items = {e["item"]: e["status"] for e in rules[0].evidence}
    assert open_items == {i.id: i.status for i in items if i.status != "pass"}
    assert open_items["gates"] == "pending"
    assert level_of(rules) == "P2"
    assert level_of([]) is None
    pack = payload_of(paths.pack)
    assert ("P2", "checklist_not_fully_pass") in [(r["level"], r["rule"]) for r in pack["escalation"]["rules"]]


def payload_of(path: Path) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(path.read_bytes())
    return document


def test_escalate_cli_reports_stale_artifact_paths_as_p2(tmp_path: Path) -> None:
    """`asup escalate --root` reports evidence drift (an inventoried artifact edited after sealing) as a P2 rule naming it, exit 0."""
    paths = ArtifactPaths(tmp_path / "root")
    evidence.build_pack(paths)
    edited = paths.contracts[0]
    edited.write_bytes(edited.read_bytes() + b"\n")
    code, document = escalate_root(paths)
    assert code == 0
    assert document["level"] == "P2"
    assert paths.rel(edited) in str(document["rules"])


def test_several_logs_level_and_exit(single: dict[str, Path], tmp_path: Path) -> None:
    """Several logs at once: every log's rules are reported, the level is the most severe one's and exit is 1."""
    result = invoke(
        "escalate", str(single["retry_exhausted"]), str(single["capability_mismatch"]), "--root", str(tmp_path / "root"), "--json"
    )
    assert result.exit_code == 1
    document = payload(result)
    assert document["level"] == "P0"
    assert sorted(fired(document)) == [("P0", "failed_closed_capability_mismatch"), ("P2", "failed_closed_retry_exhausted")]


def test_several_logs_rules_sorted_most_severe_first(single: dict[str, Path], tmp_path: Path) -> None:
    """Rules from several logs are listed P0 first, as they are for one log (escalate() sorts by level)."""
    result = invoke(
        "escalate", str(single["retry_exhausted"]), str(single["capability_mismatch"]), "--root", str(tmp_path / "root"), "--json"
    )
    levels = [r["level"] for r in payload(result)["rules"]]
    assert levels == ["P0", "P2"]
