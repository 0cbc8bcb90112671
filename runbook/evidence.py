"""The evidence workflow: facts for the checklist, the final evidence pack (built, then
sealed by an event), the sidecar, scrub, decode drill and the sign-off — each outcome an
event in the operations log. Order, as DESIGN.md asks: seal, sidecar, scrub, drill,
sign-off; a sealed pack is never edited (a new build moves the old pack and sidecar to
`history/`)."""

from __future__ import annotations

import contextlib
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from engine import durability
from engine.contracts import contract_dir
from engine.scrub import ScrubReport, scrub
from engine.sidecar_write import write_manifest, write_sidecar
from events import strict_json
from events.atomic import make_dirs, move_aside, read_small, refusal, write_atomic
from events.chain import ChainState
from events.clock import Clock, SystemClock, format_ts
from events.digest import digest_bytes, digest_file
from events.errors import AsupError, ErrorCode, os_error
from events.fs import OS, FileSystem
from events.jetstream.url import is_url
from events.jsonl_log import SIDE_SUFFIXES, JsonlLog
from events.log_ref import log_ref, readable
from events.operations import DecodeProofRecorded, EvidenceSealed, ScrubFinished, SidecarWritten, SignoffRecorded
from events.payloads import Event
from events.scan import Scanner
from events.vocabulary import CheckStatus
from projections import checklist
from projections.artifact_paths import ArtifactPaths
from projections.base import canonical_json
from projections.checklist import LogFact
from projections.escalation import Inputs, escalate, level_of
from projections.fold import fold_log
from projections.operations import Operations, OpsState
from replay.replayable import check_log, is_asup_log

if TYPE_CHECKING:
    from events.jetstream.log import JetStreamLog

OPS_LOG_ID = "asupersync-ops"


def record_op(paths: ArtifactPaths, stream: str, event: Event, *, fs: FileSystem = OS) -> int:
    """Append one operations event; returns its seq. The ops log is asup's own name under the
    root: a link there (which could lead to another log outside) is refused, not followed."""
    make_dirs(paths.v1, under=paths.root, fs=fs)
    _refuse_link(paths.ops_log)
    with JsonlLog.open(paths.ops_log, log_id=OPS_LOG_ID, fs=fs) as log:
        return log.append(stream, [event])[0].seq


