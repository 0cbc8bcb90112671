"""The one error type of asup and its codes.

    AsupError(code, message, file=, line=, field=, seq=)
      code: ErrorCode  -- what went wrong, and through EXIT_CODES the process exit code

Library errors are translated at the boundary (`raise AsupError(...) from exc`). The
message is one line an operator can act on: it names the file, line and field where
they are known.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class ExitCode(IntEnum):
    OK = 0
    CHECK_FAILED = 1  # damage found, divergence, gate failed, stale expectation
    USAGE = 2  # bad arguments or unreadable input
    BUSY = 3  # the log is held by another writer
    INTERRUPTED = 130


class ErrorCode(StrEnum):
    CONFLICT_DETECTED = "conflict_detected"  # stale expected stream version
    CORRUPT_RECORD = "corrupt_record"  # damage before the tail: never skipped
    TORN_TAIL = "torn_tail"  # a crash cut the final line: `asup log repair`
    BAD_INPUT = "bad_input"  # a record or file that is not what asup writes
    SCHEMA_UNSUPPORTED = "schema_unsupported"  # a record of a newer schema version
    LOG_LOCKED = "log_locked"  # another writer holds the log
    LOG_NOT_FOUND = "log_not_found"
    IO_FAILED = "io_failed"  # the OS refused a write or fsync: the writer is fenced
    WRITER_CLOSED = "writer_closed"
    USAGE = "usage"


EXIT_CODES: dict[ErrorCode, ExitCode] = {
    ErrorCode.CONFLICT_DETECTED: ExitCode.CHECK_FAILED,
    ErrorCode.CORRUPT_RECORD: ExitCode.CHECK_FAILED,
    ErrorCode.TORN_TAIL: ExitCode.CHECK_FAILED,
    ErrorCode.BAD_INPUT: ExitCode.USAGE,
    ErrorCode.SCHEMA_UNSUPPORTED: ExitCode.USAGE,
    ErrorCode.LOG_LOCKED: ExitCode.BUSY,
    ErrorCode.LOG_NOT_FOUND: ExitCode.USAGE,
    ErrorCode.IO_FAILED: ExitCode.CHECK_FAILED,
    ErrorCode.WRITER_CLOSED: ExitCode.USAGE,
    ErrorCode.USAGE: ExitCode.USAGE,
}


class AsupError(Exception):
    """Raised for every failure asup reports; `code` says which, the rest says where."""

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
        seq: int | None = None,
    ) -> None:
        self.code = code
        self.message = message
        self.file = file
        self.line = line
        self.field = field
        self.seq = seq
        super().__init__(self.one_line())

    @property
    def exit_code(self) -> ExitCode:
        return EXIT_CODES[self.code]

    def one_line(self) -> str:
        where = self.file or ""
        if self.line is not None:
            where += f":{self.line}"
        parts = [f"{where}: " if where else "", f"{self.code}: {self.message}"]
        if self.seq is not None:
            parts.append(f" (seq {self.seq})")
        if self.field is not None:
            parts.append(f" [field {self.field}]")
        return "".join(parts)
