"""The crash loops' iteration counts at the end of the run (what `make soak` prints)."""

from __future__ import annotations

from pytest import TerminalReporter

from tests.reliability.crashloop import RAN


def pytest_terminal_summary(terminalreporter: TerminalReporter) -> None:
    if RAN:
        terminalreporter.section("crash loops")
        for line in RAN:
            terminalreporter.write_line(line)
