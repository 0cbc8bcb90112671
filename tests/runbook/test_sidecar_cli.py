"""`asup durability` against hostile sidecars, in real processes where a crash would show:
an edited codec (pyeclib used to segfault), fragments forged for another backend, a v1
sidecar, a forged pack with a matching forged sidecar in a sealed root, forged decode
proofs, a damaged manifest drilled and rebuilt. Exit codes as documented, one line on
error, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec

from engine import durability
from engine import fragments as frag
from engine.sidecar_write import write_manifest, write_sidecar
from projections.artifact_paths import ArtifactPaths
from runbook import evidence
from tests.cli import run_asup
from tests.projections.helpers import edit_manifest, invoke, payload


def sealed_root(root: Path) -> ArtifactPaths:
    """A root with a sealed pack, its 8+4 sidecar, a scrub and a decode proof."""
    paths = ArtifactPaths(root)
    evidence.build_pack(paths)
    evidence.encode_sidecar(paths, paths.pack, k=8, m=4, codec="isa_l_rs_vand")
    evidence.run_scrub(paths, paths.pack, paths.sidecar, repair=False)
    assert evidence.run_drill(paths, paths.sidecar, paths.recovered, seed=7).ok
    return paths


def durability_cli(paths: ArtifactPaths, *args: str) -> tuple[int, str, str]:
    result = run_asup("durability", *args, "--root", str(paths.root), cwd=paths.root)
    assert "Traceback" not in result.stderr + result.stdout
    return result.returncode, result.stdout, result.stderr


def test_edited_codec_never_crashes_and_the_fragments_outvote_it(tmp_path: Path) -> None:
    """codec edited to liberasurecode_rs_vand in the manifest: scrub exit 1 naming it, the drill decodes (exit 0), no signal."""
    paths = sealed_root(tmp_path / "root")
    edit_manifest(paths.sidecar, lambda doc: doc.update(codec="liberasurecode_rs_vand"))
    code, out, _ = durability_cli(paths, "scrub", str(paths.pack), str(paths.sidecar), "--json")
    assert code == 1 and json.loads(out)["status"] == "manifest_damaged" and "codec" in json.loads(out)["damaged"][0]
    code, out, _ = durability_cli(paths, "decode-drill", str(paths.sidecar), str(tmp_path / "out.json"))
    assert code == 0, out
    assert (tmp_path / "out.json").read_bytes() == paths.pack.read_bytes()


def test_fragments_forged_for_another_backend_fail_closed(tmp_path: Path) -> None:
    """Every fragment header and the manifest rewritten to say liberasurecode (trailers recomputed): pyeclib's own header
    names isa_l, so no fragment reaches pyeclib; the drill fails closed with exit 1, no signal, no bytes written."""
    paths = sealed_root(tmp_path / "root")
    manifest = durability.load_manifest(paths.sidecar)
    entries = []
    for entry in manifest.fragments:
        path = durability.fragment_path(paths.sidecar, entry.index)
        unpacked = frag.unpack_file(path.read_bytes())
        assert not isinstance(unpacked, str)
        header, piece = unpacked
        data = frag.pack_file(msgspec.structs.replace(header.binding, codec="liberasurecode_rs_vand"), entry.index, piece)
        path.write_bytes(data)
        entries.append(msgspec.structs.replace(entry, digest=durability.digest(data)))
    write_manifest(paths.sidecar, msgspec.structs.replace(manifest, codec="liberasurecode_rs_vand", fragments=entries))
    out = tmp_path / "out.json"
    code, stdout, _ = durability_cli(paths, "decode-drill", str(paths.sidecar), str(out), "--json")
    assert code == 1 and not json.loads(stdout)["ok"] and not out.exists()
    assert "only 0 verified fragments" in json.loads(stdout)["detail"]
    code, stdout, _ = durability_cli(paths, "scrub", str(paths.pack), str(paths.sidecar), "--json")
    assert code == 1 and json.loads(stdout)["bad_fragments"] == list(range(12))


def test_v1_sidecar_is_one_line_exit_2(tmp_path: Path) -> None:
    """A base64 (asup.ec/1) sidecar: exit 2 and one line naming the file and saying to re-encode."""
    paths = sealed_root(tmp_path / "root")
    for path in durability.sidecar_files(paths.pack):
        path.unlink()
    legacy = {"format": "asup.ec/1", "codec": "isa_l_rs_vand", "k": 8, "m": 4, "fragments": [{"index": 0, "digest": "x", "data": "AAAA"}]}
    paths.sidecar.write_text(json.dumps(legacy))
    code, _, stderr = durability_cli(paths, "scrub", str(paths.pack), str(paths.sidecar))
    assert code == 2
    assert len(stderr.strip().splitlines()) == 1 and "re-encode it" in stderr and paths.sidecar.name in stderr


def test_forged_pack_with_matching_sidecar_in_a_sealed_root_is_unsealed(tmp_path: Path) -> None:
    """The sealed pack edited and its sidecar re-encoded (even through asup durability encode): scrub says unsealed, exit 1."""
    paths = sealed_root(tmp_path / "root")
    paths.pack.write_bytes(paths.pack.read_bytes().replace(b'"schema_version"', b'"schema_versioN"'))
    assert invoke("durability", "encode", str(paths.pack), "--root", str(paths.root)).exit_code == 0
    result = invoke("durability", "scrub", str(paths.pack), str(paths.sidecar), "--root", str(paths.root), "--json")
    assert result.exit_code == 1
    assert (payload(result)["status"], payload(result)["healthy"]) == ("unsealed", False)
    items = {i.id: i for i in evidence.current_checklist(paths)}
    assert items["durability"].status != "pass"


def test_forged_proofs_are_reported_and_never_counted(tmp_path: Path) -> None:
    """Two proofs copied into the manifest by hand: the drill counts only the real one (#2 after it), the checklist names 2 forged."""
    paths = sealed_root(tmp_path / "root")
    manifest = durability.load_manifest(paths.sidecar)
    [real] = manifest.decode_proofs
    forged = [real, msgspec.structs.replace(real, seq=real.seq + 100), msgspec.structs.replace(real, at="2030-01-01T00:00:00.000000Z")]
    write_manifest(paths.sidecar, msgspec.structs.replace(manifest, decode_proofs=forged))
    item = {i.id: i for i in evidence.current_checklist(paths)}["durability"]
    assert "2 decode proof(s) in the manifest have no event (forged): not counted" in item.reason
    assert "1 decode proof(s)" in item.reason
    result = invoke("durability", "decode-drill", str(paths.sidecar), str(paths.recovered), "--root", str(paths.root), "--json")
    assert result.exit_code == 0
    assert (payload(result)["proof_count"], payload(result)["forged_proofs"]) == (2, 2)
    scrubbed = invoke("durability", "scrub", str(paths.pack), str(paths.sidecar), "--root", str(paths.root), "--json")
    assert payload(scrubbed)["forged_proofs"] == [1, 2]


def test_damaged_manifest_drill_then_repair_keeps_every_proof(tmp_path: Path) -> None:
    """A byte of the manifest damaged: the drill still decodes (its proof in the ops log only, said so); scrub --repair
    rebuilds the manifest with both proofs from their events and keeps the damaged one; the checklist passes again."""
    paths = sealed_root(tmp_path / "root")
    raw = bytearray(paths.sidecar.read_bytes())
    raw[raw.index(b'"pack_digest"') + 20] ^= 0x01
    paths.sidecar.write_bytes(bytes(raw))
    drill = invoke("durability", "decode-drill", str(paths.sidecar), str(paths.recovered), "--root", str(paths.root), "--json")
    assert drill.exit_code == 0 and "the manifest is damaged" in payload(drill)["detail"]
    assert {i.id: i for i in evidence.current_checklist(paths)}["durability"].status == "fail"
    repair = invoke("durability", "scrub", str(paths.pack), str(paths.sidecar), "--repair", "--root", str(paths.root), "--json")
    assert (repair.exit_code, payload(repair)["status"]) == (0, "manifest_repaired")
    assert Path(payload(repair)["kept"]).read_bytes() == bytes(raw)
    assert len(durability.load_manifest(paths.sidecar).decode_proofs) == 2
    assert evidence.run_scrub(paths, paths.pack, paths.sidecar, repair=False).status == "ok"
    item = {i.id: i for i in evidence.current_checklist(paths)}["durability"]
    assert (item.status, "2 decode proof(s)" in item.reason) == ("pass", True)


def test_arbitrary_file_is_bound_by_its_sidecar_written_event(tmp_path: Path) -> None:
    """A file outside the sealed set, encoded through asup: its sidecar_written event vouches for it (ok); one encoded
    behind asup's back (no event) is unsealed."""
    root = tmp_path / "root"
    root.mkdir()
    notes = root / "notes.bin"
    notes.write_bytes(b"operator's file\n" * 500)
    assert invoke("durability", "encode", str(notes), "--root", str(root)).exit_code == 0
    sidecar = durability.sidecar_path(notes)
    ok = invoke("durability", "scrub", str(notes), str(sidecar), "--root", str(root), "--json")
    assert (ok.exit_code, payload(ok)["status"]) == (0, "ok")
    other = root / "other.bin"
    other.write_bytes(b"not encoded through asup\n" * 500)
    write_sidecar(durability.sidecar_path(other), durability.encode(other))
    unsealed = invoke("durability", "scrub", str(other), str(durability.sidecar_path(other)), "--root", str(root), "--json")
    assert (unsealed.exit_code, payload(unsealed)["status"]) == (1, "unsealed")
