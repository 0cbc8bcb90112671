"""Erasure-coded sidecars against real damage on disk (pyeclib isa_l_rs_vand, 8+4 and 4+2):
bit rot, truncation, lost, duplicated and foreign fragments, an edited or missing pack, a
legitimately newer pack (drift), repairs that keep what they replace, decode drills whose
proof count grows, refused configurations and atomic sidecar writes; the CLI records
every outcome in the operations log."""

from __future__ import annotations

import itertools
import json
import os
import random
from pathlib import Path
from typing import Any

import msgspec
import pytest

from engine import durability
from engine.scrub import ScrubReport, Vouched, scrub
from engine.sidecar_write import write_manifest, write_sidecar
from events.digest import digest_bytes, digest_file
from events.errors import AsupError, ErrorCode
from events.operations import EvidenceSealed, ScrubFinished
from projections.artifact_paths import ArtifactPaths
from runbook import evidence
from tests.projections.helpers import blank_fragments, flip_fragment, fragment_file, invoke, payload, records

PACK_SIZE = 5000


class Protected:
    """A pack and its sidecar on disk, with the pristine bytes of every file."""

    def __init__(self, root: Path, k: int, m: int, seed: int = 1) -> None:
        self.k, self.m = k, m
        self.pack = root / "pack.json"
        self.pack.write_bytes(random.Random(seed).randbytes(PACK_SIZE))
        self.sidecar = durability.sidecar_path(self.pack)
        write_sidecar(self.sidecar, durability.encode(self.pack, k=k, m=m))
        self.pristine = {p: p.read_bytes() for p in [self.pack, *durability.sidecar_files(self.pack)]}
        self.pack_bytes = self.pack.read_bytes()
        self.vouched = Vouched({digest_bytes(self.pack_bytes): 1})

    @property
    def n(self) -> int:
        return self.k + self.m

    def reset(self) -> None:
        for path in self.pack.parent.iterdir():
            if path not in self.pristine and path.is_file():
                path.unlink()
        for path, data in self.pristine.items():
            path.write_bytes(data)

    def load(self) -> durability.Sidecar:
        return durability.read_sidecar(self.sidecar)

    def scrub(self, *, repair: bool = False, vouched: Vouched | None = None) -> ScrubReport:
        return scrub(self.pack, self.sidecar, vouched=vouched or self.vouched, repair=repair)

    def decode_all(self) -> bytes:
        return durability.recover(self.load())


@pytest.fixture(params=[(8, 4), (4, 2)], ids=["8+4", "4+2"])
def protected(request: pytest.FixtureRequest, tmp_path: Path) -> Protected:
    """A 5000-byte pack with its sidecar (isa_l_rs_vand) in tmp_path."""
    k, m = request.param
    return Protected(tmp_path, k, m)


def other_protected(tmp_path: Path, k: int, m: int) -> Protected:
    """Another pack of the same size, with its sidecar."""
    where = tmp_path / "other"
    where.mkdir()
    return Protected(where, k, m, seed=2)


# --- bit rot, truncation -------------------------------------------------------------------


def test_flipped_bit_in_each_fragment_is_named_by_scrub(protected: Protected) -> None:
    """One flipped bit in each fragment file in turn: scrub reports fragments_damaged naming exactly it; the rest still decode the pack."""
    for index in range(protected.n):
        protected.reset()
        flip_fragment(protected.sidecar, index)
        report = protected.scrub()
        assert (report.status, report.bad_fragments) == ("fragments_damaged", [index])
        assert report.damaged == [f"{fragment_file(protected.sidecar, index).name}: fails its own BLAKE3 trailer"]
        assert protected.pack.read_bytes() == protected.pack_bytes
        assert protected.decode_all() == protected.pack_bytes


