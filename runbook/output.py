"""Rendering for the CLI: rich on a terminal, JSON (with a schema version) for machines,
and the one-line error form."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import orjson
import typer
from rich.console import Console, ConsoleOptions, RenderResult
from rich.table import Table
from rich.text import Text

from events.atomic import make_dirs
from events.errors import AsupError, ExitCode, os_error
from events.vocabulary import State

JSON_SCHEMA = "asup.cli/1"
STATE_COLORS: dict[State, str] = {State.COMPLETED: "green", State.FAILED_CLOSED: "red"}  # any other state: the caller's

P = ParamSpec("P")
R = TypeVar("R")


def console(stderr: bool = False) -> Console:
    """A rich console; off a terminal it never wraps lines (pipes and logs get whole lines).
    No emoji codes and no markup: `log.jsonl:100: ...` must not print as a picture, and a
    path or transfer id such as `[/x]` is printed as it is, never parsed as a style (colour
    comes from `styled` parts instead)."""
    plain = bool(os.environ.get("NO_COLOR"))  # no colour and no bold or dim either: no escape codes at all
    out = Console(stderr=stderr, no_color=plain, color_system=None if plain else "auto", highlight=False, emoji=False, markup=False)
    if not out.is_terminal:
        out.soft_wrap = True
    return out


def styled(text: object, style: str) -> Text:
    """`text` in `style`, literally: the only way colour enters asup's output."""
    return Text(str(text), style=style)


def line(*parts: str | Text) -> Text:
    """One printed line from plain and styled parts."""
    return Text.assemble(*parts)


def plural(count: int, noun: str) -> str:
    """`1 transfer`, `2 transfers`."""
    return f"{count} {noun}{'' if count == 1 else 's'}"


class FoldTable(Table):
    """On a terminal, a rich table; anywhere else (a pipe, a file) plain aligned columns,
    one row per line and never wrapped, so `asup status LOG | grep ID` finds the row."""

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if console.is_terminal:
            yield from super().__rich_console__(console, options)
            return
        cells = [[column.header, *column.cells] for column in self.columns]
        text = [[_plain(cell) for cell in row] for row in zip(*cells, strict=True)]
        widths = [max(len(row[i]) for row in text) for i in range(len(self.columns))]
        if self.title:
            yield Text(_plain(self.title), no_wrap=True, end="\n")
        for row in text:
            yield Text("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip(), no_wrap=True, end="\n")


def _plain(cell: object) -> str:
    """A cell's text on one line (a cell that holds a newline would break the one-row-per-line
    promise), `-` when empty."""
    plain = " ".join((cell.plain if isinstance(cell, Text) else str(cell)).split("\n"))
    return plain or "-"  # an empty cell would shift every later column for `awk '{print $4}'`


def fold_table(*headers: str, **options: Any) -> Table:
    """A rich table whose cells fold instead of ending in an ellipsis: a transfer id, a path
    or a command to copy is never cut short, however narrow the terminal (see `FoldTable`
    for what it is off a terminal)."""
    out = FoldTable(**options)
    for header in headers:
        out.add_column(header, overflow="fold")
    return out


def emit_json(payload: dict[str, Any]) -> None:
    body = {"schema": JSON_SCHEMA, **payload}
    sys.stdout.buffer.write(orjson.dumps(body, option=orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE))
    sys.stdout.flush()


def write_output(path: Path, data: bytes) -> None:
    """Write a file the operator named (`-o`, `--trace`), creating its directory. Written in
    place, not replaced: the name may be a FIFO or a device the operator means."""
    make_dirs(path.parent)
    try:
        path.write_bytes(data)
    except OSError as exc:
        raise os_error(exc, "cannot write", path) from exc


def fail(error: AsupError) -> typer.Exit:
    """Print `error` as one line on stderr; return the Exit to raise with its code."""
    console(stderr=True).print(f"asup: {error.one_line()}", markup=False, soft_wrap=True)
    return typer.Exit(int(error.exit_code))


def _quiet_stdout() -> None:
    """Point stdout at /dev/null, so flushing it at exit is no second error (Python's own
    advice for SIGPIPE)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def reports_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Turn AsupError into its one-line message and exit code; Ctrl-C into 130."""

    @wraps(command)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except AsupError as error:
            raise fail(error) from None
        except BrokenPipeError:  # the reader went away (`| head`): end quietly, as Unix tools do
            _quiet_stdout()
            raise typer.Exit(int(ExitCode.PIPE_CLOSED)) from None
        except OSError as exc:  # the last net: a failure no layer translated is still one line
            raise fail(os_error(exc, "the OS refused", exc.filename or "")) from None
        except KeyboardInterrupt:
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None

    return run
