"""Fault injection through the store interface — never by special cases in the adapter.

A plan is a list of (kind, chunk); each entry fires once, at the first matching moment:
- interruption@N      the transport drops while writing chunk N (nothing committed)
- partial_write@N     chunk N is written short: the committed cursor falls behind
- checksum_mismatch@N chunk N lands with one byte flipped (found by the final BLAKE3)
- stale_metadata      the checkpoint read on resume carries a stale seed
- epoch_drift@N       another writer touches the target right after chunk N
- slow@N              writing chunk N takes SLOW_MS longer
- late_ack@N          an acknowledgement for chunk N arrives during verification
- crash@N             the process dies while writing chunk N (SimulatedCrash escapes the
                      adapter: no terminal state, a checkpoint to resume from)
- disk_full@N         writing chunk N fails with ENOSPC, as a full disk does
Command line: `--fault interruption@2,slow@0` or `--fault-file PLAN.json`
(`{"faults": [{"kind": "interruption", "chunk": 2}]}`).
"""

from __future__ import annotations

import errno
import os
import time
from collections.abc import Callable
from pathlib import Path

import msgspec

from engine import checkpoint as ckpt
from engine.layout import Layout
from engine.stores import LateAck, TargetHandle, TargetStore, TransportInterrupted
from engine.target_store import Forwarding
from events import strict_json
from events.errors import AsupError, ErrorCode
from events.vocabulary import FaultKind

KINDS = tuple(FaultKind)
SLOW_MS = 50


class SimulatedCrash(BaseException):
    """Escapes everything but a test or scenario harness, as a SIGKILL would."""


class FaultSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    kind: FaultKind
    chunk: int = 0


class _FileSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A plan file's entry as written: its kind is checked by `load_plan`, naming the entry."""

    kind: str
    chunk: int = 0


class _PlanFile(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    faults: list[_FileSpec] = msgspec.field(default_factory=list)


class FaultPlan(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    faults: list[FaultSpec] = msgspec.field(default_factory=list)

    def __str__(self) -> str:
        return ",".join(f"{f.kind}@{f.chunk}" for f in self.faults)


def parse_plan(text: str) -> FaultPlan:
    """`KIND[@CHUNK][,KIND[@CHUNK]...]`; a malformed part is a usage error naming it."""
    if not text.strip():
        return FaultPlan([])
    faults = []
    for number, raw in enumerate(text.split(","), 1):
        part = raw.strip()
        if not part:
            raise AsupError(ErrorCode.USAGE, f"fault plan {text!r}: part {number} is empty")
        kind, at, chunk = part.partition("@")
        if kind not in KINDS:
            raise AsupError(ErrorCode.USAGE, f"fault {part!r}: unknown kind {kind!r} (known: {', '.join(KINDS)})")
        if at and not (chunk.isascii() and chunk.isdecimal()):
            raise AsupError(ErrorCode.USAGE, f"fault {part!r}: chunk {chunk!r} is not a non-negative integer")
        faults.append(FaultSpec(FaultKind(kind), int(chunk) if at else 0))
    return FaultPlan(faults)


def load_plan(path: Path) -> FaultPlan:
    plan = strict_json.load(path, _PlanFile, what="fault plan", code=ErrorCode.USAGE)
    for i, fault in enumerate(plan.faults):
        if fault.kind not in KINDS or fault.chunk < 0:
            raise AsupError(ErrorCode.USAGE, f"unknown kind {fault.kind!r} or negative chunk", file=str(path), field=f"$.faults[{i}]")
    return FaultPlan([FaultSpec(FaultKind(f.kind), f.chunk) for f in plan.faults])


class FaultyTarget:
    """A target store whose handles fire a plan's faults; everything else passes through.
    The plan is shared by every handle it opens: each entry fires once in all."""

    def __init__(self, inner: TargetStore, plan: FaultPlan, chunk_size: int, sleep: Callable[[float], None] = time.sleep) -> None:
        self.inner = inner
        self.chunk_size = chunk_size
        self.pending = list(plan.faults)
        self.fired: list[FaultSpec] = []
        self._sleep = sleep

    def take(self, kind: FaultKind, chunk: int | None = None) -> bool:
        for fault in self.pending:
            if fault.kind == kind and (chunk is None or fault.chunk == chunk):
                self.pending.remove(fault)
                self.fired.append(fault)
                return True
        return False

    def open(self, name: str, layout: Layout, kind: str) -> FaultyHandle:
        return FaultyHandle(self, self.inner.open(name, layout, kind), name)

    def load_checkpoint(self, ref: str) -> bytes:
        data = self.inner.load_checkpoint(ref)
        if self.take(FaultKind.STALE_METADATA):
            stale = ckpt.decode(data, ref)
            data = ckpt.encode(msgspec.structs.replace(stale, seed=stale.seed + 1))
        return data

    def sleep(self, seconds: float) -> None:
        self._sleep(seconds)


class FaultyHandle(Forwarding):
    """One artifact's handle behind a `FaultyTarget`'s plan."""

    def __init__(self, faults: FaultyTarget, inner: TargetHandle, name: str) -> None:
        super().__init__(inner)
        self.faults = faults
        self._name = name

    def write(self, offset: int, data: bytes) -> tuple[int, str]:
        take = self.faults.take
        chunk = offset // self.faults.chunk_size
        if take(FaultKind.CRASH, chunk):
            raise SimulatedCrash(f"simulated crash while writing chunk {chunk}")
        if take(FaultKind.DISK_FULL, chunk):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self._name)
        if take(FaultKind.SLOW, chunk):
            self.faults.sleep(SLOW_MS / 1000)
        if take(FaultKind.INTERRUPTION, chunk):
            raise TransportInterrupted(f"transport dropped while writing chunk {chunk}")
        if take(FaultKind.PARTIAL_WRITE, chunk):
            data = data[: len(data) // 2]
        if take(FaultKind.CHECKSUM_MISMATCH, chunk) and data:
            data = bytes([data[0] ^ 0xFF]) + data[1:]
        result = self.inner.write(offset, data)
        if take(FaultKind.EPOCH_DRIFT, chunk):
            _touch_as_another_writer(self.faults.inner, self._name)
        return result

    def publish(self) -> None:
        late = next((f for f in self.faults.pending if f.kind == FaultKind.LATE_ACK), None)
        if late is not None and self.faults.take(FaultKind.LATE_ACK, late.chunk):
            raise LateAck(late.chunk)  # before the rename: the final name stays untouched
        self.inner.publish()


def _touch_as_another_writer(store: TargetStore, name: str) -> None:
    """Change the target's epoch the way a foreign writer would: its mtime moves on (on the
    temp file, or a bundle's first file; never through a link)."""
    temp_path = getattr(store, "temp_path", None)
    if temp_path is None:
        return
    path: Path = temp_path(name)
    target = path
    if path.is_dir() and not path.is_symlink():
        target = next((p for p in sorted(path.rglob("*")) if p.is_file() and not p.is_symlink()), path)
    st = target.lstat()
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_007), follow_symlinks=False)
