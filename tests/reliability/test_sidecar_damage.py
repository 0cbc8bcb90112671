"""The sidecar against damage anywhere: every byte of the manifest, of every fragment's
header and trailer, of pyeclib's own header inside each fragment and a sample of the
fragment bodies, damaged one at a time; every pattern of up to m lost or damaged
fragments (headers included, with the manifest damaged too) and of m+1; edited codec, k
and m; duplicated and forged fragments. Scrub and the drill never raise anything but an
AsupError, the pack is always recovered while at most m fragments are bad, and what is
damaged is named."""

from __future__ import annotations

import itertools
import os
import random
import struct
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

from engine import durability
from engine import fragments as frag
from engine.scrub import ScrubReport, Vouched, scrub
from engine.sidecar_write import write_manifest, write_sidecar
from events.digest import digest_bytes
from events.errors import AsupError, ErrorCode
from events.operations import DecodeProofRecorded
from tests.reliability.crashloop import SEED, iterations, report

K, M = 8, 4
N = K + M
AT = "2026-01-01T00:00:00.000000Z"


class Damaged:
    """A 3000-byte pack, its 8+4 sidecar with one decode proof (and that proof's event), and the pristine bytes."""

    def __init__(self, root: Path) -> None:
        self.pack = root / "pack.json"
        self.pack.write_bytes(random.Random(11).randbytes(3000))
        self.data = self.pack.read_bytes()
        self.manifest = durability.sidecar_path(self.pack)
        write_sidecar(self.manifest, durability.encode(self.pack, k=K, m=M))
        _, proof = durability.drill(durability.read_sidecar(self.manifest), 7, AT)
        proof = msgspec.structs.replace(proof, seq=5)
        write_manifest(self.manifest, msgspec.structs.replace(durability.load_manifest(self.manifest), decode_proofs=[proof]))
        self.events = {5: _event(proof)}
        self.vouched = Vouched({digest_bytes(self.data): 1})
        self.files = [self.manifest] + [durability.fragment_path(self.manifest, i) for i in range(N)]
        self.pristine = {p: p.read_bytes() for p in self.files}

    def reset(self) -> None:
        for path in self.pack.parent.iterdir():
            if path.is_file() and path not in self.pristine and path != self.pack:
                path.unlink()
        for path, data in self.pristine.items():
            path.write_bytes(data)
        self.pack.write_bytes(self.data)

    def fragment(self, index: int) -> Path:
        return self.files[index + 1]

    def scrub(self, *, repair: bool = False) -> ScrubReport:
        return scrub(self.pack, self.manifest, vouched=self.vouched, repair=repair, proof_events=self.events)


def _event(proof: durability.DecodeProof) -> DecodeProofRecorded:
    return DecodeProofRecorded(
        sidecar="pack.json.ec.json",
        output="out",
        ok=True,
        dropped=proof.dropped,
        digest=proof.digest,
        one_more_loss_failed_closed=proof.one_more_loss_failed_closed,
        proof_count=1,
        seed=proof.seed,
        at=proof.at,
    )


@pytest.fixture
def damaged(memory_dir: Path) -> Iterator[Damaged]:
    """On tmpfs where there is one: thousands of rewrites of small files."""
    yield Damaged(memory_dir)


def flip(path: Path, at: int, mask: int = 0xFF) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= mask
    path.write_bytes(bytes(data))


def judge(damaged: Damaged, path: Path, counts: Counter[str], *, drill: bool = True) -> None:
    """After one damaged byte in `path`: scrub names it, the pack decodes, the drill still proves it."""
    result = damaged.scrub()
    named = any(line.startswith(f"{path.name}:") for line in result.damaged) or (path == damaged.manifest and result.forged_proofs)
    assert named, f"{path.name}: {result.status} {result.damaged} {result.forged_proofs}"
    assert result.status in ("fragments_damaged", "manifest_damaged", "ok"), result
    counts[result.status if not result.forged_proofs else "forged_or_damaged_proof"] += 1
    assert durability.recover(durability.read_sidecar(damaged.manifest)) == damaged.data
    if drill:
        data, proof = durability.drill(durability.read_sidecar(damaged.manifest), 7, AT)
        assert data == damaged.data and proof.one_more_loss_failed_closed


