"""`asup contract show|validate`: the shipped capability matrix, state machine and profiles."""

from __future__ import annotations

from pathlib import Path

import orjson
import typer

from engine.contracts import MATRIX_FILE, PROFILES_FILE, STATE_MACHINE_FILE, contract_dir, load_matrix, load_profiles, load_state_machine
from runbook.output import console, emit_json, fold_table, reports_errors

app = typer.Typer(
    rich_markup_mode="markdown",
    help="Show or validate the contracts (capability matrix, state machine, adapter profiles).\n\nExample: asup contract show matrix",
    no_args_is_help=True,
)


@app.command()
@reports_errors
def show(
    what: str = typer.Argument("state-machine", help="state-machine | matrix | profiles"),
    as_json: bool = typer.Option(False, "--json", help="Print the contract JSON itself."),
) -> None:
    """Print a contract: the transition table, the matrix or the adapter profiles.

    Example: asup contract show matrix
    """
    files = {"state-machine": STATE_MACHINE_FILE, "matrix": MATRIX_FILE, "profiles": PROFILES_FILE}
    if what not in files:
        raise typer.BadParameter(f"expected one of {', '.join(files)}", param_hint="WHAT")
    if as_json:
        emit_json({"contract": what, "document": orjson.loads((contract_dir() / files[what]).read_bytes())})
        return
    out = console()
    if what == "state-machine":
        table = fold_table("from", "trigger", "to", "reason code", "notes", title="adapter state machine")
        for row in load_state_machine().state_machine.transition_table:
            table.add_row(row.from_state, row.event, row.to_state, row.reason_code or "", row.notes)
    elif what == "matrix":
        table = fold_table("operation", "artifact class", "primitives", title="capability matrix")
        for entry in load_matrix().capability_matrix:
            table.add_row(
                entry.operation_id, entry.artifact_class, "\n".join(f"{p.id} v{p.version} {p.params}" for p in entry.asupersync_primitives)
            )
    else:
        table = fold_table("profile", "offers", "description", title="adapter profiles")
        for profile in load_profiles().profiles:
            table.add_row(profile.name, "\n".join(f"{k} v{o.version}" for k, o in profile.primitives.items()), profile.description)
    out.print(table)


@app.command()
@reports_errors
def validate(
    directory: Path | None = typer.Argument(None, help="A directory holding the three contract files (default: the shipped ones)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable verdict."),
) -> None:
    """Load and validate the contracts; a malformed one is a one-line error naming file and field (exit 2).

    Example: asup contract validate
    """
    root = directory or contract_dir()
    matrix = load_matrix(root / MATRIX_FILE)
    machine = load_state_machine(root / STATE_MACHINE_FILE)
    profiles = load_profiles(root / PROFILES_FILE)
    summary = {
        "directory": str(root),
        "artifact_classes": len(matrix.capability_matrix),
        "transitions": len(machine.state_machine.transition_table),
        "profiles": len(profiles.profiles),
        "valid": True,
    }
    if as_json:
        emit_json(summary)
    else:
        console().print(
            f"contracts valid: {summary['artifact_classes']} artifact classes, {summary['transitions']} transitions, "
            f"{summary['profiles']} adapter profiles ({root})",
            markup=False,
        )
