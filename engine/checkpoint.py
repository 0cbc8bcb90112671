"""Resume checkpoints: written (atomically) by the target store after every committed
chunk; a later process resumes from one. The reference's fields, plus the stream digest
(the `h` of the transfer's last record when it was written)."""

from __future__ import annotations

import msgspec

from events import strict_json
from events.errors import AsupError, ErrorCode

FORMAT = "asup.checkpoint/1"


class Checkpoint(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    format: str = FORMAT
    transfer_id: str
    seed: int
    attempt: int
    committed_cursor: int
    stream_digest: str
    artifact: str  # the target artifact name


def encode(checkpoint: Checkpoint) -> bytes:
    return msgspec.json.encode(checkpoint)


def decode(data: bytes, file: str) -> Checkpoint:
    checkpoint = strict_json.decode(data, Checkpoint, what="checkpoint", code=ErrorCode.BAD_INPUT, file=file)
    if checkpoint.format != FORMAT:
        raise AsupError(ErrorCode.BAD_INPUT, f"checkpoint format {checkpoint.format!r} is not {FORMAT!r}", file=file, field="$.format")
    return checkpoint
