"""`asup sync-batch FILE`: many transfers at once through the runner (group commit, a
concurrency limit, a progress bar on a terminal)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import msgspec
import typer

from engine import checkpoint as ckpt
from engine.adapter import TransferResult
from engine.contracts import load_profile
from engine.intent import DEFAULT_CHUNK, IntentFile, build_intent, check_apart, decode_intent
from engine.liveness import resume_command
from engine.runner import Job, run_jobs
from engine.stop import StopRequest, run_stoppable, stop_on_signals
from engine.stores import DirectoryStore
from events import strict_json
from events.errors import AsupError, ErrorCode, ExitCode
from events.log_ref import LogRef, readable
from events.vocabulary import Mode, State
from projections.fold import fold_readable
from projections.transfers import Transfers
from runbook.log_writing import LOG_HELP, lost_server, open_log
from runbook.options import LOCK_TIMEOUT_OPT, ROOT_OPT, default_log_ref
from runbook.output import console, emit_json, fold_table, plural, reports_errors
from runbook.sync_commands import RESUMABLE, SECTIONS
from runbook.targets import Target, shared_stores, target_of

if TYPE_CHECKING:
    from engine.object_store import ObjectStore


class Planned(NamedTuple):
    """A batch line: the job the runner runs and the target it writes."""

    job: Job
    target: Target


def _jobs(path: Path, artifact_class: str | None, mode: Mode | None, stores: dict[str, ObjectStore] | None = None) -> list[Planned]:
    """Every line's job and target (`stores`: one object store per bucket URL, shared by the lines naming it)."""
    lines = strict_json.read(path, what="batch", code=ErrorCode.USAGE, max_bytes=strict_json.MAX_JSONL).splitlines()
    jobs = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        spec = decode_intent(line, str(path), number)
        jobs.append(_job(spec, artifact_class, mode, str(path), number, stores))
    if not jobs:
        raise AsupError(ErrorCode.USAGE, "the batch holds no intent", file=str(path))
    return jobs


def _job(
    spec: IntentFile, artifact_class: str | None, mode: Mode | None, file: str, line: int, stores: dict[str, ObjectStore] | None
) -> Planned:
    missing = [n for n, v in (("source", spec.source), ("target", spec.target)) if v is None]
    klass, chosen_mode = spec.artifact_class or artifact_class, spec.mode or mode
    if klass is None:
        missing.append("artifact_class")
    if chosen_mode is None:
        missing.append("mode")
    if missing or spec.source is None or spec.target is None or klass is None or chosen_mode is None:
        raise AsupError(ErrorCode.USAGE, f"intent lacks {', '.join(missing)}", file=file, line=line, field=f"$.{missing[0]}")
    load_profile(spec.adapter or "full")  # a bad profile file is refused before anything is recorded
    source_path = Path(spec.source)
    target = target_of(spec.target, what="target", file=file, line=line, field="$.target", shared=stores)
    if isinstance(target.recorded, Path):  # a bucket is never inside a source directory
        check_apart(source_path, target.recorded)
    source = DirectoryStore(source_path.parent)
    intent = build_intent(
        source,
        source_path.name,
        target.name,
        artifact_class=klass,
        mode=chosen_mode,
        seed=spec.seed or 0,
        chunk_size=spec.chunk_size or DEFAULT_CHUNK,
        max_attempts=spec.max_attempts,
        adapter=spec.adapter or "full",
        expected_checksum=spec.expected_checksum,
        transfer_id=spec.transfer_id,
        artifact_id=spec.artifact_id,
        replay_command=f"asup sync-batch {file}  # line {line}",
        paths=(source_path, target.recorded),
    )
    if spec.requested is not None:
        intent = msgspec.structs.replace(intent, requested=spec.requested)
    return Planned(Job(intent, source, target.store), target)


