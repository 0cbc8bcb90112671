"""`asup ui` as an operator runs it: real processes, one-line refusals, a quiet stop."""

from __future__ import annotations

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


@pytest.mark.parametrize("given", ["missing.jsonl", "nats://127.0.0.1:1/LOG"])
def test_a_log_it_cannot_show_is_named(tmp_path: Path, given: str) -> None:
    target = given if "://" in given else str(tmp_path / given)
    done = asup_untraced("ui", target, "--port", str(free_port()))
    assert done.returncode == 2
    assert target in one_line(done)


def test_a_taken_port_is_one_line_and_exit_3(log: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        done = asup_untraced("ui", str(log), "--port", str(port))
    assert done.returncode == 3
    assert f"port {port} is in use" in one_line(done)


def _start(log: Path, *extra: str) -> tuple[subprocess.Popen[str], int]:
    port = free_port()
    proc = subprocess.Popen(asup_argv("ui", str(log), "--port", str(port), *extra), stderr=subprocess.PIPE, text=True)
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
