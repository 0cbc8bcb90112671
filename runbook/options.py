"""Options shared by many commands: the lock timeout of every command that writes a log,
and the output root (whose default paths every command follows)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import typer

from events.errors import AsupError, ErrorCode
from events.lock import DEFAULT_TIMEOUT, set_default_timeout
from events.log_ref import LogRef, log_ref


def _set_lock_timeout(value: float) -> float:
    set_default_timeout(value)  # every log this command writes waits this long for another process's batch
    return value


LOCK_TIMEOUT_OPT = typer.Option(
    DEFAULT_TIMEOUT,
    "--lock-timeout",
    min=0.0,
    callback=_set_lock_timeout,
    help="Seconds to wait for another process's batch to finish writing the log before giving up (exit 3).",
)

ROOT_OPT = typer.Option(Path("artifacts"), "--root", envvar="ASUP_ROOT", help="Output root (runbook artifact paths live under it).")


def default_log(root: Path, given: Path | None) -> Path:
    """The transfer log: `--log`, else `ROOT/logs/transfers.jsonl`, so `--root`, `ASUP_ROOT`
    and `root =` move it with everything else."""
    return given if given is not None else root / "logs" / "transfers.jsonl"


LOG_HELP = "A log: a JSONL file, or a JetStream stream as nats://HOST:PORT/STREAM[?replicas=N&timeout=S]."


def log_arg(text: str | Path) -> LogRef:
    """A log argument as given (typer passes it as text: a Path would fold the URL's `//`);
    a malformed URL is a one-line usage error before anything is opened."""
    return log_ref(text)


def default_log_ref(root: Path, given: str | None) -> LogRef:
    """`default_log` for an option that may name a URL."""
    return log_ref(given) if given is not None else log_ref(default_log(root, None))


REMOTE_LOGS_OPT = typer.Option(
    [],
    "--log",
    help="A nats:// log the checklist and the evidence pack cover too, its head sealed (repeatable; asup.toml: logs = [...]). "
    "The root's files are found by themselves.",
)


def remote_logs(given: Iterable[str]) -> tuple[str, ...]:
    """The `--log` URLs of an evidence command, checked: a file there is a usage error (the
    root's logs are found under it), a malformed URL too."""
    urls = []
    for text in given:
        ref = log_ref(text)
        if ref.url is None:
            raise AsupError(ErrorCode.USAGE, "--log here takes a nats:// URL; files under --root are found by themselves", file=text)
        urls.append(ref.text)
    return tuple(urls)


def check_known(flag: str, value: str | None, known: Iterable[str], noun: str) -> None:
    """A filter value that names nothing asup knows would match nothing, silently (and, when
    following, forever): a usage error listing what is known."""
    names = sorted(known)
    if value is not None and value not in names:
        raise AsupError(ErrorCode.USAGE, f"{flag} {value!r} is not {noun} (known: {', '.join(names)})")
