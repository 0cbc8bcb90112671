"""The one error type of asup and its codes.

    AsupError(code, message, file=, line=, field=, seq=, errno=)
      code: ErrorCode  -- what went wrong, and through EXIT_CODES the process exit code

Library errors are translated at the boundary (`raise AsupError(...) from exc`). The
message is one line an operator can act on: it names the file, line and field where
they are known.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum
from pathlib import Path

import msgspec


class ExitCode(IntEnum):
    """The process exit codes; `asup --help` and the README list them from `EXIT_MEANINGS`."""

    OK = 0
    CHECK_FAILED = 1
    USAGE = 2
    BUSY = 3
    UNAVAILABLE = 4
    MISSING_EXTRA = 5
    INTERRUPTED = 130
    PIPE_CLOSED = 141


EXIT_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "ok",
    ExitCode.CHECK_FAILED: (
        "a check failed (damage, a record only a newer asup reads, divergence, gate, stale expectation) or the OS refused a write"
    ),
    ExitCode.USAGE: "usage or unreadable input",
    ExitCode.BUSY: "the log is held by another writer (or, for asup ui, the port is taken)",
    ExitCode.UNAVAILABLE: "a nats:// server (the log's, or an object-store target's) could not be reached in time",
    ExitCode.MISSING_EXTRA: "an optional extra the command needs is not installed (asup ui without 'asupersync[ui]')",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C or SIGTERM)",
    ExitCode.PIPE_CLOSED: "the reader of the output went away (a closed pipe): ended quietly, as a Unix tool ends on SIGPIPE",
}


def exit_codes_help() -> str:
    """The one sentence that documents every exit code."""
    return "Exit codes: " + "; ".join(f"{int(code)} {EXIT_MEANINGS[code]}" for code in ExitCode) + "."


class ErrorCode(StrEnum):
    CONFLICT_DETECTED = "conflict_detected"  # stale expected stream version
    CORRUPT_RECORD = "corrupt_record"  # damage before the tail: never skipped
    TORN_TAIL = "torn_tail"  # a crash cut the final line: `asup log repair`
    BAD_INPUT = "bad_input"  # a record or file that is not what asup writes
    SCHEMA_UNSUPPORTED = "schema_unsupported"  # a digest-valid record a newer asup wrote: a newer v, type, code or field
    LOG_LOCKED = "log_locked"  # another writer holds the log
    LOG_ROLLBACK = "log_rollback"  # the file is shorter than its high-water mark: acknowledged records are gone
    NOT_AN_ASUP_LOG = "not_an_asup_log"  # a non-empty file whose first line is not an asup header: never written
    LOG_NOT_FOUND = "log_not_found"
    IO_FAILED = "io_failed"  # the OS refused a write or fsync: the writer is fenced
    WRITER_CLOSED = "writer_closed"
    GATE_FAILED = "gate_failed"  # a gate could not measure: a run it drives did not complete
    USAGE = "usage"
    LOG_UNREACHABLE = "log_unreachable"  # a nats:// log's (or object store's) server did not answer in time
    PORT_IN_USE = "port_in_use"  # `asup ui`: something else listens on the address asked for
    EXTRA_MISSING = "extra_missing"  # `asup ui` without starlette, uvicorn or jinja2 installed


EXIT_CODES: dict[ErrorCode, ExitCode] = {
    ErrorCode.CONFLICT_DETECTED: ExitCode.CHECK_FAILED,
    ErrorCode.CORRUPT_RECORD: ExitCode.CHECK_FAILED,
    ErrorCode.TORN_TAIL: ExitCode.CHECK_FAILED,
    ErrorCode.BAD_INPUT: ExitCode.USAGE,
    ErrorCode.SCHEMA_UNSUPPORTED: ExitCode.CHECK_FAILED,  # like corrupt_record: the log cannot be read through
    ErrorCode.LOG_LOCKED: ExitCode.BUSY,
    ErrorCode.LOG_ROLLBACK: ExitCode.CHECK_FAILED,
    ErrorCode.NOT_AN_ASUP_LOG: ExitCode.USAGE,
    ErrorCode.LOG_NOT_FOUND: ExitCode.USAGE,
    ErrorCode.IO_FAILED: ExitCode.CHECK_FAILED,
    ErrorCode.WRITER_CLOSED: ExitCode.USAGE,
    ErrorCode.GATE_FAILED: ExitCode.CHECK_FAILED,
    ErrorCode.USAGE: ExitCode.USAGE,
    ErrorCode.LOG_UNREACHABLE: ExitCode.UNAVAILABLE,
    ErrorCode.PORT_IN_USE: ExitCode.BUSY,
    ErrorCode.EXTRA_MISSING: ExitCode.MISSING_EXTRA,
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
        errno: int | None = None,
    ) -> None:
        self.code = code
        self.errno = errno  # the OS's error number, when the OS refused
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


# What decoding untrusted bytes with msgspec can raise (found by feeding it the JSON
# parsing test suite and the bombs of tests/corpus): its own errors; a bare
# UnicodeDecodeError for invalid UTF-8 inside a string; a RecursionError for nesting past
# ~1000 levels into an untyped value. An integer past 64 bits raises nothing (it decodes
# to a Python int): `events.strict_json.JsonInt` refuses it. `events.strict_json` bounds
# length and depth before a parse, so the last two are the net, not the rule.
DECODE_ERRORS: tuple[type[Exception], ...] = (msgspec.MsgspecError, UnicodeDecodeError, RecursionError)
NOT_JSON: tuple[type[Exception], ...] = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)

# a path that names nothing usable (or runs through a file) is the caller's mistake;
# anything else (permissions, a full or read-only disk, EIO) the OS refused
_BAD_PATH = (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError)


def os_error(exc: OSError, doing: str, path: Path | str) -> AsupError:
    """The AsupError for `exc` raised while `doing` something to `path`: `usage` when the
    path names no usable file or directory, else `io_failed`."""
    code = ErrorCode.USAGE if isinstance(exc, _BAD_PATH) else ErrorCode.IO_FAILED
    return AsupError(code, f"{doing}: {exc.strerror or exc}", file=str(path), errno=exc.errno)
