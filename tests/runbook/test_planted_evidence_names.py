"""Names asup uses under the evidence root, planted by an attacker before a run: a link to a
file or directory outside the root, a FIFO, a hardlink to an outside file, a directory.
Whatever is planted, nothing outside the root changes, no run hangs or raises anything but a
one-line AsupError, and a run that succeeds leaves a sealed pack at the final name."""

from __future__ import annotations

import errno
import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from engine import durability
from events.digest import digest_file
from events.errors import AsupError
from events.jsonl_log import SIDE_SUFFIXES
from events.testing import FaultyFS
from projections.artifact_paths import ArtifactPaths
from runbook import evidence
from tests.cli import run_asup
from tests.reliability.crashloop import report

KINDS = ("link_to_file", "link_to_dir", "fifo", "hardlink", "directory")


def snapshot(directory: Path) -> dict[str, tuple[int, int, int, bytes | None]]:
    """Everything about what is under `directory` that a write through a link would change."""
    found = {}
    for path in sorted(directory.rglob("*")):
        st = path.lstat()
        body = path.read_bytes() if path.is_file() and not path.is_symlink() else None
        found[str(path)] = (st.st_mode, st.st_size, st.st_mtime_ns, body)
    return found


def cycle(paths: ArtifactPaths) -> None:
    """Seal, sidecar, scrub, drill, sign-off: every evidence step that writes under the root."""
    pack, _, _ = evidence.build_pack(paths)
    sidecar, _ = evidence.encode_sidecar(paths, pack, k=8, m=4, codec="isa_l_rs_vand")
    evidence.run_scrub(paths, pack, sidecar, repair=False)
    evidence.run_drill(paths, sidecar, paths.recovered, seed=7)
    evidence.sign_off(paths)


def asup_names(paths: ArtifactPaths) -> list[Path]:
    """Every name a cycle creates or replaces under the root (from the code's own paths)."""
    v1 = paths.v1
    names = [v1.parent, v1, paths.gates, v1 / "history", paths.pack, paths.sidecar, paths.recovered]
    names += [paths.scrub_report, paths.signoff, paths.ops_log, *paths.contracts]
    names += [paths.ops_log.with_name(paths.ops_log.name + suffix) for suffix in SIDE_SUFFIXES]
    names += [durability.fragment_path(paths.sidecar, i) for i in (0, 11)]  # the first and last fragment files of 8+4
    return names


def history_dir(paths: ArtifactPaths) -> Path:
    """Where the next build retires the current pack to."""
    seals = evidence.ops_state(paths).seals
    return paths.v1 / "history" / f"seal-{seals[-1].seq}"


def plant(at: Path, kind: str, outside: Path) -> None:
    if at.is_dir() and not at.is_symlink():
        shutil.rmtree(at)
    elif at.exists() or at.is_symlink():
        at.unlink()
    at.parent.mkdir(parents=True, exist_ok=True)
    if kind == "link_to_file":
        at.symlink_to(outside / "sentinel.txt")
    elif kind == "link_to_dir":
        at.symlink_to(outside)
    elif kind == "fifo":
        os.mkfifo(at)
    elif kind == "hardlink":
        os.link(outside / "sentinel.txt", at)
    else:
        at.mkdir()
        (at / "planted.txt").write_text("planted\n")


def world(tmp_path: Path) -> tuple[ArtifactPaths, Path]:
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir(parents=True)
    outside.mkdir()
    (outside / "sentinel.txt").write_text("never changed by asup\n")
    (outside / "inner").mkdir()
    return ArtifactPaths(root), outside


def attempt(paths: ArtifactPaths) -> str:
    try:
        cycle(paths)
    except AsupError as error:
        assert "\n" not in error.one_line()
        return "refused"
    latest = evidence.ops_state(paths).seals[-1].data.digest
    assert digest_file(paths.pack) == latest, "a run that succeeded left an unsealed pack at the final name"
    return "completed safely"


def test_nothing_planted_at_an_asup_name_changes_anything_outside_the_root(tmp_path: Path) -> None:
    counts: Counter[str] = Counter()
    case = 0
    for second_run in (False, True):
        for index in range(len(asup_names(ArtifactPaths(tmp_path / "probe"))) + 2):
            for kind in KINDS:
                case += 1
                paths, outside = world(tmp_path / f"c{case}")
                if second_run:
                    cycle(paths)
                names = [*asup_names(paths), history_dir(paths) if second_run else paths.v1 / "history" / "seal-1"]
                names.append(names[-1] / paths.pack.name)
                if index >= len(names):
                    continue
                before = snapshot(outside)
                plant(names[index], kind, outside)
                outcome = attempt(paths)
                assert snapshot(outside) == before, f"{kind} at {names[index]} changed something outside the root"
                counts[outcome] += 1
    counts["cases"] = sum(counts.values())
    report("planted names under the evidence root", counts)
    assert counts["refused"] > 0 and counts["completed safely"] > 0


def test_a_link_at_the_runbook_directory_is_refused_through_the_cli(tmp_path: Path) -> None:
    paths, outside = world(tmp_path)
    paths.v1.parent.mkdir()
    paths.v1.symlink_to(outside / "inner")
    before = snapshot(outside)
    done = run_asup("evidence", "build", "--root", str(paths.root), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("\n") == 1 and "symlink" in done.stderr and "Traceback" not in done.stderr
    assert snapshot(outside) == before


def test_a_fifo_at_the_ops_log_is_refused_without_blocking(tmp_path: Path) -> None:
    paths, _ = world(tmp_path)
    paths.v1.mkdir(parents=True)
    os.mkfifo(paths.ops_log)
    done = run_asup("checklist", "--root", str(paths.root), cwd=tmp_path)  # run_asup times out at 60 s
    assert done.returncode == 2, done.stderr
    assert "not a regular file" in done.stderr and done.stderr.count("\n") == 1


@pytest.mark.parametrize("error", [errno.EIO])
def test_evidence_build_failing_at_every_call_keeps_every_pack_and_never_publishes_half_a_one(tmp_path: Path, error: int) -> None:
    counts: Counter[str] = Counter()
    probe, _ = world(tmp_path / "probe")
    cycle(probe)
    fs = FaultyFS()
    evidence.build_pack(probe, fs=fs)
    total = fs.count
    assert total > 20  # the loop below exercises a real sequence of calls
    for n in range(1, total + 1):
        paths, outside = world(tmp_path / f"n{n}")
        cycle(paths)
        sealed_before = digest_file(paths.pack)
        before = snapshot(outside)
        fs = FaultyFS()
        fs.fail_at(n, error)
        try:
            evidence.build_pack(paths, fs=fs)
            counts["completed"] += 1
        except AsupError:
            counts["refused"] += 1
        assert snapshot(outside) == before
        kept = [p for p in paths.v1.rglob("*.json") if p.name == paths.pack.name and digest_file(p) == sealed_before]
        assert kept, f"the sealed pack was lost when call {n} failed"
        seals = {c.data.digest for c in evidence.ops_state(paths).seals}
        if paths.pack.exists() and digest_file(paths.pack) not in seals:
            pack = next(i for i in evidence.current_checklist(paths) if i.id == "pack_current")
            assert pack.status == "fail", "an unsealed pack at the final name passes the checklist"
            counts["unsealed pack reported"] += 1
        _, digest, _ = evidence.build_pack(paths)  # the next run completes
        assert digest_file(paths.pack) == digest
    counts["calls failed"] = total
    report(f"evidence build failing at call N ({errno.errorcode[error]})", counts)
    assert counts["refused"] > 0
