"""The operator checklist, derived from the operations log and the files under a root:
each of its five items reached as pass, fail and pending by real events and real files,
each decided item citing its evidence, and `asup checklist` exit codes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from events.digest import digest_file
from events.jsonl_log import JsonlLog
from events.operations import GateFinished
from events.record import Record
from projections.artifact_paths import ArtifactPaths
from projections.checklist import REQUIRED_GATES, Item
from runbook import evidence
from tests.projections.helpers import blank_fragments, copy_log, crafted_violations_log, invoke, lines, payload, records, run_scenarios
from tests.projections.helpers import scenario_log as make_scenario_log

LOG_REL = "scenarios/scenarios.jsonl"


@pytest.fixture(scope="module")
def small_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A three-scenario log (completed, failed closed, resumed), written once for the module."""
    root = tmp_path_factory.mktemp("checklist-log")
    return make_scenario_log(root / "scenarios.jsonl", root / "work", ["success", "retry_exhausted", "interruption_resume"])


def record_gate(paths: ArtifactPaths, gate: str, *, verdict: str = "pass", checks: int = 4) -> int:
    """Write a gate report file and record its gate_finished event; returns the event's seq."""
    report = paths.gates / f"{gate}.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(f'{{"gate": "{gate}", "verdict": "{verdict}", "checks": {checks}}}\n')
    event = GateFinished(
        gate=gate,
        verdict=verdict,
        checks=checks,
        failed=0 if verdict == "pass" else 1,
        report=paths.rel(report),
        report_digest=digest_file(report),
    )
    return evidence.record_op(paths, "gates", event)


def with_log(root: Path, log: Path) -> ArtifactPaths:
    paths = ArtifactPaths(root)
    copy_log(log, root / LOG_REL)
    return paths


def protect(paths: ArtifactPaths) -> None:
    """Sidecar, scrub and decode drill of the current pack, as the runbook orders them."""
    evidence.encode_sidecar(paths, paths.pack, k=4, m=2, codec="isa_l_rs_vand")
    assert evidence.run_scrub(paths, paths.pack, paths.sidecar, repair=False).status == "ok"
    assert evidence.run_drill(paths, paths.sidecar, paths.recovered, seed=7).ok


def ready(root: Path, log: Path) -> ArtifactPaths:
    """A root where the four gates passed, the pack is sealed and protected: every item but sign-off passes."""
    paths = with_log(root, log)
    for gate in REQUIRED_GATES:
        record_gate(paths, gate)
    evidence.build_pack(paths)
    protect(paths)
    return paths


def item(paths: ArtifactPaths, name: str) -> Item:
    return next(i for i in evidence.current_checklist(paths) if i.id == name)


def ops_records(paths: ArtifactPaths) -> dict[int, Record]:
    return {r.seq: r for r in records(paths.ops_log)}


# --- gates ---------------------------------------------------------------------------------


def test_gates_pass_when_all_four_pass_with_checks(tmp_path: Path) -> None:
    """Four gate_finished events with verdict pass and checks > 0: the gates item passes, citing each event and report."""
    paths = ArtifactPaths(tmp_path)
    seqs = {gate: record_gate(paths, gate) for gate in REQUIRED_GATES}
    gates = item(paths, "gates")
    assert gates.status == "pass"
    ops = ops_records(paths)
    assert {e["gate"]: (e["seq"], e["record_digest"]) for e in gates.evidence} == {g: (s, ops[s].h) for g, s in seqs.items()}
    for entry in gates.evidence:
        assert entry["report_digest"] == digest_file(paths.root / entry["report"])


def test_gate_with_no_checks_fails(tmp_path: Path) -> None:
    """A gate that passed having run zero checks makes the item fail, naming that gate."""
    paths = ArtifactPaths(tmp_path)
    for gate in REQUIRED_GATES:
        record_gate(paths, gate, checks=0 if gate == "fault" else 3)
    gates = item(paths, "gates")
    assert (gates.status, gates.reason) == ("fail", "gates failed or ran no check: fault")


def test_failed_gate_fails_even_with_one_missing(tmp_path: Path) -> None:
    """A failing gate makes the item fail (not pending) even while another gate has no result."""
    paths = ArtifactPaths(tmp_path)
    record_gate(paths, "capability")
    record_gate(paths, "performance", verdict="fail")
    gates = item(paths, "gates")
    assert gates.status == "fail"
    assert "performance" in gates.reason


