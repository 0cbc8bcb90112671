"""Building a transfer intent from what an operator gives: the source and target, the
artifact class and mode, a seed, and optional overrides (or a whole `--intent FILE`)."""

from __future__ import annotations

import platform
import re
import sys
from pathlib import Path

import msgspec
from blake3 import blake3

from engine.contracts import CapabilityMatrix, default_matrix, default_state_machine
from engine.layout import bundle_digest
from engine.negotiation import default_requests
from engine.stores import SourceStore
from events import strict_json
from events.errors import AsupError, ErrorCode
from events.observations import Intent, PrimitiveRequest
from events.strict_json import JsonInt
from events.version import VERSION
from events.vocabulary import Mode

DEFAULT_CHUNK = 4 << 20  # large enough that the per-chunk log fsync stays in the noise


def env_fingerprint() -> str:
    """Where a run happened (ignored by every comparison): Python, platform, asup."""
    text = f"{sys.version}|{platform.platform()}|asup {VERSION}"
    return "env:" + blake3(text.encode()).hexdigest()[:16]


def derive_transfer_id(artifact_id: str, target: str, seed: int) -> str:
    return "t-" + blake3(f"{artifact_id}\x00{target}\x00{seed}".encode()).hexdigest()[:12]


def default_max_attempts(mode: Mode) -> int:
    policy = default_state_machine().retry_policy
    return policy.strict.max_attempts if mode is Mode.STRICT else policy.hardened.max_attempts_default


def build_intent(
    source: SourceStore,
    source_name: str,
    target_name: str,
    *,
    artifact_class: str,
    mode: Mode,
    seed: int = 0,
    chunk_size: int = DEFAULT_CHUNK,
    max_attempts: int | None = None,
    adapter: str = "full",
    expected_checksum: str | None = None,
    transfer_id: str | None = None,
    artifact_id: str | None = None,
    replay_command: str = "",
    matrix: CapabilityMatrix | None = None,
    paths: tuple[Path, Path | str] | None = None,
) -> Intent:
    """The intent; the expected checksum, when not given, is computed and recorded now.
    Malformed input (a class the contract does not define, a checksum that is not
    `blake3:<64 hex>`, numbers beyond 64 bits) is a usage error before anything is recorded:
    a typo is not an incident. `paths` (source, target as the operator named them) are
    recorded absolute; a target given as text is no path (an object-store artifact,
    `nats://HOST:PORT/BUCKET#NAME`) and is recorded as it is."""
    matrix = matrix or default_matrix()
    check_artifact_class(artifact_class, matrix)
    if expected_checksum is not None:
        check_checksum(expected_checksum)
    if not 0 < chunk_size <= strict_json.INT64_MAX:
        raise AsupError(ErrorCode.USAGE, f"chunk size must be positive and within 64 bits, got {chunk_size}")
    check_chunk_size(chunk_size, matrix)
    if not strict_json.INT64_MIN <= seed <= strict_json.INT64_MAX:
        raise AsupError(ErrorCode.USAGE, f"seed {seed} is beyond 64 bits: the log could not be read back")
    # given the checksum, a file is not hashed here: the precheck hashes it before the first chunk
    kind, files = source.manifest(source_name, hashed=expected_checksum is None)
    digest = files[0].digest if kind == "file" else bundle_digest(files)
    artifact_id = artifact_id or source_name
    attempts = default_max_attempts(mode) if max_attempts is None else max_attempts
    if mode is Mode.STRICT and attempts != 0:
        raise AsupError(ErrorCode.USAGE, "strict mode has no retry budget: --max-attempts must be 0")
    if attempts < 0 or attempts > default_state_machine().retry_policy.hardened.max_attempts_limit:
        raise AsupError(
            ErrorCode.USAGE, f"max attempts {attempts} is outside 0..{default_state_machine().retry_policy.hardened.max_attempts_limit}"
        )
    return Intent(
        transfer_id=transfer_id or derive_transfer_id(artifact_id, str(paths[1]) if paths else target_name, seed),
        artifact_id=artifact_id,
        artifact_class=artifact_class,
        mode=mode,
        seed=seed,
        expected_checksum=expected_checksum or digest,
        size=sum(f.size for f in files),
        max_attempts=attempts,
        chunk_size=chunk_size,
        source=source_name,
        target=target_name,
        adapter=adapter,
        requested=default_requests(matrix, artifact_class, chunk_size),
        kind=kind,
        files=files if kind == "bundle" else [],
        replay_command=replay_command,
        env_fingerprint=env_fingerprint(),
        source_path=str(paths[0].absolute()) if paths else "",
        target_path=(str(paths[1].absolute()) if isinstance(paths[1], Path) else paths[1]) if paths else "",
    )