# --- every single damaged byte -----------------------------------------------------------------


def test_every_byte_of_the_manifest_damaged(damaged: Damaged) -> None:
    """One bit of each byte of the manifest flipped in turn: scrub names the manifest (or the proof it
    spoiled), the pack decodes from the fragments."""
    counts: Counter[str] = Counter()
    size = len(damaged.pristine[damaged.manifest])
    for at in range(size):
        damaged.reset()
        flip(damaged.manifest, at, 1 << (at % 7))  # one bit, the byte stays ASCII: JSON that still parses, often
        judge(damaged, damaged.manifest, counts, drill=at % 7 == 0)
    assert counts["ok"] == 0
    report("sidecar manifest: every byte flipped", Counter(bytes=size, **counts))


def test_every_header_byte_of_every_fragment_damaged(damaged: Damaged) -> None:
    """One bit of each byte of each fragment's asup header, pyeclib header and trailer, and 8 bytes
    of its body: the fragment named, the pack decodes."""
    counts: Counter[str] = Counter()
    rng = random.Random(3)
    size = len(damaged.pristine[damaged.fragment(0)])
    inner = range(frag.HEADER_SIZE, frag.HEADER_SIZE + frag.INNER_SIZE)
    body = range(frag.HEADER_SIZE + frag.INNER_SIZE, size - frag.TRAILER_SIZE)
    spots = [*range(frag.HEADER_SIZE), *inner, *range(size - frag.TRAILER_SIZE, size)]
    for index in range(N):
        for at in [*spots, *rng.sample(body, 8)]:
            damaged.reset()
            flip(damaged.fragment(index), at, 1 << (at % 8))
            judge(damaged, damaged.fragment(index), counts, drill=at % 11 == 0)
    report("sidecar fragments: every header and trailer byte flipped", Counter(flips=sum(counts.values()), **counts))


@pytest.mark.crash
def test_every_bit_of_the_sidecar_flipped(damaged: Damaged) -> None:
    """Every bit of the manifest and of every fragment file flipped in turn under ASUP_SOAK=1 (about 110,000
    flips), a seeded sample of them otherwise: always named, always recovered."""
    flips = [(path, at, bit) for path in damaged.files for at in range(len(damaged.pristine[path])) for bit in range(8)]
    if os.environ.get("ASUP_SOAK") != "1":
        flips = random.Random(SEED).sample(flips, iterations(300))
    counts: Counter[str] = Counter()
    for path, at, bit in flips:
        damaged.reset()
        flip(path, at, 1 << bit)
        judge(damaged, path, counts, drill=False)
    report("sidecar: bits flipped anywhere", Counter(flips=len(flips), **counts))


# --- patterns of lost and damaged fragments -------------------------------------------------------


def _spoil(damaged: Damaged, index: int, how: int) -> None:
    path = damaged.fragment(index)
    match how % 5:
        case 0:
            path.unlink()
        case 1:
            flip(path, 14)  # the index field of the asup header
        case 2:
            flip(path, frag.HEADER_SIZE + 54)  # the backend id in pyeclib's header
        case 3:
            flip(path, -1)  # the trailer
        case _:
            path.write_bytes(damaged.pristine[damaged.fragment((index + 1) % N)])  # another fragment's file


