"""`asup clean TARGET...`: the files asup keeps beside a target (lease, temp, checkpoint),
for artifacts no transfer is running on. What a resume needs stays unless `--discard`;
what an earlier transfer set aside always stays."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from engine.directory_target import DirectoryHandle
from engine.layout import Layout
from engine.stores import DirectoryStore
from events.errors import AsupError, ErrorCode
from events.observations import BundleFile
from runbook.output import console, emit_json, fold_table, reports_errors

_ANY = Layout([BundleFile("", 1, "")])  # clean reads no member: any one-file layout opens the handle


@reports_errors
def clean(
    targets: list[Path] = typer.Argument(..., help="Target artifacts (the final paths), e.g. out/graph.bin."),
    discard: bool = typer.Option(False, "--discard", help="Also remove an unfinished transfer's bytes and checkpoint (no resume)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be removed; remove nothing."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable result."),
) -> None:
    """Remove the lease, an empty temp file and a checkpoint with nothing left to resume
    beside each TARGET, taking the target's lease first: a target a transfer is running on
    is left alone (exit 1). An unfinished transfer's bytes and checkpoint stay unless
    --discard; a bundle's unpublished tree and the leftovers an earlier transfer set aside
    always stay (they are listed). Nothing is followed through a link.

    Example: asup clean out/graph.bin --dry-run
    """
    rows: list[dict[str, str]] = []
    busy = []
    for target in targets:
        lease_file = target.with_name(f".{target.name}.asup-lease")
        had_lease = os.path.lexists(lease_file)  # clean's own lease file is not news
        handle = DirectoryStore(target.parent).open(target.name, _ANY, "file")
        assert isinstance(handle, DirectoryHandle)
        try:
            if handle.lease("asup clean") is None:
                busy.append(str(target))
                rows.append({"target": str(target), "path": str(target), "done": f"left alone: in use ({handle.lease_holder()})"})
                continue
            for path, done in handle.clean(discard=discard, dry_run=dry_run, own_lease=not had_lease):
                if path == str(lease_file) and not had_lease:
                    continue
                rows.append({"target": str(target), "path": path, "done": _said(done, dry_run)})
        finally:
            handle.close()
    _report(rows, as_json, dry_run)
    if busy:
        raise AsupError(ErrorCode.CONFLICT_DETECTED, f"in use by a running transfer: {', '.join(busy)}")


def _said(done: str, dry_run: bool) -> str:
    return "would be " + done if dry_run and done.startswith("removed") else done


def _report(rows: list[dict[str, str]], as_json: bool, dry_run: bool) -> None:
    if as_json:
        emit_json({"dry_run": dry_run, "files": rows})
        return
    out = console()
    if not rows:
        out.print("nothing of asup's beside these targets", markup=False)
        return
    table = fold_table("path", "done")
    for row in rows:
        table.add_row(row["path"], row["done"])
    out.print(table)
