"""One erasure-coded fragment as a self-verifying binary file (`PACK.ec.NN`).

    header (96 bytes) | pyeclib fragment (fragment_size bytes) | BLAKE3 of both (32 bytes)

The header binds the bytes to what they protect: magic `asupfrag`, format version, codec
name, k, m, the fragment's index, fragment_size, the pack's size and its BLAKE3 (raw).
The trailer makes the file verify itself, so a damaged fragment is told from a damaged
manifest without the other. pyeclib puts its own 80-byte header in front of every
fragment (index, size, the original size, the backend id, a CRC of those); it trusts that
header blindly (a fragment of another backend can crash it), so `check_inner` verifies it
against the binding before any fragment reaches pyeclib.
"""

from __future__ import annotations

import struct
import zlib

import msgspec
from blake3 import blake3

MAGIC = b"asupfrag"
VERSION = 2
_HEADER = struct.Struct(">8sB24sHHHIQ32s13x")  # magic, version, codec, k, m, index, fragment_size, pack_size, digest, reserved
HEADER_SIZE = _HEADER.size
TRAILER_SIZE = 32
OVERHEAD = HEADER_SIZE + TRAILER_SIZE

# pyeclib's (liberasurecode's) fragment header: a packed little-endian struct, 80 bytes
_INNER = struct.Struct(
    "<IIIQB32sBBI"
)  # idx, size, backend metadata size, orig size, checksum type, checksum, mismatch, backend id, version
INNER_SIZE = 80
_INNER_MAGIC = 0x0B0C5ECC
_CHECKSUM_NONE = 1
BACKEND_IDS = {"isa_l_rs_vand": 4, "liberasurecode_rs_vand": 6}


class Binding(msgspec.Struct, frozen=True):
    """What every fragment of one sidecar must say about itself."""

    codec: str
    k: int
    m: int
    fragment_size: int  # bytes of each pyeclib fragment (its own header included)
    pack_size: int
    pack_digest: str  # blake3:<hex>


class Header(msgspec.Struct, frozen=True):
    binding: Binding
    index: int


def digest_raw(digest: str) -> bytes:
    return bytes.fromhex(digest.removeprefix("blake3:"))


def pack_file(binding: Binding, index: int, fragment: bytes) -> bytes:
    """The fragment file's bytes."""
    return pack_file_digest(binding, index, fragment)[0]


def pack_file_digest(binding: Binding, index: int, fragment: bytes) -> tuple[bytes, str]:
    """The fragment file's bytes and the `blake3:` digest of the whole file, in one pass
    over the fragment (the trailer is the BLAKE3 of what precedes it; the file's digest
    goes on from that state), joined once instead of copied per part."""
    header = _HEADER.pack(
        MAGIC,
        VERSION,
        binding.codec.encode(),
        binding.k,
        binding.m,
        index,
        binding.fragment_size,
        binding.pack_size,
        digest_raw(binding.pack_digest),
    )
    hasher = blake3(header, max_threads=blake3.AUTO)
    hasher.update(fragment)
    trailer = hasher.copy().digest()
    hasher.update(trailer)
    return b"".join((header, fragment, trailer)), "blake3:" + hasher.hexdigest()


def unpack_file(data: bytes) -> tuple[Header, bytes] | str:
    """(header, pyeclib fragment) of a fragment file that verifies itself; else why not."""
    if len(data) < OVERHEAD:
        return f"{len(data)} bytes: shorter than a fragment's header and trailer"
    body, trailer = data[:-TRAILER_SIZE], data[-TRAILER_SIZE:]
    if blake3(body, max_threads=blake3.AUTO).digest() != trailer:
        return "fails its own BLAKE3 trailer"
    magic, version, codec, k, m, index, size, pack_size, digest, *_ = _HEADER.unpack_from(body)
    if magic != MAGIC or version != VERSION:
        return "not an asup fragment (magic or version)"
    if len(body) - HEADER_SIZE != size:
        return f"holds {len(body) - HEADER_SIZE} fragment bytes, its header says {size}"
    try:
        name = codec.rstrip(b"\0").decode("ascii")
    except UnicodeDecodeError:
        return "its header names no codec"
    binding = Binding(name, k, m, size, pack_size, "blake3:" + digest.hex())
    return Header(binding, index), body[HEADER_SIZE:]


def plausible(binding: Binding) -> str | None:
    """Why these parameters cannot be what asup encoded (None: they can): checked before
    a driver is made or a fragment decoded with them."""
    if binding.codec not in BACKEND_IDS:
        return f"codec {binding.codec!r} is not one of {', '.join(BACKEND_IDS)}"
    if not (binding.k >= 1 and binding.m >= 1 and binding.k + binding.m <= 32) or (binding.codec == "isa_l_rs_vand" and binding.m > 4):
        return f"k={binding.k}, m={binding.m} is not a valid {binding.codec} configuration"
    data_size = binding.fragment_size - INNER_SIZE
    if data_size != max(1, -(-binding.pack_size // binding.k)):  # pyeclib splits the pack in k equal parts
        return f"fragment size {binding.fragment_size} does not fit a {binding.pack_size}-byte pack at k={binding.k}"
    return None


def check_inner(binding: Binding, index: int, fragment: bytes) -> str | None:
    """Why pyeclib's own header of `fragment` disagrees with the binding (None: it agrees)."""
    if len(fragment) != binding.fragment_size:
        return f"{len(fragment)} bytes, {binding.fragment_size} expected"
    idx, size, meta, orig, checksum_type, checksum, mismatch, backend, _ = _INNER.unpack_from(fragment)
    magic, _, crc = struct.unpack_from("<III", fragment, 59)
    if magic != _INNER_MAGIC or crc != zlib.crc32(fragment[:59]) or any(fragment[71:INNER_SIZE]):
        return "pyeclib's header is damaged"
    if (idx, size, meta, orig) != (index, binding.fragment_size - INNER_SIZE, 0, binding.pack_size):
        return f"pyeclib's header says index {idx}, {orig} bytes: not fragment {index} of this pack"
    if checksum_type != _CHECKSUM_NONE or any(checksum) or mismatch:
        return "pyeclib's header asks for a checksum asup never writes"
    if backend != BACKEND_IDS[binding.codec]:
        return f"pyeclib's header names backend {backend}, not {binding.codec}"
    return None
