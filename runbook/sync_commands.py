"""`asup sync`: one transfer through the real adapter, recorded in a log."""

from __future__ import annotations

import contextlib
import shlex
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgspec
import typer

from engine import checkpoint as ckpt
from engine.adapter import SyncAdapter, TransferResult
from engine.appender import DirectAppender
from engine.contracts import load_profile
from engine.faults import FaultPlan, FaultyTarget, SimulatedCrash, load_plan, parse_plan
from engine.intent import DEFAULT_CHUNK, IntentFile, build_intent, check_apart, derive_transfer_id, load_intent
from engine.liveness import resume_command
from engine.machine import make_dispatcher
from engine.stop import StopRequest, run_stoppable, stop_on_signals
from engine.stores import DirectoryStore
from events.errors import AsupError, ErrorCode, ExitCode
from events.log_ref import LogRef
from events.observations import Intent
from events.vocabulary import Mode, ReasonCode
from projections.runbook_map import SECTION
from runbook.log_writing import LOG_HELP, lost_server, lost_target_server, open_log
from runbook.options import LOCK_TIMEOUT_OPT, ROOT_OPT, default_log_ref
from runbook.output import console, emit_json, line, reports_errors, styled
from runbook.targets import TARGET_HELP, Target, target_of

SECTIONS: dict[str, str] = {code.value: section for code, section in SECTION.items()}


def _intent_file(path: Path | None) -> IntentFile:
    return IntentFile() if path is None else load_intent(path)


def _pick(flag: Any, from_file: Any, default: Any, what: str) -> Any:
    value = flag if flag is not None else from_file if from_file is not None else default
    if value is None:
        raise AsupError(ErrorCode.USAGE, f"{what} is required (a flag or a field of --intent)")
    return value