def test_drill_still_decodes_with_one_flipped_fragment(protected: Protected) -> None:
    """With one fragment bit-rotted, the decode drill (default seed 7) excludes it and still decodes the pack."""
    failing = []
    for index in range(protected.n):
        protected.reset()
        flip_fragment(protected.sidecar, index)
        try:
            data, proof = durability.drill(protected.load(), 7, "2026-01-01T00:00:00.000000Z")
        except AsupError:
            failing.append(index)
            continue
        assert data == protected.pack_bytes
        assert proof.one_more_loss_failed_closed
        assert index in proof.dropped
    assert failing == []


@pytest.mark.parametrize("how", ["truncated", "zeroed", "extended", "emptied"])
def test_truncated_or_zeroed_fragment_is_named(protected: Protected, how: str) -> None:
    """A fragment file cut short, zeroed, grown or emptied, first and last in turn: scrub names it; decode uses the others."""
    for index in (0, protected.n - 1):
        protected.reset()
        path = fragment_file(protected.sidecar, index)
        data = path.read_bytes()
        path.write_bytes({"truncated": data[: len(data) // 2], "zeroed": bytes(len(data)), "extended": data + b"\0", "emptied": b""}[how])
        assert protected.scrub().bad_fragments == [index]
        assert protected.decode_all() == protected.pack_bytes


# --- lost fragments ---------------------------------------------------------------------------


def test_losing_up_to_m_fragments_always_decodes(protected: Protected) -> None:
    """Every pattern of up to m lost fragments decodes to the pack (22 patterns for 4+2, 794 for 8+4)."""
    sidecar = protected.load()
    patterns = [lost for size in range(protected.m + 1) for lost in itertools.combinations(range(protected.n), size)]
    assert len(patterns) == (22 if protected.m == 2 else 1 + 12 + 66 + 220 + 495)
    for lost in patterns:
        kept = [i for i in range(protected.n) if i not in lost]
        assert durability.decode(sidecar, kept) == protected.pack_bytes, lost


def test_losing_m_plus_one_fragments_fails_closed(protected: Protected) -> None:
    """Losing m+1 fragments raises AsupError (corrupt_record) and never returns bytes (every pattern)."""
    sidecar = protected.load()
    for lost in itertools.combinations(range(protected.n), protected.m + 1):
        kept = [i for i in range(protected.n) if i not in lost]
        with pytest.raises(AsupError) as raised:
            durability.decode(sidecar, kept)
        assert raised.value.code is ErrorCode.CORRUPT_RECORD


def test_fragments_lost_on_disk_up_to_m_and_one_more(protected: Protected) -> None:
    """m fragment files deleted: scrub names them and decode succeeds; one more: decode and drill fail closed."""
    lost = sorted(random.Random(3).sample(range(protected.n), protected.m))
    blank_fragments(protected.sidecar, lost)
    report = protected.scrub()
    assert report.bad_fragments == lost
    assert all(line.endswith(": missing") for line in report.damaged)
    assert protected.decode_all() == protected.pack_bytes
    extra = next(i for i in range(protected.n) if i not in lost)
    blank_fragments(protected.sidecar, [extra])
    with pytest.raises(AsupError):
        protected.decode_all()
    with pytest.raises(AsupError):
        durability.drill(protected.load(), 7, "t")


def test_repair_with_too_few_fragments_destroys_nothing(protected: Protected) -> None:
    """An edited pack and m+1 lost fragments: --repair says it cannot restore and changes no file, renames nothing."""
    damaged = b"edited" + protected.pack_bytes[6:]
    protected.pack.write_bytes(damaged)
    blank_fragments(protected.sidecar, list(range(protected.m + 1)))
    before = {p.name: p.read_bytes() for p in protected.pack.parent.iterdir()}
    report = protected.scrub(repair=True)
    assert report.status == "corrupt" and "cannot restore, nothing written" in report.detail
    assert not report.healthy and report.kept_files == []
    assert {p.name: p.read_bytes() for p in protected.pack.parent.iterdir()} == before


# --- duplicated and foreign fragments -----------------------------------------------------------


def test_duplicated_fragment_is_rejected_by_its_header(protected: Protected) -> None:
    """Fragment 1's file copied over fragment 0's: its header names index 1, so slot 0 is bad before decode; the rest decode."""
    fragment_file(protected.sidecar, 0).write_bytes(fragment_file(protected.sidecar, 1).read_bytes())
    sidecar = protected.load()
    assert sidecar.bad == [0] and 0 not in sidecar.fragments
    report = protected.scrub()
    assert (report.status, report.bad_fragments) == ("fragments_damaged", [0])
    assert "its header says it is fragment 1" in report.damaged[0]
    assert protected.decode_all() == protected.pack_bytes


def test_foreign_fragment_is_rejected_by_its_header(protected: Protected, tmp_path: Path) -> None:
    """Another same-size pack's fragment i placed at slot i: its header binds another pack digest; scrub names i; decode is right."""
    other = other_protected(tmp_path, protected.k, protected.m)
    for index in (0, protected.n - 1):
        protected.reset()
        fragment_file(protected.sidecar, index).write_bytes(fragment_file(other.sidecar, index).read_bytes())
        report = protected.scrub()
        assert report.bad_fragments == [index]
        assert "binds another pack_digest" in report.damaged[0]
        assert protected.decode_all() == protected.pack_bytes


def test_foreign_fragments_never_yield_wrong_bytes(protected: Protected, tmp_path: Path) -> None:
    """With another pack's fragment 0 spliced in, every k-set decodes to the pack's bytes or raises: never other bytes."""
    other = other_protected(tmp_path, protected.k, protected.m)
    fragment_file(protected.sidecar, 0).write_bytes(fragment_file(other.sidecar, 0).read_bytes())
    sidecar = protected.load()
    for lost in itertools.combinations(range(1, protected.n), protected.m):
        kept = [i for i in range(protected.n) if i not in lost]
        try:
            assert durability.decode(sidecar, kept) == protected.pack_bytes
        except AsupError as error:
            assert error.code is ErrorCode.CORRUPT_RECORD


# --- the pack: edited, missing, drift ------------------------------------------------------------


def test_edited_pack_is_corrupt_and_repair_keeps_the_damaged_copy(protected: Protected) -> None:
    """An edited pack scrubs as corrupt (untouched); --repair restores the sealed bytes and keeps the edited bytes as PACK.damaged-1."""
    damaged = protected.pack_bytes[:100] + b"X" + protected.pack_bytes[101:]
    protected.pack.write_bytes(damaged)
    report = protected.scrub()
    assert (report.status, report.pack_digest, report.kept) == ("corrupt", digest_bytes(damaged), None)
    assert protected.pack.read_bytes() == damaged
    repaired = protected.scrub(repair=True)
    assert repaired.status == "restored"
    assert protected.pack.read_bytes() == protected.pack_bytes
    kept = protected.pack.with_name("pack.json.damaged-1")
    assert repaired.kept == str(kept) and repaired.kept_files == [str(kept)]
    assert kept.read_bytes() == damaged
    protected.pack.write_bytes(damaged + b"again")
    assert Path(protected.scrub(repair=True).kept or "").name == "pack.json.damaged-2"
    assert kept.read_bytes() == damaged
    assert protected.scrub().status == "ok"


def test_missing_pack_is_restored_only_with_repair(protected: Protected) -> None:
    """No pack: scrub reports missing_pack and writes nothing; --repair decodes it byte-identical."""
    protected.pack.unlink()
    assert protected.scrub().status == "missing_pack"
    assert not protected.pack.exists()
    assert protected.scrub(repair=True).status == "restored"
    assert protected.pack.read_bytes() == protected.pack_bytes


def sealed(paths: ArtifactPaths, pack: Path) -> int:
    data = pack.read_bytes()
    return evidence.record_op(
        paths, "evidence", EvidenceSealed(pack=paths.rel(pack), digest=digest_bytes(data), size=len(data), artifacts=0)
    )


def test_legitimate_newer_pack_is_drift_not_restored(tmp_path: Path) -> None:
    """A pack changed and sealed again after its sidecar: scrub --repair reports drift and leaves the newer pack untouched."""
    paths = ArtifactPaths(tmp_path / "root")
    paths.v1.mkdir(parents=True)
    paths.pack.write_bytes(b'{"pack": 1}\n' * 300)
    sealed(paths, paths.pack)
    evidence.encode_sidecar(paths, paths.pack, k=8, m=4, codec="isa_l_rs_vand")
    newer = b'{"pack": 2}\n' * 310
    paths.pack.write_bytes(newer)
    sealed(paths, paths.pack)
    result = invoke("durability", "scrub", str(paths.pack), str(paths.sidecar), "--repair", "--root", str(paths.root), "--json")
    assert result.exit_code == 1
    report = payload(result)
    assert (report["status"], report["kept"], report["healthy"]) == ("drift", None, False)
    assert paths.pack.read_bytes() == newer
    assert not list(paths.v1.glob("*.damaged-*"))
    [event] = [r.data for r in records(paths.ops_log) if isinstance(r.data, ScrubFinished)]
    assert (event.status, event.pack_digest) == ("drift", digest_bytes(newer))


def test_pack_matching_an_older_seal_is_corrupt_not_drift(tmp_path: Path) -> None:
    """A pack rolled back to a seal older than its sidecar's is not drift: it scrubs corrupt and --repair restores the sealed one."""
    paths = ArtifactPaths(tmp_path / "root")
    paths.v1.mkdir(parents=True)
    older = b'{"pack": 0}\n' * 280
    paths.pack.write_bytes(older)
    sealed(paths, paths.pack)
    current = b'{"pack": 1}\n' * 300
    paths.pack.write_bytes(current)
    sealed(paths, paths.pack)
    evidence.encode_sidecar(paths, paths.pack, k=8, m=4, codec="isa_l_rs_vand")
    paths.pack.write_bytes(older)
    assert evidence.run_scrub(paths, paths.pack, paths.sidecar, repair=False).status == "corrupt"
    assert evidence.run_scrub(paths, paths.pack, paths.sidecar, repair=True).status == "restored"
    assert paths.pack.read_bytes() == current


def test_damaged_fragments_repair_reencodes_and_keeps_the_old_fragment(protected: Protected) -> None:
    """fragments_damaged then --repair: the fragment written anew from the pack, the damaged file kept byte-identical, proofs kept."""
    data, proof = durability.drill(protected.load(), 1, "t1")
    manifest = durability.load_manifest(protected.sidecar)
    write_manifest(protected.sidecar, msgspec.structs.replace(manifest, decode_proofs=[proof]))
    assert data == protected.pack_bytes
    flip_fragment(protected.sidecar, 2)
    damaged = fragment_file(protected.sidecar, 2).read_bytes()
    report = protected.scrub(repair=True)
    assert report.status == "fragments_repaired"
    kept = Path(report.kept or "")
    assert kept.name == "pack.json.ec.02.damaged-1" and report.kept_files == [str(kept)]
    assert kept.read_bytes() == damaged
    repaired = protected.load()
    assert repaired.bad == [] and not repaired.damaged
    assert durability.load_manifest(protected.sidecar).decode_proofs == [proof]
    assert protected.pack.read_bytes() == protected.pack_bytes
    assert protected.scrub().status == "ok"


# --- CLI: encode, scrub, drill, bad configs, atomic writes ---------------------------------------


@pytest.fixture
def root_pack(tmp_path: Path) -> ArtifactPaths:
    """An output root holding a pack at the runbook's path."""
    paths = ArtifactPaths(tmp_path / "root")
    paths.v1.mkdir(parents=True)
    paths.pack.write_bytes(json.dumps({"inventory": [{"n": i} for i in range(400)]}).encode())
    return paths


def ops_events(paths: ArtifactPaths, kind: str) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in paths.ops_log.read_bytes().splitlines()]
    return [{"seq": row["seq"], **row["data"]} for row in rows if row["type"] == kind]


def test_cli_encode_scrub_drill_record_events(root_pack: ArtifactPaths) -> None:
    """`asup durability encode|scrub|decode-drill --root R`: sidecar_written, scrub_finished and decode_proof land in the ops log."""
    paths = root_pack
    encode = invoke("durability", "encode", str(paths.pack), "--root", str(paths.root), "--json")
    assert encode.exit_code == 0, encode.output
    summary = payload(encode)
    assert (summary["codec"], summary["k"], summary["m"], summary["sidecar"]) == ("isa_l_rs_vand", 8, 4, str(paths.sidecar))
    [written] = ops_events(paths, "sidecar_written")
    assert (written["pack_digest"], written["sidecar_digest"]) == (digest_file(paths.pack), digest_file(paths.sidecar))
    assert written["sidecar"] == paths.rel(paths.sidecar)
    scrubbed = invoke("durability", "scrub", str(paths.pack), str(paths.sidecar), "--root", str(paths.root))
    assert scrubbed.exit_code == 0
    assert [e["status"] for e in ops_events(paths, "scrub_finished")] == ["ok"]
    assert json.loads(paths.scrub_report.read_bytes())["status"] == "ok"
    drill = invoke("durability", "decode-drill", str(paths.sidecar), str(paths.recovered), "--root", str(paths.root))
    assert drill.exit_code == 0
    [proof] = ops_events(paths, "decode_proof")
    assert (proof["ok"], proof["one_more_loss_failed_closed"], proof["proof_count"]) == (True, True, 1)
    assert proof["digest"] == digest_file(paths.pack)
    assert len(proof["dropped"]) == 4


def test_decode_drill_appends_a_proof_each_time(root_pack: ArtifactPaths) -> None:
    """Three drills: the proof count goes 1, 2, 3 in the sidecar and the ops log, and OUT is byte-identical to the pack each time."""
    paths = root_pack
    assert invoke("durability", "encode", str(paths.pack), "--k", "4", "--m", "2", "--root", str(paths.root)).exit_code == 0
    for seed in (1, 2, 3):
        out = paths.root / f"out-{seed}.json"
        result = invoke(
            "durability", "decode-drill", str(paths.sidecar), str(out), "--seed", str(seed), "--root", str(paths.root), "--json"
        )
        assert result.exit_code == 0
        assert payload(result)["proof_count"] == seed
        assert out.read_bytes() == paths.pack.read_bytes()
        proofs = durability.load_manifest(paths.sidecar).decode_proofs
        assert [p.seed for p in proofs] == [1, 2, 3][:seed]
        assert [p.seq for p in proofs] == [e["seq"] for e in ops_events(paths, "decode_proof")]
        assert len(proofs[-1].dropped) == 2 and proofs[-1].one_more_loss_failed_closed
    assert [e["proof_count"] for e in ops_events(paths, "decode_proof")] == [1, 2, 3]


@pytest.mark.parametrize(
    ("k", "m", "codec"),
    [(0, 4, "isa_l_rs_vand"), (8, 0, "isa_l_rs_vand"), (28, 5, "liberasurecode_rs_vand"), (8, 5, "isa_l_rs_vand"), (8, 4, "raptorq")],
    ids=["k=0", "m=0", "k+m>32", "isa_l_m=5", "unknown_codec"],
)
def test_bad_configs_are_usage_errors(root_pack: ArtifactPaths, k: int, m: int, codec: str) -> None:
    """k=0, m=0, k+m>32, isa_l with m=5 and an unknown codec are refused as usage errors (exit 2) before any sidecar is written."""
    paths = root_pack
    with pytest.raises(AsupError) as raised:
        durability.encode(paths.pack, k=k, m=m, codec=codec)
    assert raised.value.code is ErrorCode.USAGE
    result = invoke("durability", "encode", str(paths.pack), "--k", str(k), "--m", str(m), "--codec", codec, "--root", str(paths.root))
    assert result.exit_code == 2
    assert durability.sidecar_files(paths.pack) == [paths.sidecar]
    assert not paths.sidecar.exists()
    assert not paths.ops_log.exists()


def test_sidecar_writes_are_atomic_renames(root_pack: ArtifactPaths) -> None:
    """Encode, drill and repair replace the manifest by rename (a descriptor of the old file still
    reads its old bytes: nothing was written into it) and leave no .tmp."""
    paths = root_pack
    assert invoke("durability", "encode", str(paths.pack), "--root", str(paths.root)).exit_code == 0
    old = paths.sidecar.read_bytes()
    with paths.sidecar.open("rb") as before:
        inode = os.fstat(before.fileno()).st_ino
        assert invoke("durability", "decode-drill", str(paths.sidecar), str(paths.recovered), "--root", str(paths.root)).exit_code == 0
        assert before.read() == old != paths.sidecar.read_bytes()
        assert inode != paths.sidecar.stat().st_ino
    flip_fragment(paths.sidecar, 5)
    repair = invoke("durability", "scrub", str(paths.pack), str(paths.sidecar), "--repair", "--root", str(paths.root), "--json")
    assert payload(repair)["status"] == "fragments_repaired"
    assert Path(payload(repair)["kept"]).name == fragment_file(paths.sidecar, 5).name + ".damaged-1"
    assert not [p for p in paths.root.rglob("*") if p.name.endswith(".tmp")]


def test_scrub_cli_repair_of_an_edited_pack(root_pack: ArtifactPaths) -> None:
    """Through the CLI: an edited pack exits 1 as corrupt, then --repair exits 0 restored, with the damaged copy kept."""
    paths = root_pack
    assert invoke("durability", "encode", str(paths.pack), "--root", str(paths.root)).exit_code == 0
    sealed_bytes = paths.pack.read_bytes()
    paths.pack.write_bytes(sealed_bytes.replace(b'"n": 7}', b'"n": 8}'))
    edited = paths.pack.read_bytes()
    corrupt = invoke("durability", "scrub", str(paths.pack), str(paths.sidecar), "--root", str(paths.root), "--json")
    assert (corrupt.exit_code, payload(corrupt)["status"]) == (1, "corrupt")
    restored = invoke("durability", "scrub", str(paths.pack), str(paths.sidecar), "--repair", "--root", str(paths.root), "--json")
    assert (restored.exit_code, payload(restored)["status"]) == (0, "restored")
    assert paths.pack.read_bytes() == sealed_bytes
    assert Path(payload(restored)["kept"]).read_bytes() == edited
    assert [e["status"] for e in ops_events(paths, "scrub_finished")] == ["corrupt", "restored"]


def test_an_8_4_sidecar_of_a_1_mib_pack_is_at_most_1_6x_on_disk(tmp_path: Path) -> None:
    """Manifest and 12 fragment files of a 1 MiB pack: at most 1.6x the pack (about 1.50x; bench/sidecar_bench.py prints it)."""
    pack = tmp_path / "pack.bin"
    pack.write_bytes(random.Random(9).randbytes(1 << 20))
    write_sidecar(durability.sidecar_path(pack), durability.encode(pack))
    files = durability.sidecar_files(pack)
    assert len(files) == 13
    assert sum(p.stat().st_size for p in files) <= 1.6 * (1 << 20)


def test_sidecar_files_lists_the_manifest_and_every_fragment(protected: Protected) -> None:
    """sidecar_files: the manifest first, then PACK.ec.00 .. PACK.ec.NN that exist (a lost one is not listed)."""
    names = [p.name for p in durability.sidecar_files(protected.pack)]
    assert names == ["pack.json.ec.json"] + [f"pack.json.ec.{i:02d}" for i in range(protected.n)]
    blank_fragments(protected.sidecar, [1])
    assert "pack.json.ec.01" not in [p.name for p in durability.sidecar_files(protected.pack)]
