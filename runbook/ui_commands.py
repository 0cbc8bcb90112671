"""`asup ui`: the read-only web console over transfer logs (runbook/console/)."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from events.errors import AsupError, ErrorCode, ExitCode
from runbook.output import console, emit_json, reports_errors

if TYPE_CHECKING:
    from runbook.console.model import LogModel
    from runbook.console.security import Settings

EXTRA = "asup ui needs the console extra: pip install 'asupersync[ui]'"


@reports_errors
def ui(
    logs: list[str] = typer.Argument(..., help="Transfer logs to show (files; several give one list)."),
    root: Path | None = typer.Option(None, "--root", help="The artifacts root: the checklist and escalation read its operations log."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (loopback unless --allow-remote)."),
    port: int = typer.Option(8765, "--port", min=1, max=65535, help="Port to listen on."),
    allow_remote: bool = typer.Option(False, "--allow-remote", help="Allow a non-loopback --host; a start-up token is then required."),
    allowed_host: list[str] = typer.Option([], "--allowed-host", help="Another Host name browsers use (--allow-remote; repeatable)."),
    as_json: bool = typer.Option(False, "--json", help="Print where it listens as one JSON line on stdout (url, token_url, pid)."),
) -> None:
    """Serve the operator console on http://127.0.0.1:8765/: transfers (filter, sort, page),
    one transfer's timeline and path on the state diagram with its cause, next step and
    commands, replay with the first divergence as a field diff, the checklist and
    escalation with their evidence, and a live feed as records are appended. Read-only:
    it never writes, locks or checkpoints anything.

    Example: asup ui artifacts/logs/transfers.jsonl --root artifacts

    Example: asup ui artifacts/logs/transfers.jsonl --host 0.0.0.0 --port 8765 --allow-remote --allowed-host console.example
    """
    settings = _settings(host, port, tuple(allowed_host), allow_remote)
    try:
        from runbook.console.serve import serve
    except ImportError as exc:  # the extra is not installed: starlette, uvicorn or jinja2 missing
        raise AsupError(ErrorCode.EXTRA_MISSING, f"{EXTRA} ({exc.name} is missing)") from None
    if root is not None and not root.is_dir():
        raise AsupError(ErrorCode.USAGE, "no such root directory", file=str(root))
    with _bound(host, port) as sock:
        from runbook.console.model import LogModel

        model = LogModel(logs, root)
        try:
            _probe(model)
            url = f"http://{_url_host(host, tuple(allowed_host))}:{port}/"
            token_url = f"{url}?token={settings.token}" if settings.token else ""
            out = console(stderr=True)
            out.print(f"asup console on {url} (Ctrl-C to stop)", markup=False, soft_wrap=True)
            if token_url:
                out.print(f"open {token_url} (the token is kept in a cookie, then dropped from the URL)", markup=False, soft_wrap=True)
            if as_json:  # a script starting the console learns its address (and token) without parsing prose
                emit_json({"command": "ui", "url": url, "token_url": token_url, "pid": os.getpid()})
            stopped = serve(model, settings, sock)
        finally:
            model.close()  # the local copies of nats:// logs
    if stopped:
        raise typer.Exit(int(ExitCode.INTERRUPTED))


def _probe(model: LogModel) -> None:
    """Each nats:// log's server answers before the console is served (exit 4, one line,
    as every command on an unreachable log)."""
    for state in model.logs:
        if state.url is not None:
            from events.jetstream.log import JetStreamLog  # nats-py only for a URL

            JetStreamLog.open(state.url, reader=True).close()


def _settings(host: str, port: int, allowed: tuple[str, ...], remote: bool) -> Settings:
    from runbook.console.security import Settings, is_loopback  # no third-party import: checked before the extra is

    if not is_loopback(host) and not remote:
        raise AsupError(ErrorCode.USAGE, f"--host {host} is not a loopback address: the console is local unless --allow-remote is given")
    if allowed and not remote:
        raise AsupError(ErrorCode.USAGE, "--allowed-host is for a remote console: give --allow-remote too")
    return Settings.make(host, port, allowed, remote)


def _url_host(host: str, allowed: tuple[str, ...]) -> str:
    """The host of the printed URL: one the Host allow-list serves. A wildcard bind is no name
    a browser may send, so it is the first --allowed-host, else loopback."""
    if host in ("0.0.0.0", "::"):
        host = allowed[0] if allowed else "127.0.0.1"
    return f"[{host}]" if ":" in host else host


@contextlib.contextmanager
def _bound(host: str, port: int) -> Iterator[socket.socket]:
    """The listening socket, bound before anything is read: a taken port is one line."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise AsupError(ErrorCode.PORT_IN_USE, f"port {port} is in use on {host} (another console?): choose one with --port") from None
        raise AsupError(ErrorCode.USAGE, f"cannot listen on {host}:{port}: {exc.strerror}") from None
    try:
        yield sock
    finally:
        sock.close()
