"""The console's rules against a real server on a loopback port: the Host allow-list, the
start-up token for a remote console, CSRF and Origin on the one POST, the response headers,
and that nothing it serves writes anything."""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode, urlsplit

import pytest

from runbook.console.model import LogModel
from runbook.console.security import Settings
from runbook.console.views import Query
from tests.console.helpers import SEED, served, tree, wait_ready


class Reply:
    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = {k.lower(): v for k, v in response.getheaders()}
        self.body = response.read().decode("utf-8", "replace")


def request(base: str, method: str, path: str, *, host: str | None = None, headers: dict[str, str] | None = None, body: str = "") -> Reply:
    url = urlsplit(base)
    conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=10)
    sent = {"Host": url.netloc if host is None else host, **(headers or {})}
    if body:
        sent["Content-Type"] = "application/x-www-form-urlencoded"
    conn.request(method, path, body=body.encode() or None, headers=sent)
    try:
        return Reply(conn.getresponse())
    finally:
        conn.close()


@pytest.fixture
def console(log: Path) -> Iterator[tuple[str, Settings]]:
    model = LogModel([str(log)])
    with served(model) as (base, settings):
        wait_ready(model)
        yield base, settings


@pytest.mark.parametrize("name", ["127.0.0.1", "localhost", "[::1]"])
def test_the_loopback_names_are_served(console: tuple[str, Settings], name: str) -> None:
    base, settings = console
    reply = request(base, "GET", "/", host=f"{name}:{settings.port}")
    assert reply.status == 200 and "failed closed" in reply.body


@pytest.mark.parametrize(
    "host",
    ["evil.example:{port}", "attacker.test", "127.0.0.1:1", "localhost", "127.0.0.1.evil.example:{port}", "", "localhost:{port}.evil"],
)
def test_any_other_host_header_is_refused(console: tuple[str, Settings], host: str) -> None:
    """A page on another name resolving to 127.0.0.1 (DNS rebinding) sends its own Host."""
    base, settings = console
    for path in ("/", "/api/transfers", "/live?log=0", "/static/console.js"):
        reply = request(base, "GET", path, host=host.format(port=settings.port))
        assert reply.status in (421, 400), (host, path)  # h11 itself rejects an empty Host
        assert "transfer" not in reply.body


