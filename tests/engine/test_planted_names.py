"""Names planted where asup creates its files beside a target: a symlink to a file or a
directory outside the root, a FIFO, a hardlink to an outside file, a directory. Each one at
every name the store itself lists (`DirectoryStore.owned_paths`), for a file and a bundle,
fresh and resumed: the outside file and directory never change, nothing an attacker
planted is published, and the outcome is a clear refusal or a correct transfer. And at the
final name, planted during the transfer: publish never replaces it."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from engine.faults import SimulatedCrash
from engine.layout import Layout
from engine.stores import DirectoryStore, TargetHandle
from engine.target_store import Forwarding
from events.errors import AsupError, ErrorCode
from events.memory_log import MemoryLog
from events.observations import BundleFile, Intent, StoreFailed
from events.testing import StepClock
from events.vocabulary import ReasonCode, State
from tests.cli import run_asup
from tests.engine.conftest import BUNDLE_NAME, BUNDLE_TARGET, FILE_NAME, FILE_TARGET, Stores, make_intent, run_transfer, tree
from tests.reliability.crashloop import report

PLANTS = ("symlink to a file", "symlink to a directory", "FIFO", "hardlink", "directory")
SENTINEL = b"outside the root: never written\n"


class Outside:
    """A file and a directory outside the target root, and how they looked at the start."""

    def __init__(self, root: Path) -> None:
        self.file = root / "sentinel.txt"
        self.dir = root / "sentinel-dir"
        self.dir.mkdir(parents=True)
        self.file.write_bytes(SENTINEL)
        (self.dir / "kept.txt").write_bytes(SENTINEL)
        self.before = self.snapshot()

    def snapshot(self) -> tuple[object, ...]:
        st = self.file.stat()
        listing = sorted((p.name, p.read_bytes() if p.is_file() else b"", p.lstat().st_mtime_ns) for p in self.dir.rglob("*"))
        return self.file.read_bytes(), st.st_mtime_ns, st.st_size, self.dir.stat().st_mtime_ns, listing

    def plant(self, where: Path, kind: str) -> None:
        if kind == "symlink to a file":
            where.symlink_to(self.file)
        elif kind == "symlink to a directory":
            where.symlink_to(self.dir, target_is_directory=True)
        elif kind == "FIFO":
            os.mkfifo(where)
        elif kind == "hardlink":
            os.link(self.file, where)
        else:
            where.mkdir()

    def assert_unchanged(self, context: str) -> None:
        assert self.snapshot() == self.before, f"{context}: something outside the root changed"


def layout_of(intent: Intent) -> Layout:
    return Layout(intent.files or [BundleFile("", intent.size, intent.expected_checksum)])


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def prepare_case(stores: Stores, intent: Intent, where: Path, resume: bool) -> str | None:
    """A fresh or crashed-and-resumable transfer with `where` free for a plant; the checkpoint to resume from."""
    log = MemoryLog("planted", clock=StepClock())
    if resume:
        with pytest.raises(SimulatedCrash):
            run_transfer(log, stores, intent, faults="crash@2")
    temp = stores.temp(intent.target)
    if intent.kind == "bundle" and where != temp and (temp in where.parents or where.name.endswith("leftovers-1")):
        temp.mkdir(exist_ok=True)  # an earlier transfer's temp directory, holding a stray for the leftovers
        (temp / "stray.bin").write_bytes(b"left by an earlier transfer")
    remove(where)
    where.parent.mkdir(parents=True, exist_ok=True)
    return stores.checkpoint(intent.target) if resume else None


def outcome_of(stores: Stores, intent: Intent, resume_from: str | None, context: str) -> str:
    try:
        result, _ = run_transfer(MemoryLog("planted", clock=StepClock()), stores, intent, resume_from=resume_from)
    except AsupError as refused:
        assert refused.code in (ErrorCode.USAGE, ErrorCode.BAD_INPUT), f"{context}: {refused}"
        assert "refusing" in refused.message or refused.code is ErrorCode.BAD_INPUT, f"{context}: {refused}"
        return "refused"
    if result.state is State.COMPLETED:
        return "transferred correctly"
    assert result.state is State.FAILED_CLOSED, context
    return f"failed closed ({result.reason_code})"


def assert_nothing_foreign_published(stores: Stores, intent: Intent, outside: Outside, context: str) -> None:
    final = stores.final(intent.target)
    if not (final.exists() or final.is_symlink()):
        return
    assert not final.is_symlink(), f"{context}: the final name is a link"
    if intent.kind == "file":
        st = final.lstat()
        assert st.st_nlink == 1 and st.st_ino != outside.file.stat().st_ino, f"{context}: the final file is the outside one"
        assert final.read_bytes() == (stores.source_dir / intent.source).read_bytes(), context
    else:
        published = tree(final)
        published.pop("bundle_manifest_v1.json")
        assert published == stores.source_tree(intent.source), f"{context}: the published bundle is not the source's"


def owned_names(tmp_path: Path, source: str, target: str) -> list[str]:
    """The names the store says it creates for `target`, relative to the target root."""
    probe = Stores(tmp_path / "probe")
    intent = make_intent(probe, source, target)
    names = [str(p.relative_to(probe.target_dir)) for p in probe.target.owned_paths(target, layout_of(intent), intent.kind)]
    shutil.rmtree(probe.root)
    return names


def test_every_name_beside_a_target_refuses_or_survives_every_plant(tmp_path: Path) -> None:
    """Each plant at each owned name, file and bundle, fresh and resumed: the outside never changes, nothing planted is published."""
    counts: Counter[str] = Counter()
    case = 0
    for source, target in ((FILE_NAME, FILE_TARGET), (BUNDLE_NAME, BUNDLE_TARGET)):
        for name in owned_names(tmp_path, source, target):
            for resume in (False, True):
                for plant in PLANTS:
                    case += 1
                    root = tmp_path / f"c{case}"
                    stores = Stores(root)
                    outside = Outside(root / "outside")
                    intent = make_intent(stores, source, target)
                    where = stores.target_dir / name
                    context = f"{plant} at {name} ({intent.kind}, {'resumed' if resume else 'fresh'})"
                    resume_from = prepare_case(stores, intent, where, resume)
                    outside.plant(where, plant)
                    counts[outcome_of(stores, intent, resume_from, context)] += 1
                    outside.assert_unchanged(context)
                    assert_nothing_foreign_published(stores, intent, outside, context)
                    shutil.rmtree(root)
    counts["cases"] = case
    report("planted names beside a target", counts)
    assert counts["refused"] > 0 and counts["transferred correctly"] > 0


@pytest.mark.parametrize(("kind", "plant"), [("file", "symlink to a file"), ("file", "hardlink"), ("bundle", "symlink to a directory")])
def test_a_planted_temp_through_the_cli_is_one_line_and_touches_nothing_outside(tmp_path: Path, kind: str, plant: str) -> None:
    """`asup sync` with a link planted at the hidden temp name: exit 2, one line naming it, no traceback, the outside unchanged,
    and nothing of the transfer recorded (it used to leave the transfer `syncing` for ever)."""
    stores = Stores(tmp_path / "w")
    outside = Outside(tmp_path / "outside")
    source, target = (FILE_NAME, FILE_TARGET) if kind == "file" else (BUNDLE_NAME, BUNDLE_TARGET)
    temp = stores.temp(target)
    outside.plant(temp, plant)
    run = run_asup(
        "sync", str(stores.source_dir / source), str(stores.target_dir / target), "--artifact-class", "conformance_fixture_bundle",
        "--mode", "strict", "--chunk-size", "4096", "--log", str(tmp_path / "log.jsonl"), cwd=tmp_path,
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert run.stderr.count("\n") == 1 and "Traceback" not in run.stderr, run.stderr
    assert "refusing" in run.stderr and temp.name in run.stderr
    outside.assert_unchanged(f"{plant} at the {kind} temp")
    assert not stores.final(target).exists()
    recorded = (tmp_path / "log.jsonl").read_text().splitlines() if (tmp_path / "log.jsonl").exists() else []
    assert all('"type":"log_created"' in line for line in recorded), "the refused transfer was recorded (a ghost `syncing`)"


# --- the final name, taken while the transfer runs -------------------------------------------


class PlantAtPublish:
    """A target whose handles plant something at the final name just before publishing."""

    def __init__(self, inner: DirectoryStore, plant: Callable[[Path], None]) -> None:
        self.inner = inner
        self.plant = plant

    def open(self, name: str, layout: Layout, kind: str) -> TargetHandle:
        return _Planting(self.inner.open(name, layout, kind), lambda: self.plant(self.inner.path(name)))

    def load_checkpoint(self, ref: str) -> bytes:
        return self.inner.load_checkpoint(ref)


class _Planting(Forwarding):
    def __init__(self, inner: TargetHandle, plant: Callable[[], None]) -> None:
        super().__init__(inner)
        self._plant = plant

    def publish(self) -> None:
        self._plant()
        self.inner.publish()


FINAL_PLANTS = ("symlink to a file", "dangling symlink", "file", "empty directory")


@pytest.mark.parametrize("kind", ["file", "bundle"])
@pytest.mark.parametrize("plant", FINAL_PLANTS)
def test_publish_never_replaces_what_appeared_at_the_final_name(tmp_path: Path, kind: str, plant: str) -> None:
    """Something planted at the final name between the last check and publish: the transfer fails closed with
    conflict_detected, recorded (never left `verifying_checksum`), and the planted thing is still there as it was."""
    stores = Stores(tmp_path / "w")
    outside = Outside(tmp_path / "outside")
    source, target = (FILE_NAME, FILE_TARGET) if kind == "file" else (BUNDLE_NAME, BUNDLE_TARGET)

    def put(final: Path) -> None:
        if plant == "symlink to a file":
            final.symlink_to(outside.file)
        elif plant == "dangling symlink":
            final.symlink_to(tmp_path / "nowhere")
        elif plant == "file":
            final.write_bytes(b"someone else's")
        else:
            final.mkdir()

    intent = make_intent(stores, source, target)
    result, records = run_transfer(MemoryLog("final", clock=StepClock()), stores, intent, target=PlantAtPublish(stores.target, put))
    assert (result.state, result.reason_code) == (State.FAILED_CLOSED, ReasonCode.CONFLICT_DETECTED)
    failed = [r.data for r in records if isinstance(r.data, StoreFailed)]
    assert [(f.kind, f.where, f.op) for f in failed] == [("conflict", "target", "publish")]
    assert "the final artifact appeared during the transfer" in result.cause
    final = stores.final(target)
    if plant.endswith("symlink") or plant.startswith("symlink"):
        assert final.is_symlink()
    elif plant == "file":
        assert final.read_bytes() == b"someone else's"
    else:
        assert final.is_dir() and not any(final.iterdir())
    assert stores.temp(target).exists(), "the unpublished artifact stays where it was"
    outside.assert_unchanged(plant)


@pytest.mark.parametrize("kind", ["file", "bundle"])
@pytest.mark.parametrize("resume", [False, True], ids=["fresh", "resumed"])
def test_a_link_at_the_final_name_to_a_copy_of_the_artifact_is_not_ours(tmp_path: Path, kind: str, resume: bool) -> None:
    """A symlink at the final name to an outside copy with the right bytes reads as blake3:-: a conflict, not a finished transfer."""
    stores = Stores(tmp_path / "w")
    source, target = (FILE_NAME, FILE_TARGET) if kind == "file" else (BUNDLE_NAME, BUNDLE_TARGET)
    copy = tmp_path / "outside-copy"
    original = stores.source_dir / source
    if kind == "file":
        shutil.copyfile(original, copy)
    else:
        shutil.copytree(original, copy)
    intent = make_intent(stores, source, target)
    log = MemoryLog("final-link", clock=StepClock())
    resume_from = None
    if resume:
        with pytest.raises(SimulatedCrash):
            run_transfer(log, stores, intent, faults="crash@2")
        resume_from = stores.checkpoint(target)
    stores.final(target).symlink_to(copy, target_is_directory=kind == "bundle")
    result, _ = run_transfer(log, stores, intent, resume_from=resume_from)
    assert (result.state, result.reason_code) == (State.FAILED_CLOSED, ReasonCode.CONFLICT_DETECTED)
    assert stores.final(target).is_symlink()