@reports_errors
def sync_batch(
    batch: Path = typer.Argument(..., help="JSONL file: one intent per line (source, target and the --intent fields)."),
    artifact_class: str | None = typer.Option(None, "--artifact-class", help="Default class for lines that name none."),
    mode: Mode | None = typer.Option(None, "--mode", help="Default mode for lines that name none."),
    log_path: str | None = typer.Option(None, "--log", help=f"{LOG_HELP} [default: ROOT/logs/transfers.jsonl]."),
    root: Path = ROOT_OPT,
    concurrency: int = typer.Option(8, "--concurrency", min=1, help="Transfers in flight at once."),
    lever: bool = typer.Option(True, "--lever/--no-lever", help="Compiled dispatcher (on) or the transitions.Machine (off)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable results."),
    resume: bool = typer.Option(False, "--resume", help="Skip lines the log shows completed; continue suspended, stale, io_failed ones."),
    lock_timeout: float = LOCK_TIMEOUT_OPT,
) -> None:
    """Run every intent of BATCH concurrently into one log (one writer, group commit).
    With --resume, a line whose transfer the log shows completed is skipped, and one left
    suspended, stale or failed closed with io_failed continues from its checkpoint.
    Ctrl-C or SIGTERM suspends every running transfer at its next chunk boundary (each
    listed with its `asup resume` command; queued ones are listed as not started) and
    exits 130; a second signal stops at once. One transfer's failure never stops the
    others. Exit 0 when all complete, 1 when any failed closed, 2 when none failed closed
    but a target refused a transfer before it began (something planted at a name asup
    owns: nothing of it recorded).

    Example: asup sync-batch intents.jsonl --artifact-class conformance_fixture_bundle --mode hardened --concurrency 16
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn  # imported by the verb that draws it

    ref = default_log_ref(root, log_path)  # a malformed URL: a usage error before the batch is read
    with shared_stores() as stores:  # open while the transfers run, closed however they end
        planned = _jobs(batch, artifact_class, mode, stores)
        jobs, skipped = _resumed(planned, ref) if resume else ([p.job for p in planned], [])
        out = console()
        stop = StopRequest()
        with (
            open_log(ref) as log,
            Progress(
                TextColumn("transfers"), BarColumn(), MofNCompleteColumn(), console=out, transient=True, disable=not out.is_terminal
            ) as bar,
        ):
            task = bar.add_task("transfers", total=len(jobs))
            try:
                with stop_on_signals(stop):
                    results = run_stoppable(
                        lambda: run_jobs(jobs, log, limit=concurrency, lever=lever, on_result=lambda _r: bar.advance(task), stop=stop)
                    )
            except BaseExceptionGroup as group:  # a transfer's error (a refused name, a failed disk) is one line, not a traceback
                first = _first_error(group)
                raise (lost_server(first, ref, "rerun this command with --resume") if isinstance(first, AsupError) else first) from None
    failed = [r for r in results if r.reason_code is not None]
    refused = [r for r in results if r.refused]
    ran = {r.transfer_id for r in results}
    not_started = [job.intent.transfer_id for job in jobs if job.intent.transfer_id not in ran]
    if as_json:
        rows = [_row(r, ref.text) for r in results]
        counts = {"transfers": len(results), "failed": len(failed), "refused": len(refused), "not_started": not_started, "skipped": skipped}
        emit_json({"log": ref.text, **counts, "results": rows})
    else:
        _print(results, ref.text, not_started)
        if skipped:
            console().print(
                f"skipped {plural(len(skipped), 'line')} the log shows completed: {', '.join(skipped)}", markup=False, soft_wrap=True
            )
    if stop.requested and (not_started or any(r.suspended for r in results)):
        _interrupted(stop, results, not_started)
    if failed or len(results) != len(jobs):
        raise typer.Exit(1)
    if refused:
        raise typer.Exit(2)


def _interrupted(stop: StopRequest, results: list[TransferResult], not_started: list[str]) -> None:
    suspended = sum(r.suspended for r in results)
    rerun = f", {len(not_started)} not started (rerun their lines)" if not_started else ""
    message = (
        f"asup: interrupted ({stop.signal}): {plural(suspended, 'transfer')} suspended{rerun}; resume each with its asup resume command"
    )
    console(stderr=True).print(message, markup=False, soft_wrap=True)
    raise typer.Exit(int(ExitCode.INTERRUPTED))


def _resumed(planned: list[Planned], ref: LogRef) -> tuple[list[Job], list[str]]:
    """The jobs still to run, each continuing from its checkpoint where the log left it
    unfinished (or failed on its storage), and the transfer ids the log shows completed."""
    jobs = [p.job for p in planned]
    if ref.url is None and not ref.path.is_file():
        return jobs, []
    try:
        with readable(ref) as path:
            views = fold_readable(path, [Transfers()])["transfers"].transfers
    except AsupError as exc:
        if exc.code is ErrorCode.LOG_NOT_FOUND and ref.url is not None:  # no stream yet: nothing ran, all to run
            return jobs, []
        raise
    todo, skipped = [], []
    for job, target in planned:
        view = views.get(job.intent.transfer_id)
        if view is not None and view.state is State.COMPLETED:
            skipped.append(job.intent.transfer_id)
            continue
        unfinished = view is not None and (view.state is not State.FAILED_CLOSED or view.reason_code in RESUMABLE)
        checkpoint = target.saved_checkpoint() if unfinished else None
        if checkpoint is not None:
            ckpt.decode(job.target.load_checkpoint(checkpoint), checkpoint)  # a bad one: refused before anything runs
            job = msgspec.structs.replace(job, resume_from=checkpoint)
        todo.append(job)
    return todo, skipped


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first AsupError (or OSError, or a second signal's KeyboardInterrupt) the task group
    collected; the group itself when none."""
    matched = group.subgroup(lambda exc: isinstance(exc, AsupError | OSError | KeyboardInterrupt))
    found: BaseException | None = matched
    while isinstance(found, BaseExceptionGroup):
        found = found.exceptions[0]
    return found if found is not None else group


def _row(r: TransferResult, log_name: str) -> dict[str, object]:
    reason = r.reason_code.value if r.reason_code else None
    return {
        "transfer_id": r.transfer_id,
        "state": r.state.value,
        "reason_code": reason,
        "runbook_section": SECTIONS.get(reason or ""),
        "attempt": r.attempt,
        "committed_cursor": r.committed_cursor,
        "cause": r.cause or r.refused or None,
        "refused": bool(r.refused),
        "suspended": r.suspended,
        "resume_command": resume_command(r.transfer_id, log_name) if r.suspended else None,
    }


def _print(results: list[TransferResult], log_name: str, not_started: list[str]) -> None:
    table = fold_table("transfer", "state", "reason code", "section", "bytes", "attempt", "cause")
    for r in results:
        reason = r.reason_code.value if r.reason_code else ""
        state = "refused" if r.refused else f"{r.state.value} (suspended)" if r.suspended else r.state.value
        cause = r.cause or r.refused
        table.add_row(r.transfer_id, state, reason, SECTIONS.get(reason, ""), str(r.committed_cursor), str(r.attempt), cause)
    for transfer_id in not_started:
        table.add_row(transfer_id, "not started", "", "", "0", "0", "")
    out = console()
    out.print(table)
    done = sum(r.state is State.COMPLETED for r in results)
    out.print(f"{done}/{len(results) + len(not_started)} completed; log {log_name}", markup=False)
    for r in results:
        if r.suspended:
            out.print(f"  resume: {resume_command(r.transfer_id, log_name)}", markup=False, soft_wrap=True)