CHECKSUM = re.compile(r"blake3:[0-9a-f]{64}")


def check_checksum(checksum: str, field: str = "--expected-checksum") -> None:
    if not CHECKSUM.fullmatch(checksum):
        shown = checksum if len(checksum) <= 80 else checksum[:77] + "..."
        raise AsupError(ErrorCode.USAGE, f"{field} {shown!r} is not a checksum: it must be blake3: and 64 lowercase hex digits")


def check_artifact_class(artifact_class: str, matrix: CapabilityMatrix) -> None:
    """A class the capability matrix does not define is a typo, not an `unsupported_capability`."""
    if matrix.entry(artifact_class) is None:
        known = ", ".join(matrix.artifact_classes)
        raise AsupError(ErrorCode.USAGE, f"unknown artifact class {artifact_class!r} (the capability matrix defines: {known})")


def check_chunk_size(chunk_size: int, matrix: CapabilityMatrix) -> None:
    """A chunk size no class allows is malformed; one another class allows is the contract's
    to refuse (a `capability_mismatch` naming this class's bounds)."""
    lows, highs = [], []
    for entry in matrix.capability_matrix:
        for primitive in entry.asupersync_primitives:
            low, high = primitive.params.get("chunk_size_min"), primitive.params.get("chunk_size_max")
            if isinstance(low, int) and isinstance(high, int):
                lows.append(low)
                highs.append(high)
    if lows and not min(lows) <= chunk_size <= max(highs):
        raise AsupError(ErrorCode.USAGE, f"chunk size {chunk_size} is outside what any artifact class allows ({min(lows)}..{max(highs)})")


def check_requested(requested: list[PrimitiveRequest] | None, matrix: CapabilityMatrix, file: str) -> None:
    """A requested primitive the capability matrix never names is a typo (a known one that
    this class or adapter does not offer stays a negotiation outcome)."""
    known = {p.id for entry in matrix.capability_matrix for p in entry.asupersync_primitives}
    for i, request in enumerate(requested or []):
        if request.id not in known:
            why = f"unknown primitive {request.id!r} (the capability matrix defines: {', '.join(sorted(known))})"
            raise AsupError(ErrorCode.USAGE, why, file=file, field=f"$.requested[{i}].id")


def check_apart(source: Path, target: Path) -> None:
    """A target that is the source, or inside a source bundle, would copy into what it copies."""
    src, dst = source.resolve(), target.resolve()
    if dst == src or src in dst.parents:
        raise AsupError(ErrorCode.USAGE, f"DST {target} is {'SRC' if dst == src else 'inside SRC'} {source}: pick a target outside it")


class IntentFile(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """What `--intent FILE` (or a line of a batch) may say; flags given on the command line win."""

    transfer_id: str | None = None
    artifact_id: str | None = None
    artifact_class: str | None = None
    mode: Mode | None = None
    seed: JsonInt | None = None
    expected_checksum: str | None = None
    max_attempts: JsonInt | None = None
    chunk_size: JsonInt | None = None
    source: str | None = None
    target: str | None = None
    adapter: str | None = None
    requested: list[PrimitiveRequest] | None = None


def load_intent(path: Path) -> IntentFile:
    """The intent file at `path`; unreadable, too large or invalid is `usage` (exit 2) naming it."""
    return decode_intent(strict_json.read(path, what="intent", code=ErrorCode.USAGE), str(path))


def decode_intent(data: bytes, file: str, line: int | None = None) -> IntentFile:
    """One intent document, bounded and strict (`events.strict_json`). Invalid is `usage`,
    as for every file the operator writes (config, fault plan, batch); `bad_input` is kept
    for files asup writes."""
    spec = strict_json.decode(data, IntentFile, what="intent", code=ErrorCode.USAGE, file=file, line=line)
    check_requested(spec.requested, default_matrix(), file if line is None else f"{file}:{line}")
    return spec