def test_every_response_carries_the_security_headers(console: tuple[str, Settings]) -> None:
    base, _ = console
    for path in ("/", f"/transfer/0:disk_full-{SEED}", "/health", "/static/console.css", "/nowhere"):
        reply = request(base, "GET", path)
        csp = reply.headers["content-security-policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert reply.headers["x-frame-options"] == "DENY"
        assert reply.headers["x-content-type-options"] == "nosniff"
        assert reply.headers["cache-control"] == "no-store"
        assert "unsafe-inline" not in csp


def test_pages_have_no_inline_script(console: tuple[str, Settings]) -> None:
    base, _ = console
    for path in ("/", f"/transfer/0:disk_full-{SEED}", "/health"):
        body = request(base, "GET", path).body
        assert body.count("<script") == 1 and '<script src="/static/console.js"' in body
        assert " on" + "click=" not in body


def _form(settings: Settings, **fields: str) -> str:
    return urlencode({"log": "0", "transfer_id": f"disk_full-{SEED}", "csrf": settings.csrf(), **fields})


def test_replay_needs_its_csrf_token_and_an_allowed_origin(console: tuple[str, Settings]) -> None:
    base, settings = console
    origin = {"Origin": base}
    assert request(base, "POST", "/replay", headers=origin, body=_form(settings)).status == 200
    assert request(base, "POST", "/replay", headers=origin, body=_form(settings, csrf="")).status == 403
    assert request(base, "POST", "/replay", headers=origin, body=_form(settings, csrf="0" * 64)).status == 403
    other = Settings.make("127.0.0.1", settings.port, (), False)  # another process's token
    assert request(base, "POST", "/replay", headers=origin, body=_form(other)).status == 403
    for bad in ({"Origin": "http://evil.example"}, {"Origin": "null"}, {}, {"Referer": "http://evil.example/page"}):
        assert request(base, "POST", "/replay", headers=bad, body=_form(settings)).status == 403, bad
    assert request(base, "POST", "/replay", headers={"Referer": base + "/transfer/x"}, body=_form(settings)).status == 200


def test_replay_is_a_post_and_nothing_else_changes_state(console: tuple[str, Settings]) -> None:
    base, _ = console
    assert request(base, "GET", "/replay").status == 405
    for path in ("/", "/health", f"/transfer/0:disk_full-{SEED}"):
        assert request(base, "POST", path, headers={"Origin": base}).status == 405
        assert request(base, "DELETE", path).status == 405


def test_a_remote_console_needs_its_token_then_keeps_it_in_a_cookie(log: Path) -> None:
    model = LogModel([str(log)])
    with served(model, remote=True, allowed=("console.example",)) as (base, settings):
        wait_ready(model)
        assert settings.token
        assert request(base, "GET", "/").status == 401
        assert request(base, "GET", "/?token=wrong").status == 401
        assert request(base, "GET", "/", headers={"Cookie": "asup_console=wrong"}).status == 401
        first = request(base, "GET", f"/?state=failed_closed&token={settings.token}")
        assert first.status == 303
        assert first.headers["location"] == "/?state=failed_closed"  # the token is never left in a URL
        cookie = first.headers["set-cookie"]
        assert cookie.startswith(f"asup_console={settings.token};") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
        jar = {"Cookie": f"asup_console={settings.token}"}
        page = request(base, "GET", "/?state=failed_closed", headers=jar)
        assert page.status == 200 and settings.token not in page.body
        named = request(base, "GET", "/", host=f"console.example:{settings.port}", headers=jar)
        assert named.status == 200
        assert request(base, "GET", "/", host=f"other.example:{settings.port}", headers=jar).status == 421


def test_serving_every_page_writes_nothing(log: Path, root: Path) -> None:
    before = tree(root)
    model = LogModel([str(log)], root)
    with served(model) as (base, settings):
        wait_ready(model)
        for path in (
            "/",
            "/?state=failed_closed&sort=reason",
            "/health",
            "/api/transfers",
            "/api/health",
            "/event/0/2",
            "/artifact?path=scenarios",
        ):
            assert request(base, "GET", path).status == 200, path
        for row in model.transfers(Query(size=500)).rows:
            assert request(base, "GET", f"/transfer/{row.key}").status == 200
        assert request(base, "POST", "/replay", headers={"Origin": base}, body=_form(settings, transfer_id="")).status == 200
    assert tree(root) == before


def test_unknown_things_are_a_page_not_an_error(console: tuple[str, Settings]) -> None:
    base, _ = console
    assert request(base, "GET", "/transfer/0:nope").status == 404
    assert request(base, "GET", "/transfer/nope").status == 404
    assert request(base, "GET", "/event/0/999999").status == 404
    assert request(base, "GET", "/event/x/1").status == 404
    assert request(base, "GET", "/event/ops/1").status == 404  # no --root
    assert request(base, "GET", "/artifact?path=/etc/passwd").status == 404
    assert request(base, "GET", "/live?log=7").status == 400
    assert request(base, "GET", "/?page=abc&size=-1&sort=nope").status == 200


def test_a_log_with_a_problem_is_said_on_every_page(log: Path) -> None:
    """Damage (or a stream lost or not copied) shows in the header of every page, linked to
    the health page that names it, not only on that page."""
    data = bytearray(log.read_bytes())
    middle = data.index(b"\n", len(data) // 2) + 20
    data[middle] = ord("#") if data[middle] != ord("#") else ord("$")
    log.write_bytes(bytes(data))
    model = LogModel([str(log)])
    with served(model) as (base, _):
        wait_ready(model)
        for path in ("/", "/health", f"/transfer/0:disk_full-{SEED}"):
            assert 'id="log-problems" href="/health">1 log with a problem' in request(base, "GET", path).body, path
        assert "corrupt" in request(base, "GET", "/health").body


def test_a_sound_log_has_no_problem_said(console: tuple[str, Settings]) -> None:
    base, _ = console
    assert 'id="log-problems"' not in request(base, "GET", "/").body
