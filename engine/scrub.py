"""Scrubbing a pack against its sidecar.

Outcomes (`status`):
- ok                  pack and every fragment match the manifest
- fragments_damaged   the pack matches, some fragments do not (`--repair` re-encodes them
                      from the pack, keeping the old sidecar as SIDECAR.damaged-<n>)
- drift               the pack changed and its digest matches a later seal: the sidecar is
                      stale (re-encode it); never "restored" over a newer pack
- corrupt             the pack changed and no seal knows its digest (`--repair` decodes the
                      sealed pack from the fragments, keeping the damaged one as
                      PACK.damaged-<n>)
- missing_pack        no pack at all (`--repair` decodes it)
- restored / fragments_repaired   what `--repair` made of the two above
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from engine.durability import Sidecar, decode, encode, good_fragments, load_sidecar, write_sidecar
from events.atomic import move_aside, write_atomic
from events.digest import digest_file

HEALTHY = ("ok", "restored", "fragments_repaired")


class ScrubReport(msgspec.Struct, frozen=True):
    pack: str
    sidecar: str
    status: str
    sealed_digest: str  # what the sidecar protects
    pack_digest: str  # what the pack holds now ("" when missing)
    bad_fragments: list[int]
    kept: str | None  # where replaced bytes were kept
    detail: str

    @property
    def healthy(self) -> bool:
        return self.status in HEALTHY


def keep_aside(path: Path, suffix: str) -> Path:
    """Rename `path` to `path.<suffix>-<n>` (first free n); never overwrites."""
    return move_aside(path, suffix)


def scrub(pack: Path, sidecar_file: Path, *, later_seals: set[str], repair: bool = False) -> ScrubReport:
    sidecar = load_sidecar(sidecar_file)
    _, bad = good_fragments(sidecar)
    actual = digest_file(pack) if pack.exists() else ""
    found = ScrubReport(str(pack), str(sidecar_file), "ok", sidecar.pack_digest, actual, bad, None, "")
    if not actual:
        return _missing(found, pack, sidecar, repair)
    if actual == sidecar.pack_digest:
        return _fragments(found, pack, sidecar_file, sidecar, repair)
    if actual in later_seals:
        return _with(found, "drift", "the pack matches a later seal: the sidecar is stale; re-encode it")
    if not repair:
        return _with(found, "corrupt", "the pack matches no seal; `--repair` restores the sealed pack")
    restored = decode(sidecar, list(range(sidecar.k + sidecar.m)))
    kept = keep_aside(pack, "damaged")
    write_atomic(pack, restored)
    return _with(found, "restored", "restored the sealed pack from the fragments", kept)


def _with(report: ScrubReport, status: str, detail: str, kept: Path | None = None) -> ScrubReport:
    return msgspec.structs.replace(report, status=status, detail=detail, kept=str(kept) if kept else None)


def _missing(found: ScrubReport, pack: Path, sidecar: Sidecar, repair: bool) -> ScrubReport:
    if not repair:
        return _with(found, "missing_pack", "no pack; `--repair` decodes it from the sidecar")
    write_atomic(pack, decode(sidecar, list(range(sidecar.k + sidecar.m))))
    return _with(found, "restored", "decoded the missing pack from the fragments")


def _fragments(found: ScrubReport, pack: Path, sidecar_file: Path, sidecar: Sidecar, repair: bool) -> ScrubReport:
    bad = found.bad_fragments
    if not bad:
        return _with(found, "ok", "pack and every fragment match the manifest")
    if not repair:
        return _with(found, "fragments_damaged", f"fragments {bad} fail their digests")
    fresh = encode(pack, k=sidecar.k, m=sidecar.m, codec=sidecar.codec)
    kept = keep_aside(sidecar_file, "damaged")
    write_sidecar(sidecar_file, msgspec.structs.replace(fresh, decode_proofs=sidecar.decode_proofs))
    return _with(found, "fragments_repaired", f"re-encoded fragments {bad} from the pack", kept)
