"""The `asup` command line. Its exit codes are `events.errors.ExitCode`; the root help
lists them from `EXIT_MEANINGS`, so the enum is the one place they are written."""

from __future__ import annotations

import signal
import sys

import typer
import typer.main
from typer._click.exceptions import UsageError  # typer vendors click; the lock file pins it

from engine.contracts import default_matrix, default_state_machine
from events.errors import AsupError, ExitCode, exit_codes_help
from events.record import LOG_SCHEMA, SCHEMA_VERSION
from events.version import VERSION
from runbook import (
    batch_commands,
    clean_commands,
    config,
    contract_commands,
    evidence_commands,
    log_commands,
    readiness_commands,
    replay_commands,
    report_commands,
    resume_commands,
    scenario_commands,
    sync_commands,
    tail_commands,
    ui_commands,
)

app = typer.Typer(
    rich_markup_mode="markdown",
    name="asup",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    pretty_exceptions_enable=False,
)
app.add_typer(log_commands.app, name="log")
app.add_typer(scenario_commands.app, name="scenario")
app.add_typer(contract_commands.app, name="contract")
app.command("sync")(sync_commands.sync)
app.command("sync-batch")(batch_commands.sync_batch)
app.command("resume")(resume_commands.resume)
app.command("status")(report_commands.status)
app.command("trace")(report_commands.trace)
app.command("escalate")(report_commands.escalate_cmd)
app.command("checklist")(report_commands.checklist)
app.command("replay")(replay_commands.replay)
app.command("diff")(replay_commands.diff)
app.command("gate")(readiness_commands.gate)
app.add_typer(readiness_commands.e2e_app, name="e2e")
app.command("readiness")(readiness_commands.readiness)
app.command("triage")(readiness_commands.triage)
app.command("tail")(tail_commands.tail)
app.command("ui")(ui_commands.ui)
app.command("clean")(clean_commands.clean)
app.add_typer(evidence_commands.evidence_app, name="evidence")
app.add_typer(evidence_commands.durability_app, name="durability")


def _version(value: bool) -> None:
    if value:
        contracts = f"capability matrix {default_matrix().schema_version}, state machine {default_state_machine().schema_version}"
        typer.echo(f"asup {VERSION} (log schema {LOG_SCHEMA}, record v{SCHEMA_VERSION}; contracts: {contracts})")
        raise typer.Exit()


ROOT_HELP = f"""asup: event-sourced sync adapters and the asupersync runbook's operator tooling.

{exit_codes_help()}

Example: asup readiness --root artifacts
"""


@app.callback(help=ROOT_HELP)
def root(
    show_version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print versions and exit."),
) -> None:
    """The root options; the help is ROOT_HELP."""


def _sigterm_as_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # the same clean path as Ctrl-C: writers close, logs stay valid


def _asks_for_help(args: list[str]) -> bool:
    return not args or any(arg in ("--help", "-h", "--version") for arg in args)


def main() -> None:
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)
    command = typer.main.get_command(app)  # built once: the config's defaults and the run share it
    try:
        defaults = config.default_map(command, config.load())
    except AsupError as error:
        sys.stderr.write(f"asup: {error.one_line()}\n")
        if not _asks_for_help(sys.argv[1:]):
            sys.exit(int(error.exit_code))
        defaults = {}  # a broken asup.toml must not hide the help that explains it
    try:
        code = command(standalone_mode=False, default_map=defaults, prog_name="asup")  # also under `python -m runbook`
    except UsageError as exc:  # click would print a multi-line box; asup errors are one line
        where = f" ({exc.ctx.command_path})" if exc.ctx else ""
        if exc.format_message():  # empty when the help was printed for a bare group
            sys.stderr.write(f"asup: usage{where}: {exc.format_message()} (see --help)\n")
        sys.exit(int(ExitCode.USAGE))
    except typer.Abort:
        sys.exit(int(ExitCode.INTERRUPTED))
    sys.exit(code if isinstance(code, int) else 0)
