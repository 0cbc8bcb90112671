"""`asup resume TRANSFER_ID`: continue a transfer from its log alone.

The log holds everything a resume needs: the last intent (with the absolute source and
target paths the CLI resolved, or the target's `nats://HOST:PORT/BUCKET#NAME`, from which
the object store is opened again) and the last checkpoint written since the last fresh
session (the file beside the target's temp file, or the artifact's checkpoint subject).
The transfer then runs through the same code as `asup sync --resume`
(`sync_commands.run_transfer`).
"""

from __future__ import annotations

import contextlib
import shlex
from pathlib import Path

import msgspec
import typer

from engine import liveness
from engine.faults import FaultPlan, FaultyTarget
from engine.stores import DirectoryStore
from events.errors import AsupError, ErrorCode
from events.log_ref import LogRef, readable
from events.observations import CheckpointWritten, Intent, IntentRecorded
from events.record import Record
from events.vocabulary import State
from projections.fold import fold_readable
from projections.transfers import Transfers, TransferView
from runbook.log_writing import LOG_HELP
from runbook.options import LOCK_TIMEOUT_OPT, ROOT_OPT, default_log_ref
from runbook.output import console, emit_json, reports_errors
from runbook.sync_commands import RESUMABLE, run_transfer
from runbook.targets import Target, target_of


class ResumePoint(msgspec.Struct):
    intent: Intent | None = None
    checkpoint: str = ""  # the checkpoint file's name, "" when this session has none yet


class ResumePoints:
    """One stream's last intent and the checkpoint a resume continues from (a fresh
    session starts over at 0, so its predecessors' checkpoints no longer count)."""

    name = "resume_point"
    state_type = ResumePoint

    def __init__(self, transfer_id: str) -> None:
        self.transfer_id = transfer_id

    def initial(self) -> ResumePoint:
        return ResumePoint()

    def apply(self, state: ResumePoint, record: Record) -> ResumePoint:
        if record.stream != self.transfer_id:
            return state
        data = record.data
        if isinstance(data, IntentRecorded):
            state.intent = data.intent
            if not data.resume:
                state.checkpoint = ""
        elif isinstance(data, CheckpointWritten):
            state.checkpoint = data.name
        return state

    def render(self, state: ResumePoint) -> dict[str, object]:
        return msgspec.to_builtins(state)  # type: ignore[no-any-return]  # a plain dict of the struct


@reports_errors
def resume(
    transfer_id: str = typer.Argument(..., help="The transfer to continue (as `asup status` lists it)."),
    log_path: str | None = typer.Option(None, "--log", help=f"{LOG_HELP} (the transfer's) [default: ROOT/logs/transfers.jsonl]."),
    root: Path = ROOT_OPT,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable result."),
    lock_timeout: float = LOCK_TIMEOUT_OPT,
) -> None:
    """Continue TRANSFER_ID (suspended by Ctrl-C or SIGTERM, left by a process that died, or
    failed closed with io_failed once the storage is fixed) from its last checkpoint, with
    the intent its log recorded; with no checkpoint yet it runs again from 0. A completed
    transfer is left alone (exit 0, nothing recorded); one that failed closed on anything
    but io_failed is for `asup triage` (exit 2).

    Exit codes as `asup sync`: 0 completed, 1 failed closed, 2 an unknown transfer or one
    whose log records no paths, 130 suspended again.

    Example: asup resume t-4152f299890b --log artifacts/logs/transfers.jsonl
    """
    ref = default_log_ref(root, log_path)
    log = ref.text
    view, point = _find(ref, transfer_id)
    if view.state is State.COMPLETED:
        _already_completed(transfer_id, log, as_json)
        return
    if view.state is State.FAILED_CLOSED and view.reason_code not in RESUMABLE:
        reason = view.reason_code.value if view.reason_code else "?"
        message = f"transfer {transfer_id} failed closed ({reason}): nothing to resume; see {shlex.join(['asup', 'triage', log])}"
        raise AsupError(ErrorCode.USAGE, message, file=log)
    assert point.intent is not None
    intent = point.intent
    source_path, target_path = _paths(intent, log)
    running = liveness.check(target_path)
    if running.liveness is liveness.Liveness.HELD:  # its next append would meet ours in the stream
        message = f"transfer {transfer_id} is running ({running.detail}): nothing to resume, nothing recorded"
        raise AsupError(ErrorCode.CONFLICT_DETECTED, message, file=log)
    target = target_of(target_path, what="the recorded target path", file=log)
    with contextlib.closing(target):
        checkpoint = _checkpoint(target, point, log)
        faultless = FaultyTarget(target.store, FaultPlan([]), intent.chunk_size)
        run_transfer(intent, DirectoryStore(source_path.parent), faultless, ref, checkpoint, True, as_json)


def _find(ref: LogRef, transfer_id: str) -> tuple[TransferView, ResumePoint]:
    if ref.url is None and not ref.path.is_file():  # a stream that is not there is said by its server
        raise AsupError(ErrorCode.LOG_NOT_FOUND, "no such log file", file=ref.text)
    with readable(ref) as path:
        states = fold_readable(path, [Transfers(), ResumePoints(transfer_id)])
    view = states["transfers"].transfers.get(transfer_id)
    point: ResumePoint = states["resume_point"]
    if view is None or point.intent is None:
        raise AsupError(ErrorCode.USAGE, f"no transfer {transfer_id!r} in this log (asup status lists them)", file=ref.text)
    return view, point


def _paths(intent: Intent, log: str) -> tuple[Path, str]:
    missing = [name for name, value in (("source_path", intent.source_path), ("target_path", intent.target_path)) if not value]
    if missing:
        message = (
            f"the intent of {intent.transfer_id} records no {' or '.join(missing)} (a log of an older asup, or a library caller): "
            "continue it with asup sync SRC DST --resume CHECKPOINT"
        )
        raise AsupError(ErrorCode.USAGE, message, file=log)
    return Path(intent.source_path), intent.target_path


def _checkpoint(target: Target, point: ResumePoint, log: str) -> str | None:
    """The checkpoint to resume from (a file beside a directory target, a subject of a
    bucket), None when the session has none (it runs from 0)."""
    if not point.checkpoint:
        return None
    ref = target.checkpoint_ref()
    name = ref.rsplit("/", 1)[-1]  # what the transfer recorded of it
    if name != point.checkpoint:  # the log names another checkpoint than the store keeps: not asup's
        raise AsupError(ErrorCode.USAGE, f"the log's checkpoint {point.checkpoint!r} is not {name!r}", file=log)
    return ref


def _already_completed(transfer_id: str, log: str, as_json: bool) -> None:
    if as_json:
        emit_json({"transfer_id": transfer_id, "state": State.COMPLETED.value, "resumed": False, "log": log})
        return
    console().print(f"{transfer_id}: already completed; nothing to resume (log {log})", markup=False)
