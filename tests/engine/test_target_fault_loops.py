"""Fail-at-N over a whole transfer's target I/O (lease, temp writes, checkpoints, prepare,
publish): the directory store runs on `FaultyFS`, and for every n the n-th file call fails
(EIO; ENOSPC for writes). Each time: the transfer ends in an AsupError (never another
exception) or completes; nothing outside the root changes; the final name is absent or
holds the whole artifact; and a later run (a resume from the checkpoint when there is one)
completes with the right digest."""

from __future__ import annotations

import errno
from collections import Counter
from pathlib import Path

import pytest

from engine.stores import DirectoryStore
from events.errors import AsupError
from events.memory_log import MemoryLog
from events.observations import Intent
from events.testing import FaultyFS, StepClock
from events.vocabulary import State
from tests.engine.conftest import BUNDLE_NAME, BUNDLE_TARGET, FILE_NAME, FILE_TARGET, Stores, make_intent, run_transfer, tree
from tests.engine.test_planted_names import Outside
from tests.reliability.crashloop import report

CASES = {"file": (FILE_NAME, FILE_TARGET), "bundle": (BUNDLE_NAME, BUNDLE_TARGET)}


def expected(stores: Stores, intent: Intent) -> object:
    source = stores.source_dir / intent.source
    return source.read_bytes() if intent.kind == "file" else stores.source_tree(intent.source)


def published(stores: Stores, intent: Intent) -> object:
    final = stores.final(intent.target)
    if intent.kind == "file":
        return final.read_bytes()
    files = tree(final)
    files.pop("bundle_manifest_v1.json")
    return files


def faulted_run(stores: Stores, intent: Intent, fs: FaultyFS) -> str:
    """One transfer through `fs`; what became of it."""
    target = DirectoryStore(stores.target_dir, fs=fs)
    try:
        result, _ = run_transfer(MemoryLog("faulted", clock=StepClock()), stores, intent, target=target)
    except AsupError:
        return "failed with an AsupError"
    assert result.state in (State.COMPLETED, State.FAILED_CLOSED), result
    return "completed anyway" if result.state is State.COMPLETED else "failed closed"


def rerun(stores: Stores, intent: Intent) -> str:
    """A later process: resume from the checkpoint when one is there and readable, else start again."""
    checkpoint = Path(stores.checkpoint(intent.target))
    for resume_from in (str(checkpoint), None) if checkpoint.is_file() else (None,):
        try:
            result, _ = run_transfer(MemoryLog("rerun", clock=StepClock()), stores, intent, resume_from=resume_from)
        except AsupError:
            continue  # a checkpoint cut mid-write: start again
        if result.state is State.COMPLETED:
            return "resumed" if resume_from else "ran again"
        assert resume_from is not None, f"a fresh re-run failed closed: {result}"
    raise AssertionError("neither a resume nor a fresh run completed")


@pytest.mark.parametrize("kind", ["file", "bundle"])
def test_every_failing_file_call_of_a_transfer_leaves_a_safe_resumable_target(tmp_path: Path, kind: str) -> None:
    """For every n, call n fails: only AsupError, nothing outside changed, no half final artifact, a re-run completes."""
    source, target = CASES[kind]
    probe = Stores(tmp_path / "probe")
    fs = FaultyFS()
    assert faulted_run(probe, make_intent(probe, source, target), fs) == "completed anyway"
    ops = [call.op for call in fs.trace if call.n]
    calls = len(ops)
    counts: Counter[str] = Counter()
    for n in range(1, calls + 1):
        stores = Stores(tmp_path / f"n{n}")
        outside = Outside(tmp_path / f"n{n}" / "outside")
        intent = make_intent(stores, source, target)
        fs = FaultyFS()
        op = ops[n - 1]
        fs.fail_at(n, errno.ENOSPC if op in ("write", "pwrite") else errno.EIO)
        counts[faulted_run(stores, intent, fs)] += 1
        context = f"{kind}, call {n} of {calls} ({op}) failing"
        outside.assert_unchanged(context)
        final = stores.final(intent.target)
        if final.exists():
            assert published(stores, intent) == expected(stores, intent), f"{context}: a half artifact under the final name"
        counts[rerun(stores, intent)] += 1
        assert published(stores, intent) == expected(stores, intent), context
    counts["faulted runs"] = calls
    report(f"a target file call failing ({kind} transfer)", counts)


@pytest.mark.parametrize("kind", ["file", "bundle"])
def test_every_target_call_goes_through_the_given_file_system(tmp_path: Path, kind: str) -> None:
    """With every call of the store's FileSystem failing, the transfer is an AsupError and nothing appears beside the target."""
    source, target = CASES[kind]
    stores = Stores(tmp_path)
    fs = FaultyFS()
    fs.fail_at(1, persistent=True)
    assert faulted_run(stores, make_intent(stores, source, target), fs) == "failed with an AsupError"
    assert list(stores.target_dir.iterdir()) == []
