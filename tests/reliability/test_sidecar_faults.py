"""Fail-at-N loops over writing a sidecar and over a scrub repair (the fault harness,
`events.testing.FaultyFS`): each run learns the K mutating calls of its step, then runs
it again from the same files with call N failing (EIO, then ENOSPC), for every N. The
step may raise only `AsupError`. After a failed run the files are exactly what they were
(the old sidecar, the damaged pack: nothing half-written has a final name, nothing kept
aside is left behind); after one that went through, the new sidecar or the restored pack
verifies and what it replaced is kept; a sentinel file outside the root never changes."""

from __future__ import annotations

import errno
import random
import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from engine import durability
from engine.scrub import ScrubReport, Vouched, scrub
from engine.sidecar_write import write_sidecar
from events.digest import digest_bytes
from events.errors import AsupError
from events.testing import FaultyFS
from events.testing.faulty_fs import MUTATING_OPS
from tests.reliability.crashloop import report

K, M = 4, 2


def snapshot(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}


class Root:
    """An evidence root with a pack (and maybe an older sidecar) and, outside it, a sentinel."""

    def __init__(self, base: Path) -> None:
        self.root = base / "root"
        self.root.mkdir()
        self.sentinel = base / "outside.txt"
        self.sentinel.write_bytes(b"never touched\n")
        self.pack = self.root / "pack.json"
        self.manifest = durability.sidecar_path(self.pack)
        self.data = random.Random(5).randbytes(4000)

    def restore(self, files: dict[str, bytes]) -> None:
        for path in self.root.iterdir():
            path.unlink()
        for name, data in files.items():
            (self.root / name).write_bytes(data)


def fault_loop(
    name: str,
    base: Path,
    setup: Callable[[Root], None],
    step: Callable[[Root, FaultyFS], object],
    check: Callable[[Root, object, dict[str, bytes]], None],
) -> Counter[str]:
    where = Root(base)
    setup(where)
    before = snapshot(where.root)
    counting = FaultyFS(ops=MUTATING_OPS)
    step(where, counting)
    calls = counting.count
    assert calls > 0
    counts: Counter[str] = Counter(calls=calls)
    for error in (errno.EIO, errno.ENOSPC):
        for n in range(1, calls + 1):
            where.restore(before)
            fs = FaultyFS(ops=MUTATING_OPS)
            fs.fail_at(n, error)
            try:
                outcome: object = step(where, fs)
            except AsupError as raised:
                assert snapshot(where.root) == before, (
                    f"{name}: call {n} ({errno.errorcode[error]}) failed and left the files changed: {raised}"
                )
                counts["failed, files as they were"] += 1
            else:
                check(where, outcome, before)
                counts["went through"] += 1
            assert where.sentinel.read_bytes() == b"never touched\n"
    report(name, counts)
    return counts


def _encode(where: Root, fs: FaultyFS) -> object:
    return write_sidecar(
        where.manifest, durability.encode_bytes(where.data, where.pack.name, where.manifest.name, k=K, m=M, codec="isa_l_rs_vand"), fs
    )


def _new_sidecar_verifies(where: Root, outcome: object, before: dict[str, bytes]) -> None:
    sidecar = durability.read_sidecar(where.manifest)
    assert sidecar.damaged == [] and sidecar.binding is not None and sidecar.binding.pack_digest == digest_bytes(where.data)
    assert durability.recover(sidecar) == where.data
    for kept in outcome:  # type: ignore[attr-defined]  # the paths write_sidecar kept aside
        original = Path(kept).name.rsplit(".superseded-", 1)[0]
        assert Path(kept).read_bytes() == before[original]
    assert not [p for p in where.root.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("old", [False, True], ids=["new", "over an older sidecar"])
def test_sidecar_write_fails_whole_or_not_at_all(tmp_path: Path, old: bool) -> None:
    """Each mutating call of writing a 4+2 sidecar failing in turn: the old sidecar (or none) stays
    byte for byte, or the new one is whole."""

    def setup(where: Root) -> None:
        where.pack.write_bytes(where.data)
        if old:
            older = random.Random(6).randbytes(3000)
            write_sidecar(
                where.manifest, durability.encode_bytes(older, where.pack.name, where.manifest.name, k=K + 1, m=M, codec="isa_l_rs_vand")
            )

    counts = fault_loop(f"sidecar write ({'over an older sidecar' if old else 'new'})", tmp_path, setup, _encode, _new_sidecar_verifies)
    assert counts["failed, files as they were"] > 0


def _damage(where: Root) -> None:
    """A pack edited, two fragments damaged and the manifest too: a repair has four files to replace."""
    where.pack.write_bytes(where.data)
    write_sidecar(
        where.manifest, durability.encode_bytes(where.data, where.pack.name, where.manifest.name, k=K, m=M, codec="isa_l_rs_vand")
    )
    where.pack.write_bytes(b"edited" + where.data[6:])
    for index in (1, 4):
        path = durability.fragment_path(where.manifest, index)
        path.write_bytes(path.read_bytes()[:-1] + b"\0")
    where.manifest.write_bytes(where.manifest.read_bytes().replace(b'"k":4', b'"k":5'))


def _repair(where: Root, fs: FaultyFS) -> object:
    return scrub(where.pack, where.manifest, vouched=Vouched({digest_bytes(where.data): 1}), repair=True, fs=fs)


def _restored(where: Root, outcome: object, before: dict[str, bytes]) -> None:
    assert isinstance(outcome, ScrubReport)
    if outcome.status != "restored":  # a read failed on the way, so less was found: nothing may have changed then
        assert not outcome.healthy and snapshot(where.root) == before, outcome
        return
    assert where.pack.read_bytes() == where.data
    assert durability.read_sidecar(where.manifest).damaged == []
    for kept in outcome.kept_files:
        assert Path(kept).read_bytes() == before[Path(kept).name.rsplit(".damaged-", 1)[0]]
    assert len(outcome.kept_files) == 4


def test_scrub_repair_fails_whole_or_not_at_all(tmp_path: Path) -> None:
    """Each mutating call of a repair (pack, two fragments, manifest) failing in turn: all four replaced and kept, or none touched."""
    counts = fault_loop("scrub repair", tmp_path, _damage, _repair, _restored)
    assert counts["failed, files as they were"] > 0 and counts["went through"] > 0


def test_a_planted_link_at_a_fragment_name_is_refused(tmp_path: Path) -> None:
    """A symlink to a file outside the root planted at PACK.ec.02: the sidecar write is refused, the
    outside file untouched, nothing published."""
    where = Root(tmp_path)
    where.pack.write_bytes(where.data)
    durability.fragment_path(where.manifest, 2).symlink_to(where.sentinel)
    with pytest.raises(AsupError) as raised:
        _encode(where, FaultyFS())
    assert "symlink" in raised.value.one_line()
    assert where.sentinel.read_bytes() == b"never touched\n"
    assert sorted(p.name for p in where.root.iterdir()) == ["pack.json", "pack.json.ec.02"]
    shutil.rmtree(where.root)