def _refuse_link(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISLNK(path.lstat().st_mode):
            raise refusal("a symlink", path)


def ops_state(paths: ArtifactPaths) -> OpsState:
    _refuse_link(paths.ops_log)
    if not paths.ops_log.exists():
        return OpsState()
    result = fold_log(paths.ops_log, [Operations()])
    if result.problem is not None:
        raise result.problem.error(str(paths.ops_log))
    state: OpsState = result.states["operations"]
    return state


def find_logs(paths: ArtifactPaths) -> list[Path]:
    return sorted(p for p in _regular_files(paths.root) if p.suffix == ".jsonl" and is_asup_log(p))


def _regular_files(root: Path) -> list[Path]:
    """Every regular file under `root`, in order; a symlink (which could lead out of the root)
    or a FIFO, socket or device there is refused, never followed or silently left out."""
    found = []
    for path in sorted(root.rglob("*")):
        mode = path.lstat().st_mode
        if stat.S_ISREG(mode):
            found.append(path)
        elif not stat.S_ISDIR(mode):
            kind = "a symlink" if stat.S_ISLNK(mode) else "a special file"
            raise AsupError(ErrorCode.USAGE, f"{kind} in the evidence root: asup never follows or seals one; remove it", file=str(path))
    return found


def inventory(paths: ArtifactPaths) -> list[dict[str, Any]]:
    skip = paths.sealed_outputs()
    rows = []
    for path in _regular_files(paths.root):
        rel = paths.rel(path)
        if path in skip or rel.startswith(("asupersync/v1/history/", "demo/")) or ".tmp" in path.name or ".damaged-" in path.name:
            continue
        if path.name.startswith(f"{paths.pack.name}.ec."):
            continue  # the sidecar (`durability.sidecar_files`) and copies of its parts kept aside: made from the pack
        if path.suffix == ".jsonl" and is_asup_log(path):
            continue  # logs grow: they are listed by their heads
        if path.name.endswith(SIDE_SUFFIXES) or path.name.startswith("."):
            continue
        rows.append({"path": rel, "size": path.stat().st_size, "digest": digest_file(path)})
    return rows


def log_heads(paths: ArtifactPaths) -> list[dict[str, Any]]:
    heads = []
    for path in find_logs(paths):
        scanner = Scanner(path, ChainState())
        for _ in scanner:
            pass
        heads.append({"path": paths.rel(path), "last_seq": scanner.chain.last_seq, "last_h": scanner.chain.last_h})
    for url in paths.remote_logs:
        with _remote(url) as log:
            seq, h = log.head()
        heads.append({"path": url, "last_seq": seq, "last_h": h})
    return heads


def _remote(url: str) -> JetStreamLog:
    """A nats:// log opened for reading (nothing read at open)."""
    from events.jetstream.log import JetStreamLog

    return JetStreamLog.open(url, create=False, reader=True)


def remote_facts(paths: ArtifactPaths) -> list[LogFact]:
    """`check_log` of each remote log, over a verified snapshot, named by its URL."""
    facts = []
    for url in paths.remote_logs:
        try:
            with readable(log_ref(url)) as snapshot:
                fact = check_log(snapshot)
                fact = msgspec.structs.replace(fact, path=url, problem=fact.problem.replace(str(snapshot), url))
        except AsupError as exc:
            if exc.code is ErrorCode.LOG_UNREACHABLE:
                raise  # an unreachable log is not a failed one: the operator must see it, not a red item
            fact = LogFact(path=url, last_seq=0, last_h="", ok=False, streams=0, reproduced=0, problem=exc.one_line())
        facts.append(fact)
    return facts


MAX_PACK = 64 << 20  # an inventory row is ~150 bytes: room for some 400,000 artifacts


class _Row(msgspec.Struct, frozen=True):
    path: str
    digest: str


class _Head(msgspec.Struct, frozen=True):
    path: str
    last_seq: int
    last_h: str


class _PackView(msgspec.Struct, frozen=True):
    """What drift is judged by: the pack's inventory and log heads, typed (the rest is ignored)."""

    evidence_inventory: list[_Row] = []
    log_heads: list[_Head] = []


def _head_still_there(root: Path, head: _Head) -> bool:
    if is_url(head.path):  # a stream keeps every record: the one at the sealed seq must still be the sealed one
        with _remote(head.path) as log:
            return head.last_seq == 0 or log.digest_at(head.last_seq) == head.last_h
    path = root / head.path
    if not path.exists():
        return False
    for record in Scanner(path, ChainState()):
        if record.seq == head.last_seq:
            return bool(record.h == head.last_h)
    return bool(head.last_seq == 0)


def pack_drift(paths: ArtifactPaths, pack: _PackView) -> list[str]:
    drift = []
    for row in pack.evidence_inventory:
        path = paths.root / row.path
        if not path.exists() or digest_file(path) != row.digest:
            drift.append(row.path)
    drift += [head.path for head in pack.log_heads if not _head_still_there(paths.root, head)]
    return drift


def gather_facts(paths: ArtifactPaths) -> checklist.Facts:
    pack_digest, drift = None, []
    if paths.pack.exists():
        pack_digest = digest_file(paths.pack)
        try:
            pack = strict_json.load(paths.pack, _PackView, what="evidence pack", code=ErrorCode.BAD_INPUT, max_bytes=MAX_PACK)
        except AsupError:  # unreadable or not a pack: the pack itself is what drifted
            drift = [paths.rel(paths.pack)]
        else:
            drift = pack_drift(paths, pack)
    logs = [check_log(p) for p in find_logs(paths) if p != paths.ops_log] + remote_facts(paths)
    return checklist.Facts(
        pack_digest=pack_digest, pack_drift=drift, logs=logs, pack_path=paths.rel(paths.pack), sidecar=sidecar_fact(paths)
    )


def current_checklist(paths: ArtifactPaths) -> list[checklist.Item]:
    return checklist.derive(ops_state(paths), gather_facts(paths))


def export_contracts(paths: ArtifactPaths, *, fs: FileSystem = OS) -> list[Path]:
    """Copy the shipped contracts to the runbook paths (a differing copy is kept aside)."""
    make_dirs(paths.v1, under=paths.root, fs=fs)
    written = []
    for source in sorted(contract_dir().glob("*.json")):
        target = paths.v1 / source.name
        wanted = source.read_bytes()
        present = read_small(target, len(wanted))  # never through a link, nor from a FIFO
        if present == wanted:
            continue
        if os.path.lexists(target):
            move_aside(target, "superseded", fs)
        write_atomic(target, wanted, fs=fs)
        written.append(target)
    return written


def build_pack(paths: ArtifactPaths, clock: Clock | None = None, *, fs: FileSystem = OS) -> tuple[Path, str, int]:
    """Build and seal a new pack; returns (path, digest, seal seq)."""
    export_contracts(paths, fs=fs)
    ops = ops_state(paths)
    items = checklist.derive(ops, gather_facts(paths))
    rules = escalate(Inputs(ops=ops, checklist=items))
    pack = {
        "schema_version": "1.0.0",
        "artifact_id": "asupersync-final-evidence-pack-v1",
        "sealed_at": format_ts((clock or SystemClock()).now_ns()),
        "evidence_inventory": inventory(paths),
        "log_heads": log_heads(paths),
        "gate_results": {g: {**msgspec.to_builtins(c.data), "seq": c.seq} for g, c in sorted(ops.gates.items())},
        "checklist": checklist.render(items),
        "escalation": {"level": level_of(rules), "rules": [msgspec.to_builtins(r) for r in rules]},
        "durability_artifacts": {
            "sidecar_path": paths.rel(paths.sidecar),
            "recovered_output_path": paths.rel(paths.recovered),
            "scrub_report_path": paths.rel(paths.scrub_report),
            "encode_command": f"asup durability encode {paths.pack}",
            "scrub_command": f"asup durability scrub {paths.pack} {paths.sidecar}",
            "decode_drill_command": f"asup durability decode-drill {paths.sidecar} {paths.recovered}",
        },
        "operational_runbook": "README.md#operator-runbook",
    }
    _retire_previous(paths, ops, fs)
    data = canonical_json(pack)
    write_atomic(paths.pack, data, fs=fs)
    digest = digest_bytes(data)
    seq = record_op(
        paths,
        "evidence",
        EvidenceSealed(pack=paths.rel(paths.pack), digest=digest, size=len(data), artifacts=len(pack["evidence_inventory"])),
        fs=fs,
    )
    return paths.pack, digest, seq


def _retire_previous(paths: ArtifactPaths, ops: OpsState, fs: FileSystem) -> None:
    if not paths.pack.exists():
        return
    history = paths.v1 / "history" / f"seal-{ops.seals[-1].seq if ops.seals else 0}"
    make_dirs(history, under=paths.root, fs=fs)
    for path in (paths.pack, *durability.sidecar_files(paths.pack)):
        if os.path.lexists(path):
            retire(path, history / path.name, fs)


def retire(path: Path, target: Path, fs: FileSystem = OS) -> None:
    """Move `path` to `target` without replacing anything there: an earlier occupant is kept
    as `target.older-<n>` first (by name, never followed)."""
    while True:
        try:
            fs.rename_noreplace(path, target)
            return
        except FileExistsError:
            move_aside(target, "older", fs)
        except OSError as exc:
            raise os_error(exc, "cannot move to history", path) from exc


def encode_sidecar(paths: ArtifactPaths, pack: Path, *, k: int, m: int, codec: str) -> tuple[Path, durability.Manifest]:
    encoded = durability.encode(pack, k=k, m=m, codec=codec)
    target = durability.sidecar_path(pack)
    write_sidecar(target, encoded)
    record_op(
        paths,
        "durability",
        SidecarWritten(
            pack=paths.rel(pack),
            sidecar=paths.rel(target),
            codec=codec,
            k=k,
            m=m,
            pack_digest=encoded.manifest.pack_digest,
            sidecar_digest=digest_file(target),
        ),
    )
    return target, encoded.manifest


def run_scrub(paths: ArtifactPaths, pack: Path, sidecar: Path, *, repair: bool) -> ScrubReport:
    """Scrub against the seal (or sidecar_written) events and the decode proofs of the ops log."""
    ops = ops_state(paths)
    vouched = Operations.vouched(ops, paths.rel(pack))
    report = scrub(pack, sidecar, vouched=vouched, repair=repair, proof_events=Operations.proof_events(ops, paths.rel(sidecar)))
    record_op(
        paths,
        "durability",
        ScrubFinished(
            pack=paths.rel(pack),
            sidecar=paths.rel(sidecar),
            status=report.status,
            sealed_digest=report.sealed_digest,
            pack_digest=report.pack_digest,
            bad_fragments=report.bad_fragments,
            kept=report.kept,
            damaged=report.damaged,
            kept_files=report.kept_files,
            forged_proofs=len(report.forged_proofs),
        ),
    )
    if pack == paths.pack:
        write_atomic(paths.scrub_report, canonical_json(msgspec.to_builtins(report)))
    return report


def run_drill(paths: ArtifactPaths, sidecar_file: Path, out: Path, *, seed: int, clock: Clock | None = None) -> DecodeProofRecorded:
    """The decode drill; its event is recorded first, then its proof (citing the event's
    seq) goes into the manifest, so a proof there always has its event."""
    sidecar = durability.read_sidecar(sidecar_file)
    rel = paths.rel(sidecar_file)
    counted, forged = durability.match_proofs(sidecar.proofs, Operations.proof_events(ops_state(paths), rel))
    notes = [f"{len(forged)} decode proof(s) in the manifest have no event (forged): not counted"] if forged else []
    at = format_ts((clock or SystemClock()).now_ns())
    base = DecodeProofRecorded(
        sidecar=rel, output=paths.rel(out), ok=False, dropped=[], digest="", one_more_loss_failed_closed=False, proof_count=len(counted)
    )
    base = msgspec.structs.replace(base, seed=seed, at=at, forged_proofs=len(forged))
    try:
        data, proof = durability.drill(sidecar, seed, at)
    except AsupError as exc:  # a decode that fails closed is the drill's recorded outcome
        failed = msgspec.structs.replace(base, detail="; ".join([str(exc), *notes]))
        record_op(paths, "durability", failed)
        return failed
    make_dirs(out.parent)
    write_atomic(out, data)
    manifest = sidecar.manifest if not sidecar.manifest_damage else None
    if manifest is None:
        notes.insert(
            0, f"the manifest is damaged ({sidecar.manifest_damage}): the proof is in the operations log only; scrub --repair rebuilds it"
        )
    event = msgspec.structs.replace(
        base,
        ok=True,
        dropped=proof.dropped,
        digest=proof.digest,
        one_more_loss_failed_closed=proof.one_more_loss_failed_closed,
        proof_count=len(counted) + (manifest is not None),
        detail="; ".join(notes),
    )
    seq = record_op(paths, "durability", event)
    if manifest is not None:
        proofs = [*manifest.decode_proofs, msgspec.structs.replace(proof, seq=seq)]
        write_manifest(sidecar_file, msgspec.structs.replace(manifest, decode_proofs=proofs))
    return event


def sidecar_fact(paths: ArtifactPaths) -> checklist.SidecarFact:
    """The decode proofs of the current pack's sidecar manifest, for the checklist to match with their events."""
    try:
        manifest = durability.load_manifest(paths.sidecar)
    except AsupError as error:
        return checklist.SidecarFact(proofs=[], problem=error.message)
    return checklist.SidecarFact(proofs=manifest.decode_proofs, pack_digest=manifest.pack_digest)


def sign_off(paths: ArtifactPaths, clock: Clock | None = None) -> tuple[CheckStatus, list[checklist.Item]]:
    """Record the final checklist: pass only when every other item passes."""
    items = current_checklist(paths)
    others = [i for i in items if i.id != "signoff"]
    verdict = CheckStatus.PASS if all(i.status == CheckStatus.PASS for i in others) else CheckStatus.FAIL
    pack_digest = digest_file(paths.pack) if paths.pack.exists() else ""
    document = {
        "schema_version": "1.0.0",
        "artifact_id": "asupersync-signoff-v1",
        "signed_at": format_ts((clock or SystemClock()).now_ns()),
        "verdict": verdict,
        "pack_digest": pack_digest,
        "checklist": checklist.render(others),
    }
    data = canonical_json(document)
    make_dirs(paths.v1, under=paths.root)
    write_atomic(paths.signoff, data)
    record_op(
        paths,
        "signoff",
        SignoffRecorded(
            verdict=verdict,
            checklist={i.id: i.status for i in others},
            signoff=paths.rel(paths.signoff),
            digest=digest_bytes(data),
            pack_digest=pack_digest,
        ),
    )
    return verdict, current_checklist(paths)
