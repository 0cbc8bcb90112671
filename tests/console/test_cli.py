"""`asup ui` as an operator runs it: real processes, one-line refusals, a quiet stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.cli import asup_argv, asup_untraced
from tests.console.helpers import free_port


def one_line(done: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_help_has_an_example() -> None:
    done = asup_untraced("ui", "--help")
    assert done.returncode == 0 and "Example: asup ui" in done.stdout


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["--hots", "0.0.0.0"], 2, "--hots"),
        (["--host", "0.0.0.0"], 2, "not a loopback address"),
        (["--host", "192.0.2.1"], 2, "--allow-remote"),
        (["--allowed-host", "console.example"], 2, "--allow-remote"),
        (["--port", "0"], 2, "--port"),
        (["--root", "no-such-root"], 2, "no such root"),
    ],
)
def test_bad_invocations_are_one_line_and_exit_2(log: Path, args: list[str], code: int, says: str) -> None:
    done = asup_untraced("ui", str(log), *args)
    assert done.returncode == code, done.stderr
    assert says in done.stderr


@pytest.mark.parametrize(("given", "code"), [("missing.jsonl", 2), ("nats://127.0.0.1:1/LOG?timeout=1", 4)])
def test_a_log_it_cannot_show_is_named(tmp_path: Path, given: str, code: int) -> None:
    target = given if "://" in given else str(tmp_path / given)
    done = asup_untraced("ui", target, "--port", str(free_port()))
    assert done.returncode == code
    assert target in one_line(done)


def test_a_taken_port_is_one_line_and_exit_3(log: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = asup_untraced("ui", str(log), "--port", str(port))
    assert done.returncode == 3
    assert f"port {port} is in use" in one_line(done)


def test_without_the_extra_it_says_what_to_install_and_exits_5(log: Path, tmp_path: Path) -> None:
    # a starlette that cannot be imported, first on the path: as in an install without the ui extra
    shadow = tmp_path / "shadow" / "starlette"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("not installed", name="starlette")\n')
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(shadow.parent), os.environ.get("PYTHONPATH", "")])}
    argv = asup_argv("ui", str(log), "--port", str(free_port()))
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 5, done.stderr
    assert "Traceback" not in done.stderr
    assert "pip install 'asupersync[ui]'" in one_line(done) and "starlette" in one_line(done)


def _start(log: Path, *extra: str) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    proc = subprocess.Popen(
        asup_argv("ui", str(log), "--port", str(port), *extra), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/transfers", timeout=2) as reply:
                if reply.status == 200:
                    return proc, port
        except urllib.error.HTTPError:  # it answers (401: a remote console asks for its token)
            return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"asup ui did not answer: {proc.communicate()[1]}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_it_quietly_with_130(log: Path, sig: signal.Signals) -> None:
    proc, port = _start(log)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip() == f"asup console on http://127.0.0.1:{port}/ (Ctrl-C to stop)"


def test_a_remote_console_prints_its_token_url(log: Path) -> None:
    proc, port = _start(log, "--host", "127.0.0.1", "--allow-remote")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=20)
    assert f"http://127.0.0.1:{port}/?token=" in err


def test_json_says_where_it_listens_in_one_line(log: Path) -> None:
    proc, port = _start(log, "--json")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    said = json.loads(out)
    assert said == {"schema": "asup.cli/1", "command": "ui", "url": f"http://127.0.0.1:{port}/", "token_url": "", "pid": proc.pid}


def test_json_of_a_remote_console_carries_the_token_url(log: Path) -> None:
    proc, port = _start(log, "--allow-remote", "--json")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=20)
    token_url = json.loads(out)["token_url"]
    assert token_url.startswith(f"http://127.0.0.1:{port}/?token=") and len(token_url) > len(f"http://127.0.0.1:{port}/?token=") + 20


@pytest.mark.parametrize(("extra", "name"), [((), "127.0.0.1"), (("--allowed-host", "localhost"), "localhost")])
def test_a_wildcard_bind_prints_a_url_its_host_check_serves(log: Path, extra: tuple[str, ...], name: str) -> None:
    proc, port = _start(log, "--host", "0.0.0.0", "--allow-remote", *extra, "--json")
    try:
        token_url = json.loads(proc.stdout.readline() if proc.stdout else "{}")["token_url"]
        assert token_url.startswith(f"http://{name}:{port}/?token=")
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor())
        with opener.open(token_url, timeout=5) as reply:  # the redirect, the cookie, then the page
            assert reply.status == 200 and reply.url == f"http://{name}:{port}/"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