def test_missing_gate_is_pending(tmp_path: Path) -> None:
    """Three of four gates recorded: pending, naming the missing one; nothing recorded: pending with no evidence."""
    paths = ArtifactPaths(tmp_path)
    assert (item(paths, "gates").status, item(paths, "gates").evidence) == ("pending", [])
    for gate in REQUIRED_GATES[:3]:
        record_gate(paths, gate)
    gates = item(paths, "gates")
    assert gates.status == "pending"
    assert gates.reason.endswith(REQUIRED_GATES[3])
    assert len(gates.evidence) == 3


def test_latest_gate_result_decides(tmp_path: Path) -> None:
    """A gate that failed and then passed counts as passed (and the other way round fails): the latest event decides."""
    paths = ArtifactPaths(tmp_path)
    record_gate(paths, "fault", verdict="fail")
    for gate in REQUIRED_GATES:
        record_gate(paths, gate)
    assert item(paths, "gates").status == "pass"
    record_gate(paths, "capability", verdict="fail")
    assert item(paths, "gates").status == "fail"


# --- durability ------------------------------------------------------------------------------


def test_durability_pending_without_sidecar(tmp_path: Path, small_log: Path) -> None:
    """A sealed pack with no sidecar yet: pending; with a sidecar but no scrub or drill since: still pending."""
    paths = with_log(tmp_path, small_log)
    evidence.build_pack(paths)
    assert item(paths, "durability").status == "pending"
    evidence.encode_sidecar(paths, paths.pack, k=4, m=2, codec="isa_l_rs_vand")
    assert item(paths, "durability").status == "pending"
    evidence.run_scrub(paths, paths.pack, paths.sidecar, repair=False)
    assert item(paths, "durability").status == "pending"  # no decode drill yet


def test_durability_passes_after_sidecar_scrub_and_drill(tmp_path: Path, small_log: Path) -> None:
    """Sidecar, scrub ok and a decode proof for the current pack: pass, citing the three events."""
    paths = with_log(tmp_path, small_log)
    evidence.build_pack(paths)
    protect(paths)
    durability = item(paths, "durability")
    assert durability.status == "pass"
    ops = ops_records(paths)
    kinds = [ops[e["seq"]].type for e in durability.evidence]
    assert kinds == ["sidecar_written", "scrub_finished", "decode_proof"]
    assert all(e["record_digest"] == ops[e["seq"]].h for e in durability.evidence)


def test_durability_fails_for_a_sidecar_of_another_pack(tmp_path: Path, small_log: Path) -> None:
    """A new pack sealed after the sidecar was written: the sidecar protects another digest, so the item fails."""
    paths = with_log(tmp_path, small_log)
    evidence.build_pack(paths)
    protect(paths)
    (tmp_path / "notes.txt").write_text("another artifact\n")
    evidence.build_pack(paths)
    durability = item(paths, "durability")
    assert durability.status == "fail"
    assert "another version" in durability.reason
    assert durability.evidence[0]["pack_digest"] != digest_file(paths.pack)


def test_durability_fails_after_a_failed_drill(tmp_path: Path, small_log: Path) -> None:
    """A decode drill that could not decode (m+1 fragments lost) makes the item fail."""
    paths = with_log(tmp_path, small_log)
    evidence.build_pack(paths)
    protect(paths)
    blank_fragments(paths.sidecar, [0, 1, 2])
    assert not evidence.run_drill(paths, paths.sidecar, tmp_path / "out.json", seed=3).ok
    assert item(paths, "durability").status == "fail"


# --- logs_replayable -------------------------------------------------------------------------


def test_logs_pending_without_logs(tmp_path: Path) -> None:
    """No structured log under the root: pending (the operations log does not count)."""
    paths = ArtifactPaths(tmp_path)
    record_gate(paths, "fault")
    assert item(paths, "logs_replayable").status == "pending"


def test_logs_pass_for_a_scenario_log(tmp_path: Path, small_log: Path) -> None:
    """A real scenario log verifies and re-drives identically: pass, citing its path, last seq and last digest."""
    paths = with_log(tmp_path, small_log)
    logs = item(paths, "logs_replayable")
    assert logs.status == "pass"
    last = records(paths.root / LOG_REL)[-1]
    [fact] = logs.evidence
    assert (Path(fact["path"]), fact["last_seq"], fact["last_h"]) == (paths.root / LOG_REL, last.seq, last.h)
    assert fact["streams"] == fact["reproduced"] == 3


