"""Defaults from `asup.toml` (the working directory's, or the file ASUP_CONFIG names).

    root = "artifacts"                        # --root of every command that has one
    log = "artifacts/logs/transfers.jsonl"    # --log of sync, sync-batch, resume and scenario run
                                              # (a file, or a stream: "nats://HOST:PORT/STREAM")
    lever = true                              # --lever/--no-lever wherever it exists
    logs = ["nats://HOST:PORT/STREAM"]        # --log of checklist, evidence build/signoff and readiness:
                                              # streams the checklist and the pack cover besides the root's files

Precedence: a flag on the command line, then an ASUP_* environment variable (ASUP_ROOT),
then this file, then the built-in default. Unknown keys are refused with the file named.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

from events import strict_json
from events.errors import AsupError, ErrorCode

KEYS = {"root": "root", "log": "log_path", "lever": "lever", "logs": "remote_logs"}  # key -> the parameter it sets


def load(cwd: Path | None = None) -> dict[str, Any]:
    named = os.environ.get("ASUP_CONFIG")
    path = Path(named) if named else (cwd or Path.cwd()) / "asup.toml"
    if not path.is_file():
        if named:
            raise AsupError(ErrorCode.USAGE, "ASUP_CONFIG names no file", file=str(path))
        return {}
    data = strict_json.read(path, what="asup.toml", code=ErrorCode.USAGE)
    try:
        settings = tomllib.loads(data.decode())
    except UnicodeDecodeError as exc:
        raise AsupError(ErrorCode.USAGE, f"not a valid asup.toml: not UTF-8: {exc.reason} at byte {exc.start}", file=str(path)) from exc
    except (tomllib.TOMLDecodeError, RecursionError) as exc:  # tomllib recurses as deep as arrays nest
        raise AsupError(ErrorCode.USAGE, f"not a valid asup.toml: {exc}", file=str(path)) from exc
    unknown = sorted(set(settings) - set(KEYS))
    if unknown:
        raise AsupError(ErrorCode.USAGE, f"unknown keys {unknown} (known: {sorted(KEYS)})", file=str(path))
    return settings


def default_map(command: Any, settings: dict[str, Any]) -> dict[str, Any]:
    """Click's default_map for `command` and its subcommands: each setting goes to every
    parameter of that name."""
    wanted = {KEYS[key]: value for key, value in settings.items()}
    out: dict[str, Any] = {name: value for name, value in wanted.items() if any(p.name == name for p in command.params)}
    for name, sub in getattr(command, "commands", {}).items():
        nested = default_map(sub, settings)
        if nested:
            out[name] = nested
    return out
