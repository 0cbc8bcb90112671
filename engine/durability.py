"""Erasure-coded sidecars for evidence packs (pyeclib Reed-Solomon).

`PACK.ec.json` records the codec, k, m, the pack's BLAKE3 and size, and every fragment
(base64) with its own BLAKE3 and index: the manifest. pyeclib alone returns wrong bytes
for corrupted, duplicated or foreign fragments without complaint, so fragments are
checked against the manifest before decode and the decoded bytes against the pack
digest after. Nothing here destroys a byte: a restored pack keeps the damaged one beside
it, and a sidecar is replaced only atomically (temp, fsync, rename).
"""

from __future__ import annotations

import binascii
import random
from pathlib import Path
from typing import Any, cast

import msgspec
from blake3 import blake3
from pyeclib.ec_iface import ECDriver, ECDriverError

from events import strict_json
from events.atomic import write_atomic
from events.errors import DECODE_ERRORS, AsupError, ErrorCode

FORMAT = "asup.ec/1"
CODECS = ("isa_l_rs_vand", "liberasurecode_rs_vand")
MAX_SIDECAR = 256 << 20  # a sidecar holds its pack (base64) and parity: a pack of up to ~128 MiB at k=8, m=4


class Fragment(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    index: int
    digest: str
    data: bytes  # base64 in the JSON (msgspec encodes and validates it in C)


class DecodeProof(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    at: str
    seed: int
    dropped: list[int]
    digest: str
    one_more_loss_failed_closed: bool


class Sidecar(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    format: str
    codec: str
    k: int
    m: int
    fragment_size: int
    pack: str  # file name of the pack, relative to the sidecar
    pack_digest: str
    pack_size: int
    fragments: list[Fragment]
    decode_proofs: list[DecodeProof] = msgspec.field(default_factory=list)


def sidecar_path(pack: Path) -> Path:
    return pack.with_name(pack.name + ".ec.json")


def _digest(data: bytes) -> str:
    return "blake3:" + blake3(data).hexdigest()


def fragment_digest(pack_digest: str, index: int, data: bytes) -> str:
    """A fragment's digest binds its bytes to its pack and its index, so an entry copied
    from another sidecar (bytes, digest and all) or moved to another slot is rejected."""
    hasher = blake3(f"asup-fragment\x00{pack_digest}\x00{index}\x00".encode())
    hasher.update(data)
    return "blake3:" + hasher.hexdigest()


def _driver(codec: str, k: int, m: int) -> ECDriver:
    if codec not in CODECS:
        raise AsupError(ErrorCode.USAGE, f"codec {codec!r} is not one of {', '.join(CODECS)}")
    if k < 1 or m < 1 or k + m > 32 or (codec == "isa_l_rs_vand" and m > 4):
        raise AsupError(ErrorCode.USAGE, f"k={k}, m={m} is not a valid {codec} configuration (k, m >= 1; k + m <= 32; isa_l m <= 4)")
    try:
        return ECDriver(k=k, m=m, ec_type=codec)
    except Exception as exc:  # pyeclib raises its own hierarchy; translate at the boundary
        raise AsupError(ErrorCode.USAGE, f"pyeclib cannot load {codec}: {exc}") from exc


def encode(pack: Path, *, k: int = 8, m: int = 4, codec: str = "isa_l_rs_vand") -> Sidecar:
    data = _read(pack)
    fragments = _driver(codec, k, m).encode(data)
    pack_digest = _digest(data)
    return Sidecar(
        format=FORMAT,
        codec=codec,
        k=k,
        m=m,
        fragment_size=len(fragments[0]),
        pack=pack.name,
        pack_digest=pack_digest,
        pack_size=len(data),
        fragments=[Fragment(i, fragment_digest(pack_digest, i, f), f) for i, f in enumerate(fragments)],
    )


def write_sidecar(path: Path, sidecar: Sidecar) -> None:
    write_atomic(path, msgspec.json.encode(sidecar))


class _TextFragment(msgspec.Struct, frozen=True):
    index: int
    digest: str
    data: str


class _TextSidecar(msgspec.Struct, frozen=True):
    fragments: list[_TextFragment]


def _lenient(raw: bytes, strict: msgspec.ValidationError) -> Sidecar:
    """Load a sidecar whose fragment text is damaged: an undecodable fragment becomes an
    empty one (reported bad by its digest) instead of making every fragment unreadable."""
    if ".data" not in str(strict):
        raise strict
    text = msgspec.json.decode(raw, type=_TextSidecar)
    fragments = []
    for fragment in text.fragments:
        try:
            data = binascii.a2b_base64(fragment.data, strict_mode=True)
        except binascii.Error:
            data = b""
        fragments.append(Fragment(fragment.index, fragment.digest, data))
    shell = msgspec.json.decode(raw, type=dict[str, Any])
    shell["fragments"] = []
    return msgspec.structs.replace(msgspec.convert(shell, type=Sidecar), fragments=fragments)


def load_sidecar(path: Path) -> Sidecar:
    raw = _read(path, MAX_SIDECAR)
    refused = strict_json.precheck(raw, max_bytes=MAX_SIDECAR)
    if refused is not None:
        raise AsupError(ErrorCode.BAD_INPUT, f"not an asup sidecar: {refused}", file=str(path))
    try:
        try:
            sidecar = msgspec.json.decode(raw, type=Sidecar)
        except msgspec.ValidationError as exc:
            sidecar = _lenient(raw, exc)
    except DECODE_ERRORS as exc:
        message = f"not an asup sidecar: {strict_json.explain(raw, exc)}"
        raise AsupError(ErrorCode.BAD_INPUT, message, file=str(path), field=strict_json.field_of(str(exc))) from exc
    strict = strict_json.strictness(raw)
    if strict is not None:
        raise AsupError(ErrorCode.BAD_INPUT, f"not an asup sidecar: {strict[0]}", file=str(path), field=strict[1])
    if sidecar.format != FORMAT:
        raise AsupError(ErrorCode.BAD_INPUT, f"sidecar format {sidecar.format!r} is not {FORMAT!r}", file=str(path), field="$.format")
    if len(sidecar.fragments) != sidecar.k + sidecar.m:
        raise AsupError(ErrorCode.BAD_INPUT, f"{len(sidecar.fragments)} fragments, k + m = {sidecar.k + sidecar.m}", file=str(path))
    return sidecar


def good_fragments(sidecar: Sidecar) -> tuple[dict[int, bytes], list[int]]:
    """Fragments whose bytes match the manifest (by index), and the indexes that do not."""
    good: dict[int, bytes] = {}
    bad: list[int] = []
    for position, fragment in enumerate(sidecar.fragments):
        data = fragment.data
        expected = fragment_digest(sidecar.pack_digest, position, data)
        if fragment.index != position or fragment.digest != expected or len(data) != sidecar.fragment_size:
            bad.append(position)
            continue
        good[fragment.index] = data
    return good, bad


def decode(sidecar: Sidecar, use: list[int]) -> bytes:
    """The pack from the fragments at `use` (verified against the manifest), checked by digest.

    Fewer than k verified fragments fails closed before pyeclib is asked: it never returns
    bytes it cannot prove.
    """
    good, _ = good_fragments(sidecar)
    chosen = [good[i] for i in sorted(set(use)) if i in good]
    if len(chosen) < sidecar.k:
        raise AsupError(
            ErrorCode.CORRUPT_RECORD,
            f"only {len(chosen)} verified fragments, {sidecar.k} needed: cannot decode",
        )
    try:
        data = _decode_verified(_driver(sidecar.codec, sidecar.k, sidecar.m), chosen, sidecar.pack_size)
    except ECDriverError as exc:  # pyeclib's own hierarchy: translated at the boundary
        raise AsupError(ErrorCode.CORRUPT_RECORD, f"pyeclib cannot decode: {exc}") from exc
    if _digest(data) != sidecar.pack_digest:
        raise AsupError(ErrorCode.CORRUPT_RECORD, "decoded bytes do not match the pack digest")
    return data


def _decode_verified(driver: ECDriver, chosen: list[bytes], pack_size: int) -> bytes:
    for data in chosen:
        header = cast(dict[str, Any], driver.get_metadata(data, formatted=True))  # typed as bytes upstream
        if header["orig_data_size"] != pack_size:
            raise AsupError(ErrorCode.CORRUPT_RECORD, "a fragment belongs to another pack (size in its header differs)")
    return bytes(driver.decode(chosen))


def drill(sidecar: Sidecar, seed: int, at: str) -> tuple[bytes, DecodeProof]:
    """Drop m fragments chosen by `seed`, decode from the rest, and prove that losing one
    more fails closed. Raises if the decode itself fails."""
    indexes = list(range(sidecar.k + sidecar.m))
    rng = random.Random(seed)
    _, bad = good_fragments(sidecar)
    healthy = [i for i in indexes if i not in bad]
    # damaged fragments are lost already: they count towards the m the drill drops
    dropped = sorted(bad + rng.sample(healthy, max(sidecar.m - len(bad), 0)))
    kept = [i for i in indexes if i not in dropped]
    data = decode(sidecar, kept)
    one_more = kept[:]
    one_more.remove(rng.choice(kept))
    try:
        decode(sidecar, one_more)
        failed_closed = False
    except AsupError:
        failed_closed = True
    return data, DecodeProof(at=at, seed=seed, dropped=dropped, digest=_digest(data), one_more_loss_failed_closed=failed_closed)


def _read(path: Path, limit: int | None = None) -> bytes:
    """The file's bytes; with a `limit`, never more than `limit` + 1 of them (then refused)."""
    try:
        with path.open("rb") as fh:
            data = fh.read() if limit is None else fh.read(limit + 1)
    except OSError as exc:
        raise AsupError(
            ErrorCode.USAGE if isinstance(exc, FileNotFoundError) else ErrorCode.IO_FAILED, f"cannot read: {exc.strerror}", file=str(path)
        ) from exc
    if limit is not None and len(data) > limit:
        raise AsupError(ErrorCode.BAD_INPUT, f"not an asup sidecar: the file is over the {limit}-byte limit", file=str(path))
    return data
