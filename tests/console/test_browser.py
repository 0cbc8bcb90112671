"""The console in a real browser: Debian's headless Chromium driven by Playwright, against
`asup ui` in its own process on the built-in scenarios' log. Screenshots are kept in
$ASUP_TEST_ARTIFACTS (or the test's temporary directory)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from tests.cli import asup_argv
from tests.console.helpers import SEED, free_port
from tests.console.test_live import append_elsewhere

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking"]

pytestmark = pytest.mark.browser
if not CHROMIUM.exists():
    if os.environ.get("ASUP_REQUIRE_BROWSER") == "1":
        raise RuntimeError("ASUP_REQUIRE_BROWSER=1 but /usr/bin/chromium is missing: apt-get install -y chromium")
    pytest.skip("no /usr/bin/chromium (apt-get install -y chromium)", allow_module_level=True)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    yield page
    context.close()
    if "stops_the_server" in request.node.name:  # the feed's reconnects while it is down are the point
        errors = [e for e in errors if "ERR_CONNECTION_REFUSED" not in e]
    assert errors == [], errors  # no script error, no refused resource (the CSP holds)


def shots(tmp_path: Path) -> Path:
    where = Path(os.environ.get("ASUP_TEST_ARTIFACTS", tmp_path))
    where.mkdir(parents=True, exist_ok=True)
    return where


class Console:
    def __init__(self, log: Path, port: int | None = None) -> None:
        self.log = log
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(asup_argv("ui", str(log), "--port", str(self.port)), stderr=subprocess.PIPE, text=True)
        self._wait()

    def _wait(self) -> None:
        import urllib.request

        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/api/transfers", timeout=2):
                    return
            except OSError:
                time.sleep(0.1)
        raise AssertionError("asup ui did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        _, err = self.proc.communicate(timeout=20)
        assert "Traceback" not in err, err


@pytest.fixture
def console(log: Path) -> Iterator[Console]:
    served = Console(log)
    yield served
    served.stop()


def test_an_operator_finds_the_failed_transfer_its_cause_and_next_step(console: Console, page: Page, tmp_path: Path) -> None:
    page.goto(console.url + "/")
    page.wait_for_selector("#live.connected", timeout=5000)
    page.screenshot(path=str(shots(tmp_path) / "console-transfers.png"))
    page.click("#failed-count")
    states = page.locator("#transfers tbody .badge").all_inner_texts()
    assert states and set(states) == {"failed_closed"}
    page.click(f"text=disk_full-{SEED}")
    assert page.inner_text("#reason") == "io_failed"
    assert "ENOSPC" in page.inner_text("#cause")
    assert f"asup resume disk_full-{SEED}" in page.inner_text("#next-step")
    assert page.locator("svg.diagram .state.current text").text_content() == "failed_closed"
    page.screenshot(path=str(shots(tmp_path) / "console-transfer.png"), full_page=True)


def test_records_appended_elsewhere_appear_within_a_second(console: Console, page: Page, tmp_path: Path) -> None:
    page.goto(console.url + "/")
    page.wait_for_selector("#live.connected", timeout=5000)
    append_elsewhere(console.log, 2)
    appended = time.monotonic()
    page.wait_for_selector('#transfers tr[data-key="0:live-1"]', timeout=1000)
    assert time.monotonic() - appended < 1.0
    page.screenshot(path=str(shots(tmp_path) / "console-live.png"))
    page.goto(console.url + "/transfer/0:live-0")
    page.wait_for_selector("#live.connected", timeout=5000)
    before = page.locator("#timeline tbody tr").count()
    append_same_stream(console.log, "live-0")
    page.wait_for_function(f"document.querySelectorAll('#timeline tbody tr').length > {before}", timeout=1000)


def append_same_stream(log: Path, stream: str) -> None:
    script = (
        "import sys\nfrom pathlib import Path\nfrom events.jsonl_log import JsonlLog\nfrom events.testing import transition\n"
        "with JsonlLog.open(Path(sys.argv[1])) as log:\n    log.append(sys.argv[2], [transition(sys.argv[2] + '-more')])\n"
    )
    import sys

    subprocess.run([sys.executable, "-c", script, str(log), stream], check=True, timeout=60)


def test_the_live_state_shows_lost_and_reconnects_by_itself_when_one_stops_the_server(log: Path, page: Page) -> None:
    first = Console(log)
    try:
        page.goto(first.url + "/")
        page.wait_for_selector("#live.connected", timeout=5000)
        first.stop()
        page.wait_for_selector("#live.lost", timeout=5000)
        second = Console(log, first.port)
        try:
            page.wait_for_selector("#live.connected", timeout=10000)
            append_elsewhere(log, 1)
            page.wait_for_selector('#transfers tr[data-key="0:live-0"]', timeout=2000)
        finally:
            second.stop()
    finally:
        if first.proc.poll() is None:
            first.stop()


def test_a_replay_of_a_diverging_log_shows_the_field_diff(diverging: tuple[Path, int], page: Page, tmp_path: Path) -> None:
    path, seq = diverging
    console = Console(path)
    try:
        page.goto(console.url + f"/transfer/0:retry_exhausted-{SEED}")
        page.click("#replay")
        assert page.inner_text("#outcome") == "diverged"
        rows = page.locator("#diff tbody tr").all_inner_texts()
        assert any(row.split("\t")[:3] == ["attempt", "5", "1"] for row in rows), rows
        assert f"seq {seq}" in page.inner_text("h2")
        page.screenshot(path=str(shots(tmp_path) / "console-replay-diff.png"), full_page=True)
    finally:
        console.stop()
