"""Options shared by every command that writes a log."""

from __future__ import annotations

import typer

from events.lock import DEFAULT_TIMEOUT, set_default_timeout


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