def sync(
    src: Path | None = typer.Argument(None, help="Source artifact: a file or a bundle directory."),
    dst: str | None = typer.Argument(None, help=f"{TARGET_HELP}.", show_default=False),
    artifact_class: str | None = typer.Option(None, "--artifact-class", help="Capability matrix class, e.g. conformance_fixture_bundle."),
    mode: Mode | None = typer.Option(None, "--mode", help="strict (no retries) or hardened (bounded retries)."),
    seed: int | None = typer.Option(None, "--seed", help="Deterministic seed (backoff jitter, ids)."),
    log_path: str | None = typer.Option(None, "--log", help=f"{LOG_HELP} [default: ROOT/logs/transfers.jsonl]."),
    root: Path = ROOT_OPT,
    intent_path: Path | None = typer.Option(None, "--intent", help="JSON file with intent fields (flags win)."),
    adapter: str | None = typer.Option(None, "--adapter", help="Adapter profile: a built-in name or a .json file."),
    resume: str | None = typer.Option(None, "--resume", help="Resume from this checkpoint file."),
    fault: str | None = typer.Option(None, "--fault", help="Fault plan: `KIND[@CHUNK]` items joined by commas (e.g. `interruption@2`)."),
    fault_file: Path | None = typer.Option(None, "--fault-file", help="Fault plan as JSON."),
    chunk_size: int | None = typer.Option(None, "--chunk-size", help=f"Bytes per chunk (default {DEFAULT_CHUNK})."),
    max_attempts: int | None = typer.Option(None, "--max-attempts", help="Retry budget (strict: 0)."),
    expected_checksum: str | None = typer.Option(None, "--expected-checksum", help="`blake3:<hex>` the source must hash to."),
    transfer_id: str | None = typer.Option(None, "--transfer-id", help="Default: derived from artifact, target and seed."),
    lever: bool = typer.Option(True, "--lever/--no-lever", help="Compiled dispatcher (on) or the transitions.Machine (off: rollback)."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable result."),
    lock_timeout: float = LOCK_TIMEOUT_OPT,
) -> None:
    """Move one artifact from SRC to DST through the adapter, recording every event.

    Exit 0 when the transfer completes, 1 when it fails closed (the reason code and its
    runbook section are printed), 2 for bad input, 4 when the log's or DST's nats://
    server stopped answering (one line with the `asup resume` command), 130 when Ctrl-C or
    SIGTERM suspended it at a chunk boundary (the `asup resume` command to continue is
    printed; a second signal stops at once).

    Example: asup sync data/a.bin out/a.bin --artifact-class conformance_fixture_bundle --mode hardened --fault interruption@1
    """
    reports_errors(_sync)(
        src,
        dst,
        artifact_class,
        mode,
        seed,
        log_path,
        root,
        intent_path,
        adapter,
        resume,
        fault,
        fault_file,
        chunk_size,
        max_attempts,
        expected_checksum,
        transfer_id,
        lever,
        as_json,
    )


def _sync(
    src: Path | None,
    dst: str | None,
    artifact_class: str | None,
    mode: Mode | None,
    seed: int | None,
    log_given: str | None,
    root: Path,
    intent_path: Path | None,
    adapter: str | None,
    resume: str | None,
    fault: str | None,
    fault_file: Path | None,
    chunk_size: int | None,
    max_attempts: int | None,
    expected_checksum: str | None,
    transfer_id: str | None,
    lever: bool,
    as_json: bool,
) -> None:
    log_ref = default_log_ref(root, log_given)  # a malformed URL: a usage error before anything is read
    spec = _intent_file(intent_path)
    source_path = Path(_pick(src, spec.source, None, "SRC"))
    target = _target(dst, spec.target, intent_path)
    if isinstance(target.recorded, Path):  # a bucket is never inside a source directory
        check_apart(source_path, target.recorded)
    plan = load_plan(fault_file) if fault_file else parse_plan(fault or "")
    source = DirectoryStore(source_path.parent)
    intent = build_intent(
        source,
        source_path.name,
        target.name,
        artifact_class=_pick(artifact_class, spec.artifact_class, None, "--artifact-class"),
        mode=_pick(mode, spec.mode, None, "--mode"),
        seed=_pick(seed, spec.seed, 0, "--seed"),
        chunk_size=_pick(chunk_size, spec.chunk_size, DEFAULT_CHUNK, "--chunk-size"),
        max_attempts=max_attempts if max_attempts is not None else spec.max_attempts,
        adapter=_pick(adapter, spec.adapter, "full", "--adapter"),
        expected_checksum=expected_checksum or spec.expected_checksum,
        transfer_id=transfer_id
        or spec.transfer_id
        or derive_transfer_id(spec.artifact_id or source_path.name, target.given, seed or spec.seed or 0),
        artifact_id=spec.artifact_id,
        replay_command=shlex.join(["asup", *sys.argv[1:]]),
        paths=(source_path, target.recorded),
    )
    if spec.requested is not None:
        intent = msgspec.structs.replace(intent, requested=spec.requested)
    with contextlib.closing(target):
        run_transfer(intent, source, FaultyTarget(target.store, plan, intent.chunk_size), log_ref, resume, lever, as_json)


def _target(dst: str | None, from_file: str | None, intent_path: Path | None) -> Target:
    """DST, else the intent file's `target`; a malformed URL is a usage error naming which."""
    text: str = _pick(dst, from_file, None, "DST")
    if dst is None:
        return target_of(text, what="target", file=str(intent_path), field="$.target")
    return target_of(text)


def run_transfer(
    intent: Intent,
    source: DirectoryStore,
    target: FaultyTarget,
    log_ref: LogRef,
    resume: str | None,
    lever: bool,
    as_json: bool,
) -> None:
    """Run one transfer into the log `log_ref` names and report it: `asup sync` and `asup
    resume` both end here. Ctrl-C or SIGTERM suspends it at a chunk boundary (exit 130)."""
    # the operator's files are read before the log is opened: a bad one records nothing
    profile = load_profile(intent.adapter)
    plan = FaultPlan(list(target.pending))  # what --fault asked for, before any of it fires
    if resume is not None:
        ckpt.decode(target.inner.load_checkpoint(resume), resume)
    stop = StopRequest()
    resume_with = resume_command(intent.transfer_id, log_ref.text)
    with open_log(log_ref) as log, _bar(intent, as_json) as on_chunk:
        first = log.last_position()[0] + 1
        dispatcher = make_dispatcher(lever)
        adapter_ = SyncAdapter(
            appender=DirectAppender(log), source=source, target=target, dispatcher=dispatcher, profile=profile, stop=stop, on_chunk=on_chunk
        )
        try:
            with stop_on_signals(stop):
                result = run_stoppable(adapter_.run, intent, resume)
        except SimulatedCrash as crash:
            raise AsupError(ErrorCode.IO_FAILED, f"{crash}; resume: {resume_with}", file=log_ref.text) from None
        except AsupError as error:  # the log's server went away mid-transfer: say how to continue
            raise lost_server(error, log_ref, resume_with) from None
        last = log.last_position()[0]
    lost = lost_target_server(adapter_.store_error, log_ref, resume_with)
    if lost is not None:
        raise lost
    _report(result, intent, log_ref.text, (first, last), plan, as_json)
    if result.suspended:
        where = f"{result.committed_cursor}/{intent.size} bytes"
        message = f"asup: interrupted ({stop.signal}): {intent.transfer_id} suspended at {where}; resume: {resume_with}"
        console(stderr=True).print(message, markup=False, soft_wrap=True)
        raise typer.Exit(int(ExitCode.INTERRUPTED))
    if result.reason_code is not None:
        raise typer.Exit(1)


@contextlib.contextmanager
def _bar(intent: Intent, as_json: bool) -> Iterator[Callable[[int], None] | None]:
    """A progress bar of the bytes committed, on a terminal only (never in --json or a pipe)."""
    out = console(stderr=True)
    if as_json or not out.is_terminal:
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn  # a terminal only

    columns = (TextColumn(intent.transfer_id), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=out, transient=True) as bar:
        task = bar.add_task("sync", total=intent.size)
        yield lambda cursor: bar.update(task, completed=cursor)


# the reason codes `asup resume` continues after: the storage failed, not the transfer
RESUMABLE = frozenset({ReasonCode.IO_FAILED})


def _report(result: TransferResult, intent: Intent, log_name: str, seqs: tuple[int, int], plan: FaultPlan, as_json: bool) -> None:
    reason = result.reason_code.value if result.reason_code else None
    transfer_id, (first, last) = intent.transfer_id, seqs
    payload = {
        "transfer_id": transfer_id,
        "state": result.state.value,
        "reason_code": reason,
        "runbook_section": SECTIONS.get(reason or ""),
        "cause": result.cause or None,
        "attempt": result.attempt,
        "committed_cursor": result.committed_cursor,
        "log": log_name,
        "seq": [first, last],
        "faults": str(plan),
        "suspended": result.suspended,
        "resume_command": resume_command(transfer_id, log_name) if result.suspended or _resumable(result) else None,
    }
    if as_json:
        emit_json(payload)
        return
    out = console()
    if result.suspended:
        progress = f" {transfer_id}: {result.committed_cursor}/{intent.size} bytes, attempt {result.attempt}"
        out.print(line(styled(f"{result.state} (suspended)", "yellow"), progress))
    elif reason is None:
        out.print(line(styled(result.state, "green"), f" {transfer_id}: {result.committed_cursor} bytes, attempt {result.attempt}"))
    else:
        section = f" (runbook section {SECTIONS.get(reason, '?')})"
        out.print(line(styled(result.state, "red"), f" {transfer_id}: ", styled(reason, "bold"), section))
        out.print(f"  cause: {result.cause}", markup=False)
    inspect = shlex.join(["asup", "log", "cat", log_name, "--stream", transfer_id])
    out.print(f"  log {log_name} seq {first}..{last}; inspect: {inspect}", markup=False)
    if reason is not None:
        section = SECTIONS.get(reason, "?")
        triage = shlex.join(["asup", "triage", log_name])
        out.print(f"  next: {triage} (runs section {section}'s steps, each with its reproduce command)", markup=False)
        if _resumable(result):
            out.print(f"  then, once the storage is fixed: {resume_command(transfer_id, log_name)}", markup=False)


def _resumable(result: TransferResult) -> bool:
    """Failed closed on the storage under it: fix the disk and `asup resume` continues it."""
    return result.reason_code in RESUMABLE