def test_every_pattern_of_up_to_m_bad_fragments_recovers(damaged: Damaged) -> None:
    """All 793 patterns of 1..m fragments lost or damaged (headers included; every third with the
    manifest's k edited too): recovered, each named."""
    counts: Counter[str] = Counter()
    for size in range(1, M + 1):
        for number, bad in enumerate(itertools.combinations(range(N), size)):
            damaged.reset()
            for how, index in enumerate(bad):
                _spoil(damaged, index, how + number)
            if number % 3 == 0:
                flip(damaged.manifest, damaged.pristine[damaged.manifest].index(b'"k":8') + 4, 0x01)
            result = damaged.scrub()
            assert result.bad_fragments == list(bad), (bad, result.damaged)
            assert (number % 3 == 0) == any(line.startswith(damaged.manifest.name) for line in result.damaged)
            assert durability.recover(durability.read_sidecar(damaged.manifest)) == damaged.data
            counts[f"{size} bad"] += 1
    assert sum(counts.values()) == 12 + 66 + 220 + 495
    report("sidecar: every pattern of up to m bad fragments", counts)


def test_every_pattern_of_m_plus_one_bad_fragments_fails_closed(damaged: Damaged) -> None:
    """All 792 patterns of m+1 bad fragments with the pack gone: recover raises corrupt_record; scrub --repair writes no byte."""
    counts: Counter[str] = Counter()
    for number, bad in enumerate(itertools.combinations(range(N), M + 1)):
        damaged.reset()
        damaged.pack.unlink()
        for how, index in enumerate(bad):
            _spoil(damaged, index, how + number)
        before = sorted(p.name for p in damaged.pack.parent.iterdir())
        with pytest.raises(AsupError) as raised:
            durability.recover(durability.read_sidecar(damaged.manifest))
        assert raised.value.code is ErrorCode.CORRUPT_RECORD
        result = damaged.scrub(repair=True)
        assert result.status == "missing_pack" and "nothing written" in result.detail
        assert sorted(p.name for p in damaged.pack.parent.iterdir()) == before
        counts["failed closed"] += 1
    assert counts["failed closed"] == 792
    report("sidecar: every pattern of m+1 bad fragments", counts)


# --- edited bindings, duplicates, forgeries -----------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("codec", "liberasurecode_rs_vand"),
        ("k", 7),
        ("k", 9),
        ("m", 3),
        ("m", 2),
        ("fragment_size", 500),
        ("pack_size", 2999),
        ("codec", "raptorq"),
    ],
)
def test_edited_binding_in_the_manifest_is_outvoted_by_the_fragments(damaged: Damaged, field: str, value: object) -> None:
    """codec, k, m or a size edited in the manifest: the fragments' headers say otherwise, so the manifest is named and the pack decodes."""
    document = msgspec.json.decode(damaged.pristine[damaged.manifest])
    document[field] = value
    damaged.manifest.write_bytes(msgspec.json.encode(document))
    result = damaged.scrub()
    assert result.status == "manifest_damaged" and result.bad_fragments == []
    assert field in result.damaged[0]
    assert durability.recover(durability.read_sidecar(damaged.manifest)) == damaged.data
    repaired = damaged.scrub(repair=True)
    assert repaired.status == "manifest_repaired" and damaged.manifest.read_bytes() == damaged.pristine[damaged.manifest]
    assert Path(repaired.kept or "").read_bytes() == msgspec.json.encode(document)


def forge(damaged: Damaged, index: int, source: int, *, inner: bool) -> None:
    """Fragment `source`'s bytes at slot `index` with a header, trailer and manifest digest forged to fit
    (and, with `inner`, pyeclib's header too, its CRC recomputed): only the bytes give it away."""
    unpacked = frag.unpack_file(damaged.pristine[damaged.fragment(source)])
    assert not isinstance(unpacked, str)
    header, piece = unpacked
    if inner:
        raw = bytearray(piece)
        struct.pack_into("<I", raw, 0, index)
        struct.pack_into("<I", raw, 67, zlib.crc32(bytes(raw[:59])))
        piece = bytes(raw)
    data = frag.pack_file(header.binding, index, piece)
    damaged.fragment(index).write_bytes(data)
    manifest = durability.load_manifest(damaged.manifest)
    entries = [msgspec.structs.replace(e, digest=digest_bytes(data)) if e.index == index else e for e in manifest.fragments]
    write_manifest(damaged.manifest, msgspec.structs.replace(manifest, fragments=entries))