def test_logs_fail_for_a_log_that_does_not_verify(tmp_path: Path, small_log: Path) -> None:
    """A flipped byte in the middle of a log makes the item fail, naming the log."""
    paths = with_log(tmp_path, small_log)
    log = paths.root / LOG_REL
    data = bytearray(log.read_bytes())
    data[sum(len(line) for line in lines(log)[:20]) + 30] ^= 0x02
    log.write_bytes(bytes(data))
    logs = item(paths, "logs_replayable")
    assert logs.status == "fail"
    assert str(log) in logs.reason
    assert logs.evidence[0]["ok"] is False and logs.evidence[0]["problem"]


def test_logs_fail_for_transitions_todays_code_would_not_make(tmp_path: Path) -> None:
    """A log that verifies but whose recorded transitions are not what re-driving its observations gives: fail."""
    paths = ArtifactPaths(tmp_path)
    crafted_violations_log(tmp_path / "logs" / "crafted.jsonl")
    logs = item(paths, "logs_replayable")
    assert logs.status == "fail"
    assert logs.evidence[0]["ok"] is True
    assert logs.evidence[0]["reproduced"] < logs.evidence[0]["streams"]


# --- pack_current ----------------------------------------------------------------------------


def test_pack_pending_without_pack(tmp_path: Path, small_log: Path) -> None:
    """No evidence pack yet: pending."""
    paths = with_log(tmp_path, small_log)
    assert item(paths, "pack_current").status == "pending"


def test_pack_passes_when_current(tmp_path: Path, small_log: Path) -> None:
    """Right after sealing every listed artifact and log head is current: pass."""
    paths = with_log(tmp_path, small_log)
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "r.json").write_text("{}\n")
    evidence.build_pack(paths)
    assert item(paths, "pack_current").status == "pass"


@pytest.mark.parametrize("change", ["edit", "delete"])
def test_pack_fails_when_an_inventoried_file_changes(tmp_path: Path, small_log: Path, change: str) -> None:
    """An artifact edited or deleted after sealing makes the item fail, naming its path."""
    paths = with_log(tmp_path, small_log)
    report = tmp_path / "reports" / "r.json"
    report.parent.mkdir()
    report.write_text('{"ok": true}\n')
    evidence.build_pack(paths)
    if change == "edit":
        report.write_text('{"ok": false}\n')
    else:
        report.unlink()
    pack = item(paths, "pack_current")
    assert pack.status == "fail"
    assert pack.reason == "stale or missing: reports/r.json"


def test_pack_fails_when_a_log_is_truncated_below_its_sealed_head(tmp_path: Path, small_log: Path) -> None:
    """A log cut (at a line boundary, so it still verifies) below the head the pack sealed: pack_current fails naming the log."""
    paths = with_log(tmp_path, small_log)
    evidence.build_pack(paths)
    log = paths.root / LOG_REL
    log.write_bytes(b"".join(lines(log)[:-3]))
    assert item(paths, "logs_replayable").evidence[0]["ok"] is True
    pack = item(paths, "pack_current")
    assert (pack.status, pack.reason) == ("fail", f"stale or missing: {LOG_REL}")


def test_pack_stays_current_when_a_log_grows(tmp_path: Path, small_log: Path) -> None:
    """Logs grow: appending records after sealing keeps the sealed head in place, so the pack stays current."""
    paths = with_log(tmp_path, small_log)
    evidence.build_pack(paths)
    with JsonlLog.open(paths.root / LOG_REL) as log:
        run_scenarios(log, tmp_path.parent / f"{tmp_path.name}-work", ["success"], seed=8)
    assert item(paths, "pack_current").status == "pass"
    assert item(paths, "logs_replayable").status == "pass"


def test_pack_current_cites_the_pack_path_and_digest(tmp_path: Path, small_log: Path) -> None:
    """The pack_current item's evidence names the pack's path next to its digest (spec: artifact path + digest)."""
    paths = with_log(tmp_path, small_log)
    evidence.build_pack(paths)
    cited, seal = item(paths, "pack_current").evidence
    assert cited == {"path": paths.rel(paths.pack), "digest": digest_file(paths.pack)}
    sealed = [r for r in records(paths.ops_log) if r.type == "evidence_sealed"][-1]
    assert seal == {"seq": sealed.seq, "record_digest": sealed.h, "pack": paths.rel(paths.pack), "digest": digest_file(paths.pack)}


