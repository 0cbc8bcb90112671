"""The high-water mark and the writer index: trusted only as DESIGN says, never trusted past damage.

Each test is one finding of the log-trust review, kept as it was reproduced: a writer that
appended after damage because a side file matched, a head record whose bit flip crashed
every opener, a CRLF log moved aside whole, a rollback nobody noticed, a failed side-file
save that failed a durable append.
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import msgspec
import pytest

from events import head_record, jsonl_log, lock, writer_index
from events.chain import ChainState
from events.errors import AsupError, ErrorCode
from events.force_tail import force_tail
from events.jsonl_log import JsonlLog
from events.payloads import LogRepaired, TailForced
from events.record import Record
from events.scan import Scanner
from events.store import Pending
from events.testing import tags, transition
from tests.cli import run_asup

FORK = multiprocessing.get_context("fork")


def _verified(path: Path) -> list[Record]:
    scanner = Scanner(path, ChainState())
    records = list(scanner)
    assert scanner.problem is None, scanner.problem
    return records


def _build(path: Path, batches: int = 6, per_batch: int = 4) -> None:
    with JsonlLog.open(path) as log:
        for b in range(batches):
            log.append_batch([Pending(f"s{(b + k) % 3}", transition(f"b{b}-{k}", k)) for k in range(per_batch)])


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _side_state(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.parent.iterdir()) if p.is_file()}


def test_head_record_is_refreshed_after_every_batch(tmp_path: Path) -> None:
    """After each batch the head record holds the batch's last seq, size, digest and the file's stamps; it stays small."""
    path = tmp_path / "log.jsonl"
    with JsonlLog.open(path) as log:
        for b in range(5):
            positions = log.append_batch([Pending("a", transition(f"a{b}-{k}")) for k in range(b + 1)])
            mark = head_record.load(path)
            assert mark is not None
            assert (mark.last_seq, mark.size, mark.last_h) == (positions[-1].seq, path.stat().st_size, log.last_position()[1])
            assert mark.stamps == head_record.stamps_of(path.stat())
            assert head_record.head_path(path).stat().st_size == 2 * head_record.SLOT


def _scan_offsets(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the offset of every scan the writer makes."""
    offsets: list[int] = []
    real = jsonl_log.scan  # type: ignore[attr-defined]

    def traced(source: object, chain: ChainState, **kwargs: object) -> object:
        offsets.append(int(kwargs.get("offset", 0)))  # type: ignore[call-overload]
        return real(source, chain, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(jsonl_log, "scan", traced)
    return offsets


def _append_and_die(path: Path) -> None:
    log = JsonlLog.open(path)
    log.append_batch([Pending("other", transition(f"o{k}")) for k in range(50)])
    os._exit(0)  # no close: the writer index is not saved, the head record is


def test_open_reads_only_past_the_writer_index_also_after_another_process_appended(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening a trusted log scans from the writer index's offset, never from byte 0, also right after another
    process appended (its head record vouches for its bytes)."""
    path = tmp_path / "log.jsonl"
    _build(path, batches=20)
    indexed = writer_index.load(path)
    assert indexed is not None and indexed.size == path.stat().st_size
    child = FORK.Process(target=_append_and_die, args=(path,))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    offsets = _scan_offsets(monkeypatch)
    with JsonlLog.open(path) as log:
        assert log.last_position()[0] == 1 + 20 * 4 + 50
        log.append("mine", [transition("mine")])
    assert offsets and min(offsets) == indexed.size, offsets
    assert tags(_verified(path))[-1] == "mine"


def _swap(lines: list[bytes]) -> list[bytes]:
    return [*lines[:5], lines[6], lines[5], *lines[7:]]


def _flip(lines: list[bytes]) -> list[bytes]:
    damaged = bytearray(lines[8])
    damaged[50] ^= 0x01
    return [*lines[:8], bytes(damaged), *lines[9:]]


def _splice(lines: list[bytes], other: list[bytes]) -> list[bytes]:
    return [*lines[:10], other[10], *lines[11:]]


def _header(lines: list[bytes]) -> list[bytes]:
    damaged = bytearray(lines[0])
    damaged[len(damaged) // 2] ^= 0x20
    return [bytes(damaged), *lines[1:]]


@pytest.mark.parametrize("damage", ["bit flip", "swapped lines", "spliced line", "damaged header"])
def test_damage_is_refused_although_the_side_files_are_present(tmp_path: Path, damage: str) -> None:
    """With the head record and writer index in place, a writer refuses a damaged log (corrupt_record at the
    damaged line) and `asup log repair` says so: nothing appended, nothing moved aside."""
    path, other = tmp_path / "log.jsonl", tmp_path / "other" / "log.jsonl"
    other.parent.mkdir()
    _build(path)
    _build(other)
    lines = _lines(path)
    changed = {
        "bit flip": lambda: _flip(lines),
        "swapped lines": lambda: _swap(lines),
        "spliced line": lambda: _splice(lines, _lines(other)),
        "damaged header": lambda: _header(lines),
    }[damage]()
    path.write_bytes(b"".join(changed))
    before = _side_state(path)
    with pytest.raises(AsupError) as refused:
        JsonlLog.open(path)
    assert refused.value.code is ErrorCode.CORRUPT_RECORD, refused.value
    assert _side_state(path) == before
    run = run_asup("log", "repair", str(path), cwd=tmp_path)
    assert run.returncode == 1 and "corrupt_record" in run.stderr and "Traceback" not in run.stderr
    assert _side_state(path) == before


@pytest.mark.parametrize("side", ["head record", "writer index"])
def test_every_bit_flip_in_a_side_file_is_survived(tmp_path: Path, side: str) -> None:
    """A flipped bit anywhere in LOG.head.json or LOG.index.json: the writer opens (verifying the log instead of
    trusting the file), appends, and leaves a valid side file; never a traceback."""
    path = tmp_path / "log.jsonl"
    _build(path, batches=3, per_batch=2)
    target = head_record.head_path(path) if side == "head record" else writer_index.index_path(path)
    pristine = {p: p.read_bytes() for p in (path, head_record.head_path(path), writer_index.index_path(path))}
    last = len(pristine[path].splitlines())
    flips = 0
    for position in range(0, len(pristine[target]), max(1, len(pristine[target]) // 97)):
        for name, data in pristine.items():
            name.write_bytes(data)
        damaged = bytearray(pristine[target])
        damaged[position] ^= 1 << (position % 8)
        target.write_bytes(bytes(damaged))
        with JsonlLog.open(path) as log:
            assert log.last_position()[0] == last
        flips += 1
    assert flips > 50 and head_record.load(path) is not None


def test_crlf_log_is_refused_whole_not_moved_aside(tmp_path: Path) -> None:
    """A log whose line ends were converted to CRLF is corruption at line 1: refused, its history never moved aside."""
    path = tmp_path / "log.jsonl"
    _build(path)
    path.write_bytes(path.read_bytes().replace(b"\n", b"\r\n"))
    head_record.head_path(path).unlink()
    before = path.read_bytes()
    with pytest.raises(AsupError) as refused:
        JsonlLog.open(path)
    assert (refused.value.code, refused.value.line) == (ErrorCode.CORRUPT_RECORD, 1)
    assert path.read_bytes() == before
    assert not list(tmp_path.glob("*.torn-*"))


def test_a_lost_record_inside_the_unacknowledged_batch_is_a_torn_tail(tmp_path: Path) -> None:
    """A crash that zeroed an earlier record of the last, never-acknowledged batch while its final record
    survived: the damage lies beyond the high-water mark, so it is quarantined from the first damaged
    byte on (the whole record before it is kept) and the log opens."""
    path = tmp_path / "log.jsonl"
    _build(path)
    mark = head_record.head_path(path).read_bytes()
    acknowledged = path.read_bytes()
    with JsonlLog.open(path) as log:
        log.append_batch([Pending("s1", transition(f"lost-{k}")) for k in range(3)])
    batch = path.read_bytes()[len(acknowledged) :]
    first, second, third = batch.splitlines(keepends=True)
    path.write_bytes(acknowledged + first + b"\0" * len(second) + third)
    head_record.head_path(path).write_bytes(mark)  # the crash came before the batch's head record
    with JsonlLog.open(path) as log:
        repaired = log.repaired
        assert isinstance(repaired, LogRepaired)
        assert (repaired.offset, repaired.length) == (len(acknowledged) + len(first), len(second) + len(third))
    records = _verified(path)
    assert path.read_bytes().startswith(acknowledged)
    assert isinstance(records[-1].data, LogRepaired)


def test_rollback_is_refused_with_both_numbers_and_forcing_it_is_recorded(tmp_path: Path) -> None:
    """The last 10 valid records removed cleanly: writers and verify refuse (log_rollback with both sizes); no seq
    is reused; `--force-tail` accepts the cut with a tail_forced record naming the seqs, and writing goes on."""
    path = tmp_path / "log.jsonl"
    _build(path)
    lines = _lines(path)
    full = len(b"".join(lines))
    path.write_bytes(b"".join(lines[:-10]))
    cut = path.stat().st_size
    with pytest.raises(AsupError) as refused:
        JsonlLog.open(path)
    assert refused.value.code is ErrorCode.LOG_ROLLBACK
    assert f"{cut} bytes" in refused.value.message and f"{full} bytes" in refused.value.message
    verify = run_asup("log", "verify", str(path), cwd=tmp_path)
    assert verify.returncode == 1 and "ROLLED BACK" in verify.stdout and "log_rollback" in verify.stdout
    assert path.stat().st_size == cut
    forced = force_tail(path)
    assert isinstance(forced, TailForced)
    assert (forced.first_seq_cut, forced.last_seq_cut, forced.reason, forced.length) == (len(lines) - 9, len(lines), "rollback", 0)
    with JsonlLog.open(path) as log:
        log.append("after", [transition("after")])
    records = _verified(path)
    assert isinstance(records[-2].data, TailForced) and tags(records)[-1] == "after"
    assert run_asup("log", "verify", str(path), cwd=tmp_path).returncode == 0


def test_force_tail_keeps_the_bytes_of_corruption_it_cuts(tmp_path: Path) -> None:
    """--force-tail on mid-log corruption cuts from the first bad record, keeps every cut byte, and records it."""
    path = tmp_path / "log.jsonl"
    _build(path)
    lines = _lines(path)
    path.write_bytes(b"".join(_flip(lines)))
    run = run_asup("log", "repair", str(path), "--force-tail", "--json", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    kept = tmp_path / f"log.jsonl.forced-{len(b''.join(lines[:8]))}"
    assert kept.read_bytes() == b"".join(_flip(lines)[8:])
    records = _verified(path)
    assert isinstance(records[-1].data, TailForced) and records[-1].data.first_seq_cut == 9


def test_missing_log_with_its_mark_left_is_a_rollback(tmp_path: Path) -> None:
    """A log deleted while its head record remains is not silently recreated."""
    path = tmp_path / "log.jsonl"
    _build(path, batches=1)
    path.unlink()
    with pytest.raises(AsupError) as refused:
        JsonlLog.open(path)
    assert refused.value.code is ErrorCode.LOG_ROLLBACK
    assert not path.exists()


def test_failed_side_file_saves_never_fail_a_durable_append(tmp_path: Path) -> None:
    """Head record and writer index that cannot be written (a directory in the way): appends return, close does not raise."""
    path = tmp_path / "log.jsonl"
    _build(path, batches=1)
    head_record.head_path(path).unlink()
    head_record.head_path(path).mkdir()
    writer_index.index_path(path).unlink()
    writer_index.index_path(path).mkdir()
    with JsonlLog.open(path) as log:
        positions = log.append("a", [transition("durable")])
    assert tags(_verified(path))[-1] == "durable" and positions[0].seq == 6


def test_a_symlink_planted_at_a_side_file_is_never_followed(tmp_path: Path) -> None:
    """Links planted at LOG.head.json and LOG.index.json: the files they point to are never written."""
    path = tmp_path / "log.jsonl"
    _build(path, batches=1)
    outside = tmp_path / "outside"
    outside.mkdir()
    for side in (head_record.head_path(path), writer_index.index_path(path)):
        victim = outside / side.name
        victim.write_bytes(b"precious")
        side.unlink()
        side.symlink_to(victim)
    with JsonlLog.open(path) as log:
        log.append("a", [transition("a")])
    assert [p.read_bytes() for p in sorted(outside.iterdir())] == [b"precious", b"precious"]


def test_another_tools_file_is_never_written(tmp_path: Path) -> None:
    """A JSONL file of another tool given as the log: not_an_asup_log (exit 2), the file and its directory untouched."""
    path = tmp_path / "events.jsonl"
    path.write_bytes(b'{"event": "deploy", "ok": true}\n{"event": "rollback"}\n')
    before = _side_state(path)
    with pytest.raises(AsupError) as refused:
        JsonlLog.open(path)
    assert refused.value.code is ErrorCode.NOT_AN_ASUP_LOG and refused.value.exit_code == 2
    assert _side_state(path) == before
    source = tmp_path / "src.bin"
    source.write_bytes(b"x" * 1000)
    before = _side_state(path)
    run = run_asup(
        "sync",
        str(source),
        str(tmp_path / "out.bin"),
        "--artifact-class",
        "conformance_fixture_bundle",
        "--mode",
        "strict",
        "--log",
        str(path),
        cwd=tmp_path,
    )
    assert run.returncode == 2 and "not_an_asup_log" in run.stderr and "Traceback" not in run.stderr
    assert path.read_bytes() == before[path.name]


def test_unrecorded_quarantine_gets_its_record(tmp_path: Path) -> None:
    """A crash between cutting a torn tail and appending log_repaired: the next opener appends the record."""
    path = tmp_path / "log.jsonl"
    _build(path, batches=2)
    size = path.stat().st_size
    (tmp_path / f"log.jsonl.torn-{size}").write_bytes(b'{"type":"transi')
    with JsonlLog.open(path) as log:
        assert isinstance(log.repaired, LogRepaired) and log.repaired.reason == "unrecorded_cut"
    with JsonlLog.open(path) as log:
        assert log.repaired is None
    assert sum(isinstance(r.data, LogRepaired) for r in _verified(path)) == 1


MOUNTINFO = "36 25 0:{minor} / /mnt/shared rw,relatime shared:1 - {kind} srv:/export rw,vers=4.2\n"


@pytest.mark.parametrize(("kind", "refused"), [("nfs4", True), ("cifs", True), ("ext4", False), ("tmpfs", False)])
def test_a_filesystem_with_untrusted_locks_is_refused(tmp_path: Path, kind: str, refused: bool) -> None:
    """A log on NFS or SMB (whose locks asup cannot trust across machines) is refused with one usage line."""
    path = tmp_path / "log.jsonl"
    path.write_bytes(b"")
    fd = os.open(path, os.O_RDONLY)
    try:
        info = MOUNTINFO.format(minor=os.minor(os.fstat(fd).st_dev), kind=kind).replace("0:", f"{os.major(os.fstat(fd).st_dev)}:")
        if refused:
            with pytest.raises(AsupError) as raised:
                lock.refuse_untrusted(fd, path, mountinfo=info)
            assert raised.value.code is ErrorCode.USAGE and kind in raised.value.message
        else:
            lock.refuse_untrusted(fd, path, mountinfo=info)
    finally:
        os.close(fd)


def test_head_record_digest_binds_every_field(tmp_path: Path) -> None:
    """Any field of the head record changed without its digest makes it no mark at all (a cache, not a promise)."""
    path = tmp_path / "log.jsonl"
    _build(path, batches=1)
    record = head_record.load(path)
    assert record is not None
    for field in msgspec.structs.fields(record):
        if field.name in ("digest", "format", "log_id", "last_h"):
            continue
        edited = msgspec.structs.replace(record, **{field.name: getattr(record, field.name) + 1})
        head_record.head_path(path).write_bytes(msgspec.json.encode(edited))
        assert head_record.load(path) is None, field.name


def test_a_removed_or_replaced_head_record_is_recreated_not_written_through(tmp_path: Path) -> None:
    """The writer rewrites its head record in place, but only while the name still points to that file:
    removed, it is created again; replaced by a hardlink to another file, that file is never written."""
    path = tmp_path / "log.jsonl"
    with JsonlLog.open(path) as log:
        log.append("a", [transition("a0")])
        head_record.head_path(path).unlink()
        log.append("a", [transition("a1")])
        mark = head_record.load(path)
        assert mark is not None and mark.last_seq == 3
        victim = tmp_path / "victim"
        victim.write_bytes(b"precious")
        head_record.head_path(path).unlink()
        os.link(victim, head_record.head_path(path))
        log.append("a", [transition("a2")])
        assert victim.read_bytes() == b"precious"
        mark = head_record.load(path)
        assert mark is not None and mark.last_seq == 4


def test_an_untrusted_open_verified_in_parallel_has_the_sequential_heads_and_ids(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no head record a big log is verified on several processes: the writer's heads, last
    position and recent-id window are exactly what a sequential verify gives, and retries work."""
    from events import segments

    path = tmp_path / "log.jsonl"
    _build(path, batches=40, per_batch=50)
    monkeypatch.setattr(segments, "PARALLEL_FROM", 0)
    monkeypatch.setattr(segments, "default_jobs", lambda: 3)
    verdicts: list[int] = []
    real_verify = segments.verify_log

    def spied(*args: object, **kwargs: object) -> segments.Verified:
        verdict = real_verify(*args, **kwargs)  # type: ignore[arg-type]
        verdicts.append(verdict.segments)
        return verdict

    monkeypatch.setattr(segments, "verify_log", spied)
    states = []
    for parallel in (True, False):
        head_record.head_path(path).unlink(missing_ok=True)
        writer_index.index_path(path).unlink(missing_ok=True)
        monkeypatch.setattr(segments, "PARALLEL_FROM", 0 if parallel else 1 << 40)
        log = JsonlLog.open(path, id_window=300)
        chain = log._chain
        states.append((chain.last_seq, chain.last_h, {k: (v.sv, v.h) for k, v in chain.streams.items()}, chain.recent_entries()))
        log._abandon()
    assert verdicts == [3], "the first open did not verify in segments"
    assert states[0] == states[1]
    assert len(states[0][3]) == 300
    with JsonlLog.open(path) as log:
        stream, event_id = states[0][3][-1][0], states[0][3][-1][1]
        assert log.append_batch([Pending(stream, transition("again"), id=event_id)])[0].seq == states[0][0]
