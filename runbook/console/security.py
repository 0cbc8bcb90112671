"""The console's guard, in front of every request: who may talk to it and from where.

- Host allow-list: `127.0.0.1:PORT`, `localhost:PORT`, `[::1]:PORT` and the names given with
  `--allowed-host`; any other Host is refused (a DNS-rebinding page cannot reach it).
- Remote binds need a token (printed at start-up): `?token=` on a first visit sets an
  HttpOnly, SameSite=Strict cookie and redirects to the same URL without it, so the token
  never stays in a URL, a history or a Referer; a request without the cookie is 401.
- The one action (replay) is a POST carrying a CSRF token bound to this process, from an
  allowed Origin (or Referer).
- Every response says: no framing, no sniffing, no referrer, scripts only from the console.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import msgspec

from events.errors import AsupError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

COOKIE = "asup_console"
HEADERS = [
    (b"content-security-policy", b"default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"same-origin"),  # not no-referrer: under it a POST's Origin is "null"
    (b"cache-control", b"no-store"),
]


class Settings(msgspec.Struct, frozen=True):
    host: str = "127.0.0.1"
    port: int = 8765
    allowed_hosts: tuple[str, ...] = ()  # more Host names (remote only)
    token: str = ""  # "" on loopback: no token asked
    secret: bytes = b""  # the CSRF key of this process

    @classmethod
    def make(cls, host: str, port: int, allowed_hosts: tuple[str, ...], remote: bool) -> Settings:
        token = secrets.token_urlsafe(24) if remote else ""
        return cls(host, port, allowed_hosts if remote else (), token, secrets.token_bytes(32))

    def hosts(self) -> frozenset[str]:
        names = {"127.0.0.1", "localhost", "[::1]", *self.allowed_hosts}
        if self.host not in ("0.0.0.0", "::"):  # a wildcard bind is not a name a browser sends
            names.add(f"[{self.host}]" if ":" in self.host else self.host)
        return frozenset(f"{name}:{self.port}" for name in names)

    def csrf(self) -> str:
        return hmac.new(self.secret, b"replay", hashlib.sha256).hexdigest()

    def csrf_ok(self, given: str) -> bool:
        return hmac.compare_digest(given.encode(), self.csrf().encode())


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Guard:
    """ASGI middleware: the Host allow-list, the token cookie and the response headers."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.settings = settings
        self.hosts = settings.hosts()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        host = headers.get(b"host", b"").decode("latin-1")
        if host not in self.hosts:
            await _plain(send, 421, "refused: this console answers to its own host names only (Host header not allowed)")
            return
        if self.settings.token and not self._token_ok(headers):
            await self._token_gate(scope, send)
            return

        started = False

        async def secured(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message["headers"] = [*message.get("headers", []), *HEADERS]
            await send(message)

        try:
            await self.app(scope, receive, secured)
        except Exception as exc:  # one line for the operator and the page, never a traceback
            line = exc.one_line() if isinstance(exc, AsupError) else f"internal error: {type(exc).__name__}: {exc}"
            print(f"asup: console: {scope.get('method', '')} {scope.get('path', '')}: {line}", file=sys.stderr, flush=True)
            if not started:
                await _plain(send, 500, line)

    def _token_ok(self, headers: dict[bytes, bytes]) -> bool:
        cookie: SimpleCookie = SimpleCookie()
        try:
            cookie.load(headers.get(b"cookie", b"").decode("latin-1"))
        except Exception:  # a malformed Cookie header is just no cookie
            return False
        morsel = cookie.get(COOKIE)
        return morsel is not None and hmac.compare_digest(morsel.value.encode(), self.settings.token.encode())

    async def _token_gate(self, scope: Scope, send: Send) -> None:
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        given = next((v for k, v in query if k == "token"), "")
        if not given or not hmac.compare_digest(given.encode(), self.settings.token.encode()):
            await _plain(send, 401, "this console needs its start-up token: open the URL asup ui printed")
            return
        rest = urlencode([(k, v) for k, v in query if k != "token"])
        location = scope.get("path", "/") + (f"?{rest}" if rest else "")
        cookie = f"{COOKIE}={self.settings.token}; HttpOnly; SameSite=Strict; Path=/"
        headers = [(b"location", location.encode("latin-1")), (b"set-cookie", cookie.encode("latin-1")), *HEADERS]
        await send({"type": "http.response.start", "status": 303, "headers": headers})
        await send({"type": "http.response.body", "body": b""})


def origin_ok(headers: dict[str, str], hosts: frozenset[str]) -> bool:
    """A POST's Origin (or, without one, its Referer) names an allowed host."""
    source = headers.get("origin") or headers.get("referer") or ""
    return urlsplit(source).netloc in hosts if source else False


async def _plain(send: Send, status: int, text: str) -> None:
    body = (text + "\n").encode()
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()), *HEADERS]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
