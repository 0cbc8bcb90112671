"""Erasure-coded sidecars for evidence packs (pyeclib Reed-Solomon): the manifest, reading
and checking a sidecar, decoding and the decode drill.

A sidecar of `PACK` is a small JSON manifest `PACK.ec.json` (format `asup.ec/2`: codec, k,
m, fragment_size, the pack's name, BLAKE3 and size, each fragment's file name and digest,
and the decode proofs) with its fragments beside it as binary files `PACK.ec.00` ..
`PACK.ec.NN`, each self-verifying (`engine.fragments`). An 8+4 sidecar is about 1.5x its
pack. A v1 sidecar (`asup.ec/1`, base64 fragments inside the JSON) is refused with a line
that says to re-encode it.

Reading never trusts one part alone. `read_sidecar` verifies each fragment by its trailer,
its header against the binding (codec, k, m, sizes, pack digest; taken from the manifest,
or, when the manifest is damaged or disagrees, from the fragments that agree on one, at
least k of them), its index against its slot and pyeclib's own header against all of it,
so only verified, distinct-index fragments ever reach pyeclib; the decoded bytes are
checked against the pack digest after, and a decode that fails that check tries other
k-sets of the verified fragments before giving up. Fragment file names are derived from
the manifest's name, never taken from it: a manifest cannot point asup at another file.
Every problem found is named (`Sidecar.damaged`). Writing (`engine.sidecar_write`)
publishes a whole sidecar or leaves the old one.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import random
import stat
from collections import Counter
from pathlib import Path
from typing import Any

import msgspec
from blake3 import blake3
from pyeclib.ec_iface import ECDriver

from engine import fragments as frag
from engine.fragments import Binding
from events import strict_json
from events.errors import AsupError, ErrorCode
from events.fs import OS, FileSystem
from events.operations import DecodeProofRecorded
from events.strict_json import JsonInt

FORMAT = "asup.ec/2"
LEGACY = "asup.ec/1"
CODECS = tuple(frag.BACKEND_IDS)
MAX_SLOTS = 32  # k + m <= 32
MAX_PACK = 1 << 30
MAX_MANIFEST = 1 << 20  # 32 fragment entries and thousands of decode proofs
MAX_TRIES = 512  # k-sets tried when a decode fails its digest (C(12, 8) = 495)


class FragmentEntry(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    index: JsonInt
    file: str  # the fragment's file name, beside the manifest (always PACK.ec.NN)
    digest: str  # BLAKE3 of the whole fragment file


class DecodeProof(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    seq: JsonInt  # the ops-log seq of its decode_proof event: a proof counts only with it
    at: str
    seed: JsonInt | None
    dropped: list[JsonInt]
    digest: str
    one_more_loss_failed_closed: bool


class Manifest(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    format: str
    codec: str
    k: JsonInt
    m: JsonInt
    fragment_size: JsonInt
    pack: str  # file name of the pack, beside the manifest
    pack_digest: str
    pack_size: JsonInt
    fragments: list[FragmentEntry]
    decode_proofs: list[DecodeProof] = msgspec.field(default_factory=list)

    @property
    def binding(self) -> Binding:
        return Binding(self.codec, self.k, self.m, self.fragment_size, self.pack_size, self.pack_digest)


class Slot(msgspec.Struct, frozen=True):
    """One fragment as found: `problem` is empty when it verified."""

    index: int
    file: str
    problem: str = ""


class Sidecar(msgspec.Struct):
    """A sidecar as read from disk: what it protects (`binding`; None when neither the
    manifest nor k fragments say), its verified fragments and everything found damaged."""

    path: Path
    manifest: Manifest | None  # None: unreadable (then `manifest_problem` says why)
    manifest_problem: str
    binding: Binding | None
    fragments: dict[int, bytes]  # verified pyeclib fragments by index
    slots: list[Slot]
    suspect: set[int] = msgspec.field(default_factory=set)  # verified, but the manifest's digest differs

    @property
    def k(self) -> int:
        return self.binding.k if self.binding else 0

    @property
    def n(self) -> int:
        return self.binding.k + self.binding.m if self.binding else 0

    @property
    def bad(self) -> list[int]:
        return [slot.index for slot in self.slots if slot.problem]

    @property
    def proofs(self) -> list[DecodeProof]:
        return list(self.manifest.decode_proofs) if self.manifest and not self.manifest_problem else []

    @property
    def manifest_damage(self) -> str:
        """What is wrong with the manifest ("" when nothing)."""
        if self.manifest_problem or not self.suspect:
            return self.manifest_problem
        return f"its digests of fragments {sorted(self.suspect)} do not match their files (which verify themselves)"

    @property
    def damaged(self) -> list[str]:
        """Every damaged part, named: the manifest and each fragment file."""
        named = [f"{self.path.name}: {self.manifest_damage}"] if self.manifest_damage else []
        return named + [f"{slot.file}: {slot.problem}" for slot in self.slots if slot.problem]


def sidecar_path(pack: Path) -> Path:
    return pack.with_name(pack.name + ".ec.json")


def fragment_path(manifest: Path, index: int) -> Path:
    """`PACK.ec.NN` beside `PACK.ec.json`."""
    return manifest.with_name(f"{manifest.name.removesuffix('.json')}.{index:02d}")


def sidecar_files(pack: Path) -> list[Path]:
    """The manifest of `pack` and every fragment file of it there is (by name: a file at a
    fragment's name is listed whatever it is), for moving or skipping a sidecar whole."""
    manifest = sidecar_path(pack)
    return [manifest] + [p for p in (fragment_path(manifest, i) for i in range(MAX_SLOTS)) if os.path.lexists(p)]


def check_path(manifest: Path) -> None:
    if not manifest.name.endswith(".ec.json"):
        raise AsupError(ErrorCode.USAGE, "a sidecar manifest is named PACK.ec.json", file=str(manifest))


def digest(data: bytes) -> str:
    return "blake3:" + blake3(data, max_threads=blake3.AUTO).hexdigest()  # a pack of 64 MiB hashes on every core


def driver(binding: Binding) -> ECDriver:
    """A pyeclib driver for a binding already found plausible."""
    return _driver(binding.codec, binding.k, binding.m)


@functools.lru_cache(maxsize=8)
def _driver(codec: str, k: int, m: int) -> ECDriver:
    """Made once per configuration: loading the backend costs more than decoding a small pack."""
    try:
        return ECDriver(k=k, m=m, ec_type=codec)
    except Exception as exc:  # pyeclib raises its own hierarchy; translate at the boundary
        raise AsupError(ErrorCode.USAGE, f"pyeclib cannot load {codec}: {exc}") from exc


# --- encoding ---------------------------------------------------------------------------------


class Encoded(msgspec.Struct, frozen=True):
    manifest: Manifest
    files: list[bytes]  # the fragment files, by index


def encode_bytes(data: bytes, pack_name: str, manifest_name: str, *, k: int, m: int, codec: str) -> Encoded:
    size = max(1, -(-len(data) // k)) + frag.INNER_SIZE if k >= 1 else 0
    binding = Binding(codec, k, m, size, len(data), digest(data))
    refused = frag.plausible(binding)
    if refused is not None:
        raise AsupError(ErrorCode.USAGE, f"{refused} (k, m >= 1; k + m <= 32; isa_l m <= 4)")
    if not data:
        raise AsupError(ErrorCode.USAGE, "the pack is empty: nothing to protect")
    try:
        pieces = driver(binding).encode(data)
    except Exception as exc:  # pyeclib's own hierarchy, translated at the boundary
        raise AsupError(ErrorCode.USAGE, f"pyeclib cannot encode: {exc}") from exc
    packed = [frag.pack_file_digest(binding, i, piece) for i, piece in enumerate(pieces)]
    files = [file for file, _ in packed]
    stem = manifest_name.removesuffix(".json")
    entries = [FragmentEntry(i, f"{stem}.{i:02d}", file_digest) for i, (_, file_digest) in enumerate(packed)]
    manifest = Manifest(FORMAT, codec, k, m, size, pack_name, binding.pack_digest, len(data), entries)
    return Encoded(manifest, files)


def encode(pack: Path, *, k: int = 8, m: int = 4, codec: str = "isa_l_rs_vand", fs: FileSystem = OS) -> Encoded:
    data = read_file(pack, MAX_PACK, fs)
    if isinstance(data, str) or data is None:
        raise AsupError(ErrorCode.USAGE, f"cannot read the pack: {data or 'no such file'}", file=str(pack))
    return encode_bytes(data, pack.name, sidecar_path(pack).name, k=k, m=m, codec=codec)


def manifest_bytes(manifest: Manifest) -> bytes:
    return msgspec.json.encode(manifest) + b"\n"


# --- reading ----------------------------------------------------------------------------------


def read_file(path: Path, limit: int, fs: FileSystem = OS) -> bytes | str | None:
    """The bytes of the regular file at `path` (never through a symlink, never blocking on
    a FIFO); None when absent; else why it cannot be read."""
    try:
        fd = fs.open(str(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc}): not a regular file?"
    try:
        st = fs.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return "not a regular file"
        if st.st_size > limit:
            return f"over the {limit}-byte limit"
        chunks = []
        offset = 0
        want = max(1 << 24, st.st_size + 1)  # the whole file in one read, one buffer (a join of one is no copy)
        while chunk := fs.pread(fd, min(want, limit + 1 - offset), offset):
            chunks.append(chunk)
            offset += len(chunk)
            if offset > limit:
                return f"over the {limit}-byte limit"
        return b"".join(chunks)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    finally:
        with contextlib.suppress(OSError):
            fs.close(fd)


def load_manifest(path: Path, fs: FileSystem = OS) -> Manifest:
    """The manifest at `path`, strictly: any damage raises AsupError (bad_input)."""
    raw = read_file(path, MAX_MANIFEST, fs)
    if not isinstance(raw, bytes):
        raise AsupError(
            ErrorCode.USAGE if raw is None else ErrorCode.BAD_INPUT, f"not an asup sidecar: {raw or 'no such file'}", file=str(path)
        )
    return parse_manifest(raw, path)


def parse_manifest(raw: bytes, path: Path) -> Manifest:
    refused = strict_json.precheck(raw, max_bytes=MAX_MANIFEST)  # bounded before any parse, the legacy sniff's included
    if refused is not None:
        raise AsupError(ErrorCode.BAD_INPUT, f"invalid asup sidecar: {refused}", file=str(path))
    _refuse_legacy(raw, path)
    manifest = strict_json.decode(raw, Manifest, what="asup sidecar", code=ErrorCode.BAD_INPUT, file=str(path), max_bytes=MAX_MANIFEST)
    if manifest.format != FORMAT:
        raise AsupError(ErrorCode.BAD_INPUT, f"sidecar format {manifest.format!r} is not {FORMAT!r}", file=str(path), field="$.format")
    return manifest


class _Legacy(msgspec.Struct):
    format: str
    fragments: list[dict[str, Any]]


def _refuse_legacy(raw: bytes, path: Path) -> None:
    """A v1 sidecar (its fragments base64 inside the JSON) is not read: re-encode it."""
    try:
        legacy = msgspec.json.decode(raw, type=_Legacy)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return
    if legacy.format == LEGACY and legacy.fragments and all("data" in f for f in legacy.fragments):
        pack = path.with_name(path.name.removesuffix(".ec.json"))
        message = f"an {LEGACY} sidecar (base64 fragments inside the JSON) is no longer read: re-encode it (asup durability encode {pack})"
        raise AsupError(ErrorCode.BAD_INPUT, message, file=str(path))


def read_sidecar(path: Path, fs: FileSystem = OS) -> Sidecar:
    """The sidecar whose manifest is `path`, every part checked (see the module docstring).
    Damage is reported in the result, never raised; raises only when there is no sidecar
    at all (usage) or it is a v1 sidecar (bad_input)."""
    check_path(path)
    manifest, problem = _manifest(path, fs)
    found = _fragment_files(path, fs)
    if manifest is None and not found:
        raise AsupError(ErrorCode.USAGE, f"no sidecar: {problem}", file=str(path))
    binding, problem = _binding(manifest, problem, found)
    if manifest is not None and not problem and binding is not None:
        problem = _entry_problems(path, manifest)
    sidecar = Sidecar(path, manifest, problem, binding, {}, [])
    if binding is not None:
        _verify_slots(sidecar, binding, found)
    return sidecar


def _manifest(path: Path, fs: FileSystem) -> tuple[Manifest | None, str]:
    raw = read_file(path, MAX_MANIFEST, fs)
    if not isinstance(raw, bytes):
        return None, raw or "missing"
    try:
        return parse_manifest(raw, path), ""
    except AsupError as error:
        if error.message.startswith(f"an {LEGACY} sidecar"):
            raise
        return None, error.message


_Found = dict[int, tuple[frag.Header, bytes, str] | str]  # slot -> (header, pyeclib fragment, file digest) or why not


def _fragment_files(manifest: Path, fs: FileSystem) -> _Found:
    found: _Found = {}
    names = _names_in(manifest.parent, fs)
    for index in range(MAX_SLOTS):
        path = fragment_path(manifest, index)
        if names is not None and path.name not in names:
            continue
        data = read_file(path, MAX_PACK + frag.OVERHEAD + frag.INNER_SIZE, fs)
        if data is None:
            continue
        if isinstance(data, str):
            found[index] = data
            continue
        unpacked = frag.unpack_file(data)
        found[index] = unpacked if isinstance(unpacked, str) else (*unpacked, digest(data))
    return found


def _names_in(directory: Path, fs: FileSystem) -> set[str] | None:
    """The names in `directory` (None when it cannot be listed: then every slot is tried)."""
    try:
        fd = fs.open(str(directory), os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        return set(fs.listdir(fd))
    except OSError:
        return None
    finally:
        with contextlib.suppress(OSError):
            fs.close(fd)


def _binding(manifest: Manifest | None, problem: str, found: _Found) -> tuple[Binding | None, str]:
    """What the fragments must say: the manifest's binding, unless at least k fragments
    that verify themselves agree on another (then the manifest is what is damaged)."""
    votes = Counter(item[0].binding for slot, item in found.items() if not isinstance(item, str) and item[0].index == slot)
    agreed = [b for b, count in votes.most_common() if count >= b.k and frag.plausible(b) is None]
    if manifest is None:
        return (agreed[0] if agreed else None), problem
    claimed = manifest.binding
    implausible = frag.plausible(claimed)
    if (claimed in agreed or not agreed) and implausible is None:
        return claimed, problem
    if not agreed:
        return None, implausible or problem
    best = agreed[0]
    fields = [name for name in Binding.__struct_fields__ if getattr(claimed, name) != getattr(best, name)]
    verb = "disagrees" if len(fields) == 1 else "disagree"
    return best, f"{', '.join(fields)} {verb} with {votes[best]} fragments that verify themselves"


def _entry_problems(path: Path, manifest: Manifest) -> str:
    if manifest.pack != path.name.removesuffix(".ec.json"):
        return f"names pack {manifest.pack!r}, not the file it sits beside"
    if [e.index for e in manifest.fragments] != list(range(manifest.k + manifest.m)):
        return f"lists fragments {[e.index for e in manifest.fragments][:40]}, not 0..{manifest.k + manifest.m - 1}"
    wrong = [e.index for e in manifest.fragments if e.file != fragment_path(path, e.index).name]
    return f"names other files for fragments {wrong}" if wrong else ""


def _verify_slots(sidecar: Sidecar, binding: Binding, found: _Found) -> None:
    entries = {e.index: e.digest for e in sidecar.manifest.fragments} if sidecar.manifest and not sidecar.manifest_problem else {}
    for index in range(binding.k + binding.m):
        name = fragment_path(sidecar.path, index).name
        problem = _slot_problem(binding, index, found.get(index))
        if not problem:
            whole = found[index]
            assert not isinstance(whole, str)  # a slot without a problem was found whole
            _, data, file_digest = whole
            sidecar.fragments[index] = data
            if entries and entries.get(index) != file_digest:
                sidecar.suspect.add(index)
        sidecar.slots.append(Slot(index, name, problem))


def _slot_problem(binding: Binding, index: int, item: tuple[frag.Header, bytes, str] | str | None) -> str:
    if item is None:
        return "missing"
    if isinstance(item, str):
        return item
    header, data, _ = item
    if header.index != index:
        return f"its header says it is fragment {header.index}"
    if header.binding != binding:
        fields = [name for name in Binding.__struct_fields__ if getattr(header.binding, name) != getattr(binding, name)]
        return f"its header binds another {', '.join(fields)}"
    return frag.check_inner(binding, index, data) or ""


# --- decoding -----------------------------------------------------------------------------------


def decode(sidecar: Sidecar, use: list[int]) -> bytes:
    """The pack from the verified fragments among `use`, checked by its digest. Fewer than
    k of them fails closed before pyeclib is asked: it never returns bytes it cannot prove."""
    binding = sidecar.binding
    if binding is None:
        raise AsupError(ErrorCode.CORRUPT_RECORD, "neither the manifest nor k fragments say what the sidecar protects: cannot decode")
    usable = sorted((i for i in set(use) if i in sidecar.fragments), key=lambda i: (i in sidecar.suspect, i))
    if len(usable) < binding.k:
        raise AsupError(ErrorCode.CORRUPT_RECORD, f"only {len(usable)} verified fragments, {binding.k} needed: cannot decode")
    ec = driver(binding)
    for tries, chosen in enumerate(itertools.combinations(usable, binding.k)):
        if tries == MAX_TRIES:
            break
        data = _decode_once(ec, [sidecar.fragments[i] for i in chosen])
        if data is not None and len(data) == binding.pack_size and digest(data) == binding.pack_digest:
            return data
    raise AsupError(ErrorCode.CORRUPT_RECORD, "no set of k verified fragments decodes to the pack digest: forged or foreign fragments")


def _decode_once(ec: ECDriver, chosen: list[bytes]) -> bytes | None:
    try:
        return bytes(ec.decode(chosen))
    except Exception:  # pyeclib's own hierarchy: a refused set is one more set that did not decode
        return None


def recover(sidecar: Sidecar) -> bytes:
    return decode(sidecar, list(range(sidecar.n)))


def confirm(sidecar: Sidecar, data: bytes) -> dict[int, str]:
    """Fragments that verified but differ from a fresh encode of the proven pack `data`
    (forged or foreign bytes that carry a valid header and trailer), with why."""
    binding = sidecar.binding
    assert binding is not None  # `data` was decoded or matched through it
    try:
        fresh = driver(binding).encode(data)
    except Exception as exc:  # pyeclib's own hierarchy, translated at the boundary
        raise AsupError(ErrorCode.CORRUPT_RECORD, f"pyeclib cannot re-encode the pack: {exc}") from exc
    return {
        i: "differs from a fresh encode of the pack: forged or foreign bytes"
        for i, got in sidecar.fragments.items()
        if _payload(got) != _payload(bytes(fresh[i]))
    }


def _payload(fragment: bytes) -> bytes:
    """A pyeclib fragment without the library-version fields of its header (an upgraded
    pyeclib writes other versions for the same bytes)."""
    return fragment[:55] + fragment[59:63] + fragment[71:]


def mark(sidecar: Sidecar, problems: dict[int, str]) -> None:
    """Record fragments found bad after reading (by `confirm`)."""
    for index, problem in problems.items():
        sidecar.fragments.pop(index, None)
        sidecar.suspect.discard(index)
        sidecar.slots[index] = msgspec.structs.replace(sidecar.slots[index], problem=problem)


def drill(sidecar: Sidecar, seed: int, at: str) -> tuple[bytes, DecodeProof]:
    """Drop m fragments chosen by `seed`, decode from the rest, and prove that losing one
    more fails closed. Damaged fragments are lost already and count towards the m. Raises
    if the decode itself fails. The proof's seq is 0 until its event is recorded."""
    data = recover(sidecar)
    mark(sidecar, confirm(sidecar, data))
    assert sidecar.binding is not None  # recover() proved it
    indexes = list(range(sidecar.n))
    rng = random.Random(seed)
    bad = sidecar.bad
    healthy = [i for i in indexes if i not in bad]
    dropped = sorted(bad + rng.sample(healthy, max(sidecar.binding.m - len(bad), 0)))
    kept = [i for i in indexes if i not in dropped]
    data = decode(sidecar, kept)
    one_more = kept[:]
    one_more.remove(rng.choice(kept))
    try:
        decode(sidecar, one_more)
        failed_closed = False
    except AsupError:
        failed_closed = True
    return data, DecodeProof(0, at, seed, dropped, digest(data), failed_closed)


# --- decode proofs and their events -----------------------------------------------------------


def proof_matches(proof: DecodeProof, event: DecodeProofRecorded) -> bool:
    """Whether `event` (the ops-log record at `proof.seq`) is the one this proof claims."""
    return (
        event.ok
        and (event.digest, event.dropped, event.one_more_loss_failed_closed)
        == (proof.digest, proof.dropped, proof.one_more_loss_failed_closed)
        and (event.seed is None or event.seed == proof.seed)
        and (not event.at or event.at == proof.at)
    )


def match_proofs(proofs: list[DecodeProof], events: dict[int, DecodeProofRecorded]) -> tuple[list[int], list[int]]:
    """(the seqs of the proofs that count, the positions in `proofs` of those that do not):
    a proof counts only when `events` (the decode_proof events of this sidecar, by seq)
    holds its event, and each event counts once."""
    counted: list[int] = []
    forged: list[int] = []
    for position, proof in enumerate(proofs):
        event = events.get(proof.seq)
        if event is not None and proof.seq not in counted and proof_matches(proof, event):
            counted.append(proof.seq)
        else:
            forged.append(position)
    return counted, forged


def proofs_of(events: dict[int, DecodeProofRecorded], pack_digest: str) -> list[DecodeProof]:
    """The manifest's proofs rebuilt from the ops log (a damaged manifest rebuilt)."""
    return [
        DecodeProof(seq, e.at, e.seed, e.dropped, e.digest, e.one_more_loss_failed_closed)
        for seq, e in sorted(events.items())
        if e.ok and e.digest == pack_digest
    ]