# --- signoff ---------------------------------------------------------------------------------


def test_signoff_pending_then_pass(tmp_path: Path, small_log: Path) -> None:
    """Before any sign-off: pending; after a sign-off with every item passing: pass, citing the sign-off event and file digest."""
    paths = ready(tmp_path, small_log)
    assert item(paths, "signoff").status == "pending"
    verdict, items = evidence.sign_off(paths)
    assert verdict == "pass"
    assert [(i.id, i.status) for i in items] == [(i.id, "pass") for i in items]
    [cited] = item(paths, "signoff").evidence
    ops = ops_records(paths)
    assert (ops[cited["seq"]].type, ops[cited["seq"]].h) == ("signoff_recorded", cited["record_digest"])
    assert cited["digest"] == digest_file(paths.signoff)


def test_signoff_fails_when_an_item_regresses(tmp_path: Path, small_log: Path) -> None:
    """After a passing sign-off, an inventoried artifact edited: pack_current fails and so does sign-off, naming it."""
    paths = ready(tmp_path, small_log)
    assert evidence.sign_off(paths)[0] == "pass"
    contract = paths.contracts[1]
    contract.write_bytes(contract.read_bytes().replace(b"{", b"{ ", 1))
    signoff = item(paths, "signoff")
    assert signoff.status == "fail"
    assert signoff.reason == "items no longer pass since sign-off: pack_current"


def test_signoff_of_an_incomplete_checklist_fails(tmp_path: Path, small_log: Path) -> None:
    """Signing off while an item is pending records verdict fail; the item then fails."""
    paths = with_log(tmp_path, small_log)
    evidence.build_pack(paths)
    verdict, _ = evidence.sign_off(paths)
    assert verdict == "fail"
    signoff = item(paths, "signoff")
    assert (signoff.status, signoff.reason) == ("fail", "the last sign-off was not fully pass")


def test_signoff_for_an_older_pack_fails(tmp_path: Path, small_log: Path) -> None:
    """A new pack sealed after the sign-off: the sign-off is for another version of the pack."""
    paths = ready(tmp_path, small_log)
    assert evidence.sign_off(paths)[0] == "pass"
    evidence.build_pack(paths)
    protect(paths)
    signoff = item(paths, "signoff")
    assert (signoff.status, signoff.reason) == ("fail", "the sign-off is for another version of the pack")


# --- evidence and CLI ------------------------------------------------------------------------


def test_decided_items_cite_seq_and_record_digest_or_path_and_digest(tmp_path: Path, small_log: Path) -> None:
    """Every evidence entry of gates, durability, logs and sign-off cites an ops record (seq + its digest) or a file (path + digest)."""
    paths = ready(tmp_path, small_log)
    evidence.sign_off(paths)
    ops = ops_records(paths)
    for decided in evidence.current_checklist(paths):
        if decided.id == "pack_current":
            continue  # its own test
        assert decided.status == "pass" and decided.evidence, decided.id
        for entry in decided.evidence:
            if "seq" in entry:
                assert ops[entry["seq"]].h == entry["record_digest"], decided.id
            else:
                assert Path(entry["path"]).exists() and entry["last_h"].startswith("blake3:"), decided.id


def checklist_cli(paths: ArtifactPaths) -> tuple[int, dict[str, Any]]:
    result = invoke("checklist", "--root", str(paths.root), "--json")
    return result.exit_code, payload(result)


def test_checklist_cli_exit_codes(tmp_path: Path, small_log: Path) -> None:
    """`asup checklist --json` exits 1 while pending, 0 when all five pass, 1 again when an item fails."""
    paths = ready(tmp_path, small_log)
    code, document = checklist_cli(paths)
    assert (code, document["verdict"], document["checks"]) == (1, "pending", 5)
    assert [i["id"] for i in document["items"]] == ["gates", "durability", "logs_replayable", "pack_current", "signoff"]
    evidence.sign_off(paths)
    code, document = checklist_cli(paths)
    assert (code, document["verdict"]) == (0, "pass")
    assert {i["status"] for i in document["items"]} == {"pass"}
    assert document["ops_log"] == str(paths.ops_log)
    record_gate(paths, "fault", checks=0)
    code, document = checklist_cli(paths)
    assert (code, document["verdict"]) == (1, "fail")
    human = invoke("checklist", "--root", str(paths.root))
    assert human.exit_code == 1
    assert "gates failed or ran no check: fault" in human.stdout
