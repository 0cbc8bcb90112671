"""`nats://HOST:PORT[,HOST:PORT...]/STREAM[?replicas=N&timeout=S]`: a log on JetStream.

Anything that is not a valid URL of that shape is refused with one line naming the part
that is wrong, before any connection is tried. asup stream names (transfer ids, `$log`)
become subject tokens through `subject_token`, an escape that keeps the token free of the
characters subjects reserve (`.`, `*`, `>`, whitespace) and of a leading `$`.
"""

from __future__ import annotations

import functools
import re

import msgspec

from events.errors import AsupError, ErrorCode

SCHEME = "nats://"
DEFAULT_TIMEOUT = 5.0  # seconds: connecting, and each request; an unreachable server never hangs a command
MAX_REPLICAS = 5
_STREAM_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_HOST_PORT = re.compile(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})")
_PLAIN = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")


class LogUrl(msgspec.Struct, frozen=True):
    servers: tuple[str, ...]  # nats://host:port each
    stream: str  # the JetStream stream's name
    replicas: int | None = None  # None: not stated (a new stream gets 1; an existing one keeps its own)
    timeout: float = DEFAULT_TIMEOUT

    @property
    def text(self) -> str:
        """The URL as an operator writes it (used in every message that names the log)."""
        hosts = ",".join(server.removeprefix(SCHEME) for server in self.servers)
        query = [f"replicas={self.replicas}"] if self.replicas is not None else []
        if self.timeout != DEFAULT_TIMEOUT:
            query.append(f"timeout={self.timeout:g}")
        return f"{SCHEME}{hosts}/{self.stream}" + ("?" + "&".join(query) if query else "")

    @property
    def subjects(self) -> str:
        """The wildcard every record of this log is published under."""
        return f"asup.{self.stream}.>"

    def subject(self, stream: str) -> str:
        return f"asup.{self.stream}.{subject_token(stream)}"


def is_url(text: str) -> bool:
    """Whether `text` is meant as a URL: anything starting `nats:` (any case), so a typo
    such as `nats:/HOST:PORT/S` is refused by `parse` instead of being taken for a path
    and written to (a file named so is still reachable as `./nats:...`)."""
    return text[: len("nats:")].lower() == "nats:"


def parse(text: str) -> LogUrl:
    """The log URL `text` names; a usage error naming the wrong part otherwise."""
    if not text.startswith(SCHEME):
        raise _bad(text, f"a URL starts with {SCHEME} (two slashes, lower case): write {SCHEME}HOST:PORT/NAME")
    rest = text[len(SCHEME) :]
    hosts, slash, tail = rest.partition("/")
    stream, _, query = tail.partition("?")
    if not slash or not stream:
        raise _bad(text, "no stream name: write nats://HOST:PORT/STREAM")
    if not _STREAM_NAME.fullmatch(stream):
        raise _bad(text, f"stream name {stream!r}: letters, digits, '_' and '-' only, at most 64")
    servers = tuple(_server(text, host) for host in hosts.split(","))
    replicas, timeout = _options(text, query)
    return LogUrl(servers, stream, replicas, timeout)


def _server(text: str, host: str) -> str:
    match = _HOST_PORT.fullmatch(host)
    if match is None or not 0 < int(match.group(2)) < 65536:
        raise _bad(text, f"server {host!r}: write HOST:PORT (e.g. 127.0.0.1:4222)")
    return SCHEME + host


def _options(text: str, query: str) -> tuple[int | None, float]:
    replicas: int | None = None
    timeout = DEFAULT_TIMEOUT
    for part in filter(None, query.split("&")):
        key, _, value = part.partition("=")
        if key == "replicas" and value.isdigit() and 1 <= int(value) <= MAX_REPLICAS:
            replicas = int(value)
        elif key == "timeout" and _positive(value):
            timeout = float(value)
        elif key in ("replicas", "timeout"):
            raise _bad(text, f"{key}={value!r}: replicas is 1 to {MAX_REPLICAS}, timeout a number of seconds > 0")
        else:
            raise _bad(text, f"unknown option {key!r}: the options are replicas and timeout")
    return replicas, timeout


def _positive(value: str) -> bool:
    try:
        return 0 < float(value) < 3600
    except ValueError:
        return False


def _bad(text: str, why: str) -> AsupError:
    return AsupError(ErrorCode.USAGE, f"not a log URL: {why}", file=text)


@functools.lru_cache(maxsize=65536)  # a writer names the same streams batch after batch
def subject_token(stream: str) -> str:
    """`stream` as one subject token: letters, digits, `_` and `-` kept, every other byte of
    its UTF-8 as `=XX` (so the escape is reversible and `=` itself is escaped)."""
    raw = stream.encode()
    if raw and all(byte in _PLAIN for byte in raw):
        return stream
    return "".join(chr(byte) if byte in _PLAIN else f"={byte:02X}" for byte in raw) or "="
