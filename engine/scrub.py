"""Scrubbing a pack against its sidecar and against what the operations log vouches for.

What the sidecar protects (its pack digest) must be vouched for by the operations log
(`Vouched`): by an `evidence_sealed` event when the pack sits where packs are sealed, or,
for any other file an operator encoded, by a seal or a `sidecar_written` event of that
digest. A pack and sidecar forged together (the pack edited, the sidecar re-encoded to
match) are then `unsealed`, never `ok`.

Outcomes (`status`):
- ok                  pack, manifest and every fragment verify (each fragment equal to a
                      fresh encode of the pack), and the log vouches for the digest
- fragments_damaged   the pack matches; fragments (and maybe the manifest) do not: named
                      in `damaged`; `--repair` writes them anew (-> fragments_repaired)
- manifest_damaged    the pack and every fragment verify, the manifest does not;
                      `--repair` rebuilds it from the fragments (-> manifest_repaired)
- drift               the pack changed and its digest is vouched for later than the
                      sidecar's: the sidecar is stale (re-encode it); never "restored"
- corrupt             the pack changed and nothing vouches for it later: `--repair`
                      decodes the vouched pack from the fragments (-> restored)
- missing_pack        no pack: `--repair` decodes it (-> restored)
- unsealed            nothing in the log vouches for the digest the sidecar protects
                      (forged, or another root's): nothing is repaired
- unreadable          neither the manifest nor k fragments say what the sidecar protects

A repair keeps every file it replaces as NAME.damaged-<n> and writes only files it
creates new; if a step fails, the steps before it are undone (`engine.sidecar_write`).
A repair that cannot prove the bytes it would write (fewer than k good fragments) writes
nothing and says so.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from engine import durability
from engine.durability import DecodeProof, Sidecar, read_file, read_sidecar
from engine.sidecar_write import Publish
from events.atomic import move_aside
from events.errors import AsupError, ErrorCode
from events.fs import OS, FileSystem
from events.operations import DecodeProofRecorded

HEALTHY = ("ok", "restored", "fragments_repaired", "manifest_repaired")


class Vouched(msgspec.Struct, frozen=True):
    """Pack digests the operations log vouches for, each with the seq of the last event that did."""

    digests: dict[str, int] = msgspec.field(default_factory=dict)
    by: str = "seal"  # seal | sidecar_written (what kind of event counts for this pack)


class ScrubReport(msgspec.Struct, frozen=True):
    pack: str
    sidecar: str
    status: str
    sealed_digest: str  # what the sidecar protects ("" when unknown)
    pack_digest: str  # what the pack holds now ("" when missing)
    bad_fragments: list[int]
    kept: str | None  # where the first replaced file was kept
    detail: str
    damaged: list[str] = []  # every damaged part, named
    kept_files: list[str] = []
    forged_proofs: list[int] = []  # positions of manifest proofs without their events
    checked: int = 0  # parts checked: manifest, fragments, pack

    @property
    def healthy(self) -> bool:
        return self.status in HEALTHY


def keep_aside(path: Path, suffix: str) -> Path:
    """Rename `path` to `path.<suffix>-<n>` (first free n); never overwrites."""
    return move_aside(path, suffix)


def scrub(
    pack: Path,
    sidecar_file: Path,
    *,
    vouched: Vouched,
    repair: bool = False,
    proof_events: dict[int, DecodeProofRecorded] | None = None,
    fs: FileSystem = OS,
) -> ScrubReport:
    """`proof_events`: the decode_proof events of this sidecar by seq (None: the manifest's
    proofs are not judged, and a rebuilt manifest keeps what it can of them)."""
    sidecar = read_sidecar(sidecar_file, fs)
    raw = read_file(pack, durability.MAX_PACK, fs)
    if isinstance(raw, str):
        raise AsupError(ErrorCode.USAGE, f"the pack {raw}", file=str(pack))
    actual = durability.digest(raw) if raw is not None else ""
    forged = durability.match_proofs(sidecar.proofs, proof_events)[1] if proof_events is not None else []
    found = ScrubReport(str(pack), str(sidecar_file), "ok", "", actual, sidecar.bad, None, "", forged_proofs=forged, checked=sidecar.n + 2)
    if sidecar.binding is None:
        return _with(found, sidecar, "unreadable", "neither the manifest nor k fragments say what the sidecar protects")
    sealed = sidecar.binding.pack_digest
    found = msgspec.structs.replace(found, sealed_digest=sealed)
    if sealed not in vouched.digests:
        detail = f"no {vouched.by} event in the operations log vouches for {sealed}: a forged or foreign sidecar; nothing repaired"
        return _with(found, sidecar, "unsealed", detail)
    fixer = _Fixer(pack, sidecar, proof_events, fs)
    if raw is None:
        return fixer.restore(found, "missing_pack", "no pack", repair)
    if actual == sealed:
        durability.mark(sidecar, durability.confirm(sidecar, raw))
        return fixer.parts(found, raw, repair)
    if vouched.digests.get(actual, -1) > vouched.digests[sealed]:
        return _with(found, sidecar, "drift", f"the pack matches a later {vouched.by}: the sidecar is stale; re-encode it")
    return fixer.restore(found, "corrupt", "the pack matches nothing the log vouches for after the sidecar's", repair)


def _with(report: ScrubReport, sidecar: Sidecar, status: str, detail: str, kept: list[str] | None = None) -> ScrubReport:
    forged = (
        f"; {len(report.forged_proofs)} decode proof(s) in the manifest have no event (forged): not counted" if report.forged_proofs else ""
    )
    return msgspec.structs.replace(
        report,
        status=status,
        detail=detail + forged,
        bad_fragments=sidecar.bad,
        damaged=sidecar.damaged,
        kept=kept[0] if kept else None,
        kept_files=kept or [],
    )


class _Fixer:
    """The repairs: the pack restored, fragments and manifest rewritten, all or nothing."""

    def __init__(self, pack: Path, sidecar: Sidecar, proof_events: dict[int, DecodeProofRecorded] | None, fs: FileSystem) -> None:
        self.pack = pack
        self.sidecar = sidecar
        self.proof_events = proof_events
        self.fs = fs

    def restore(self, found: ScrubReport, status: str, what: str, repair: bool) -> ScrubReport:
        sidecar = self.sidecar
        if not repair:
            return _with(found, sidecar, status, f"{what}; `--repair` decodes the vouched pack from the fragments")
        try:
            data = durability.recover(sidecar)
        except AsupError as error:
            return _with(found, sidecar, status, f"{what}; cannot restore, nothing written: {error.message}")
        durability.mark(sidecar, durability.confirm(sidecar, data))
        with Publish("damaged", self.fs) as publish:
            publish.put(self.pack, data)
            self._rewrite(publish, data)
        return _with(found, sidecar, "restored", "restored the vouched pack from the fragments", publish.kept_paths())

    def parts(self, found: ScrubReport, data: bytes, repair: bool) -> ScrubReport:
        sidecar = self.sidecar
        if not sidecar.damaged:
            return _with(found, sidecar, "ok", "pack, manifest and every fragment verify")
        status = "fragments_damaged" if sidecar.bad else "manifest_damaged"
        if not repair:
            return _with(found, sidecar, status, f"damaged: {'; '.join(sidecar.damaged)}; `--repair` writes them anew from the pack")
        with Publish("damaged", self.fs) as publish:
            self._rewrite(publish, data)
        repaired = "fragments_repaired" if sidecar.bad else "manifest_repaired"
        return _with(found, sidecar, repaired, f"rewrote from the pack: {'; '.join(sidecar.damaged)}", publish.kept_paths())

    def _rewrite(self, publish: Publish, data: bytes) -> None:
        """Every damaged part of the sidecar written anew from the proven pack `data`."""
        sidecar = self.sidecar
        binding = sidecar.binding
        assert binding is not None  # the pack was proven through it
        fresh = durability.encode_bytes(data, self.pack.name, sidecar.path.name, k=binding.k, m=binding.m, codec=binding.codec)
        for index in sidecar.bad:
            publish.put(durability.fragment_path(sidecar.path, index), fresh.files[index])
        old = sidecar.manifest if not sidecar.manifest_damage else None
        if old is None or any(old.fragments[i] != fresh.manifest.fragments[i] for i in sidecar.bad):
            publish.put(sidecar.path, durability.manifest_bytes(msgspec.structs.replace(fresh.manifest, decode_proofs=self._proofs(old))))

    def _proofs(self, intact: durability.Manifest | None) -> list[DecodeProof]:
        """The rewritten manifest's proofs: an intact manifest's own; else rebuilt from the
        ops log when it is known; else what the damaged manifest still holds."""
        binding = self.sidecar.binding
        assert binding is not None
        if intact is not None:
            return list(intact.decode_proofs)
        if self.proof_events is not None:
            return durability.proofs_of(self.proof_events, binding.pack_digest)
        damaged = self.sidecar.manifest
        return list(damaged.decode_proofs) if damaged is not None else []