@pytest.mark.parametrize("inner", [False, True], ids=["header", "header+pyeclib header"])
def test_duplicate_fragment_with_forged_digests_never_displaces_a_good_one(damaged: Damaged, inner: bool) -> None:
    """Fragment 5's bytes forged into slot 3 (valid trailer and manifest digest): slot 3 is named, the drill decodes from the good ones."""
    forge(damaged, 3, 5, inner=inner)
    result = damaged.scrub()
    assert (result.status, result.bad_fragments) == ("fragments_damaged", [3])
    for seed in range(20):
        data, proof = durability.drill(durability.read_sidecar(damaged.manifest), seed, AT)
        assert data == damaged.data and 3 in proof.dropped and proof.one_more_loss_failed_closed
    assert damaged.scrub(repair=True).status == "fragments_repaired"
    assert damaged.scrub().status == "ok"


def test_forged_pack_with_a_matching_forged_sidecar_is_unsealed(damaged: Damaged) -> None:
    """The pack edited and its sidecar re-encoded to match: no seal vouches for the digest, so scrub says unsealed and repairs nothing."""
    forged = damaged.data.replace(damaged.data[:8], b"FORGED!!", 1)
    damaged.pack.write_bytes(forged)
    write_sidecar(damaged.manifest, durability.encode(damaged.pack, k=K, m=M))
    result = damaged.scrub(repair=True)
    assert (result.status, result.healthy, result.kept_files) == ("unsealed", False, [])
    assert result.sealed_digest == result.pack_digest == digest_bytes(forged)
    assert damaged.pack.read_bytes() == forged


def test_forged_decode_proofs_are_named_and_not_counted(damaged: Damaged) -> None:
    """Proofs added to the manifest by hand (a copy of the real one, one citing no event): both named forged; only the real one counts."""
    manifest = durability.load_manifest(damaged.manifest)
    real = manifest.decode_proofs[0]
    forged = [real, msgspec.structs.replace(real, at="2027-01-01T00:00:00.000000Z"), msgspec.structs.replace(real, seq=99)]
    write_manifest(damaged.manifest, msgspec.structs.replace(manifest, decode_proofs=forged))
    assert durability.match_proofs(forged, damaged.events) == ([5], [1, 2])
    result = damaged.scrub()
    assert result.forged_proofs == [1, 2] and "2 decode proof(s) in the manifest have no event (forged)" in result.detail
    duplicate = [real, real]
    assert durability.match_proofs(duplicate, damaged.events) == ([5], [1])


def test_damaged_manifest_is_rebuilt_from_the_fragments_with_its_proofs(damaged: Damaged) -> None:
    """The manifest gone: the sidecar is read from its fragments; --repair rebuilds it byte for byte, proofs from their events."""
    damaged.manifest.unlink()
    sidecar = durability.read_sidecar(damaged.manifest)
    assert sidecar.binding == durability.parse_manifest(damaged.pristine[damaged.manifest], damaged.manifest).binding
    assert damaged.scrub().status == "manifest_damaged"
    assert damaged.scrub(repair=True).status == "manifest_repaired"
    assert damaged.manifest.read_bytes() == damaged.pristine[damaged.manifest]


def test_v1_sidecar_is_refused_with_a_line_that_says_re_encode(damaged: Damaged) -> None:
    """A base64 sidecar of the old format: one bad_input line naming the file and the command that re-encodes it."""
    damaged.manifest.write_bytes(b'{"format":"asup.ec/1","codec":"isa_l_rs_vand","fragments":[{"index":0,"digest":"x","data":"AAAA"}]}')
    with pytest.raises(AsupError) as raised:
        durability.read_sidecar(damaged.manifest)
    assert raised.value.code is ErrorCode.BAD_INPUT
    assert "re-encode it (asup durability encode" in raised.value.one_line()
    assert "\n" not in raised.value.one_line()
