"""The contract every target store passes (the directory store now, a JetStream object
store later): the protocol of `engine.target_store`, as tests.

A store passes it with a test module holding one subclass with a one-line factory:

    class TestMyStore(TargetStoreContract):
        def make_store(self, tmp_path: Path) -> TargetStore:
            return MyStore(tmp_path / "target")

`make_store` returns a client of the target kept at `tmp_path`: called twice with the same
`tmp_path` it returns two clients of one target (two processes, or two connections), which
is how the contract plays another writer. `TargetStoreContract` has no `Test` prefix, so
pytest collects it only through its subclasses.
"""

from __future__ import annotations

import abc
import os
import socket
from pathlib import Path

try:
    import pytest
except ModuleNotFoundError as exc:  # an installed asup need not have pytest; only this suite needs it
    raise ModuleNotFoundError("engine.testing.target_store_contract is a pytest suite: install pytest to run it") from exc

from blake3 import blake3

from engine.layout import Layout, bundle_digest
from engine.liveness import holder_for
from engine.target_store import TargetHandle, TargetStore
from events.errors import AsupError, ErrorCode
from events.observations import BundleFile

CHUNK = 4096
NAME = "artifact.out"


def digest_of(data: bytes) -> str:
    return "blake3:" + blake3(data).hexdigest()


def file_layout(data: bytes) -> Layout:
    return Layout([BundleFile("", len(data), digest_of(data))])


def bundle_layout(members: dict[str, bytes]) -> Layout:
    return Layout([BundleFile(path, len(data), digest_of(data)) for path, data in sorted(members.items(), key=lambda i: i[0].split("/"))])


def stream(layout: Layout, members: dict[str, bytes]) -> bytes:
    return b"".join(members[f.path] for f in layout.files)


DATA = bytes(range(256)) * (3 * CHUNK // 256) + b"tail"
MEMBERS = {
    "README.txt": b"a bundle\n" * 30,
    "fixtures/graph.json": bytes(range(200)) * 30,
    "fixtures/deep/edges.bin": b"\x01\x02" * 700,
    "fixtures/empty.txt": b"",
    "z.bin": b"z" * (CHUNK + 3),
}


class TargetStoreContract(abc.ABC):
    """Behaviour shared by every `TargetStore`."""

    @abc.abstractmethod
    def make_store(self, tmp_path: Path) -> TargetStore:
        """A client of the (initially empty) target kept at `tmp_path`."""

    # --- helpers ---------------------------------------------------------------------------

    def fill(self, handle: TargetHandle, data: bytes, start: int = 0) -> None:
        for offset in range(start, len(data), CHUNK):
            handle.write(offset, data[offset : offset + CHUNK])

    def transfer(self, store: TargetStore, name: str, layout: Layout, kind: str, data: bytes) -> TargetHandle:
        handle = store.open(name, layout, kind)
        handle.prepare(0)
        self.fill(handle, data)
        return handle

    # --- writing and holding -----------------------------------------------------------------

    def test_a_new_artifact_holds_nothing(self, tmp_path: Path) -> None:
        """Before any write: no bytes held, nothing under the final name."""
        handle = self.make_store(tmp_path).open(NAME, file_layout(DATA), "file")
        assert handle.held().size == 0 and handle.held().final is None
        handle.close()

    def test_writes_at_offsets_report_contiguous_bytes_held(self, tmp_path: Path) -> None:
        """Each write reports the contiguous bytes held from 0, the same count held() gives."""
        handle = self.make_store(tmp_path).open(NAME, file_layout(DATA), "file")
        handle.prepare(0)
        for offset in range(0, len(DATA), CHUNK):
            committed, _ = handle.write(offset, DATA[offset : offset + CHUNK])
            assert committed == min(offset + CHUNK, len(DATA)) == handle.held().size
        assert handle.digest() == (digest_of(DATA), len(DATA))
        handle.close()

    def test_a_bundle_holds_only_the_members_complete_in_order(self, tmp_path: Path) -> None:
        """A later member written before an earlier one is complete is not counted as held."""
        layout = bundle_layout(MEMBERS)
        data = stream(layout, MEMBERS)
        handle = self.make_store(tmp_path).open("bundle.out", layout, "bundle")
        handle.prepare(0)
        last = layout.starts[-1]
        committed, _ = handle.write(last, data[last:])
        assert committed == 0 == handle.held().size
        self.fill(handle, data[:last])
        assert handle.held().size == len(data)
        handle.close()

    def test_prepare_cuts_bytes_past_the_cursor(self, tmp_path: Path) -> None:
        """prepare(cursor) keeps exactly the first `cursor` bytes; writing the rest gives the whole artifact."""
        handle = self.transfer(self.make_store(tmp_path), NAME, file_layout(DATA), "file", DATA[: 3 * CHUNK])
        handle.prepare(CHUNK)
        assert handle.held().size == CHUNK
        self.fill(handle, DATA, CHUNK)
        assert handle.digest() == (digest_of(DATA), len(DATA))
        handle.close()

    def test_a_later_client_sees_what_an_earlier_one_held(self, tmp_path: Path) -> None:
        """A resume in a new process: a second client holds the first one's bytes and can finish them."""
        first = self.transfer(self.make_store(tmp_path), NAME, file_layout(DATA), "file", DATA[: 2 * CHUNK])
        first.close()
        second = self.make_store(tmp_path).open(NAME, file_layout(DATA), "file")
        assert second.held().size == 2 * CHUNK
        second.prepare(2 * CHUNK)
        self.fill(second, DATA, 2 * CHUNK)
        second.publish()
        assert second.held().final == (digest_of(DATA), len(DATA))
        second.close()

    # --- publishing ----------------------------------------------------------------------------

    def test_publish_makes_the_final_artifact_appear_with_its_digest(self, tmp_path: Path) -> None:
        """Nothing is final before publish; after it the final digest is the artifact's."""
        handle = self.transfer(self.make_store(tmp_path), NAME, file_layout(DATA), "file", DATA)
        assert handle.held().final is None
        handle.publish()
        assert handle.held().final == (digest_of(DATA), len(DATA))
        handle.close()

    def test_publish_never_replaces_a_final_artifact(self, tmp_path: Path) -> None:
        """A second artifact published under a taken name is a conflict; the first stays."""
        store = self.make_store(tmp_path)
        first = self.transfer(store, NAME, file_layout(DATA), "file", DATA)
        first.publish()
        first.close()
        other = DATA[::-1]
        second = self.transfer(self.make_store(tmp_path), NAME, file_layout(other), "file", other)
        with pytest.raises(AsupError) as conflict:
            second.publish()
        assert conflict.value.code is ErrorCode.CONFLICT_DETECTED
        assert second.held().final == (digest_of(DATA), len(DATA))
        second.close()

    @pytest.mark.parametrize("data", [b"", b"x"], ids=["empty", "one byte"])
    def test_a_tiny_file_publishes(self, tmp_path: Path, data: bytes) -> None:
        """An empty (or one-byte) file is an artifact like any other."""
        handle = self.make_store(tmp_path).open(NAME, file_layout(data), "file")
        handle.prepare(0)
        self.fill(handle, data)
        assert handle.digest() == (digest_of(data), len(data))
        handle.publish()
        assert handle.held().final == (digest_of(data), len(data))
        handle.close()

    def test_a_bundle_publishes_with_nested_directories_and_empty_members(self, tmp_path: Path) -> None:
        """A bundle's final digest is its manifest's: every member, nested and empty ones included."""
        layout = bundle_layout(MEMBERS)
        data = stream(layout, MEMBERS)
        handle = self.transfer(self.make_store(tmp_path), "bundle.out", layout, "bundle", data)
        expected = (bundle_digest(layout.files), len(data))
        assert handle.digest() == expected
        handle.publish()
        assert handle.held().final == expected
        handle.close()

    def test_leftovers_of_an_earlier_transfer_are_never_published(self, tmp_path: Path) -> None:
        """What an earlier transfer of another layout left in a bundle's temp is not in the published bundle."""
        earlier = {**MEMBERS, "stale/old.bin": b"old" * 100, "zz.bin": b"left"}
        old_layout = bundle_layout(earlier)
        self.transfer(self.make_store(tmp_path), "bundle.out", old_layout, "bundle", stream(old_layout, earlier)).close()
        layout = bundle_layout(MEMBERS)
        handle = self.transfer(self.make_store(tmp_path), "bundle.out", layout, "bundle", stream(layout, MEMBERS))
        handle.publish()
        assert handle.held().final == (bundle_digest(layout.files), len(stream(layout, MEMBERS)))
        handle.close()

    # --- lease and epoch -------------------------------------------------------------------------

    def test_a_lease_is_exclusive_while_held_and_reusable_after(self, tmp_path: Path) -> None:
        """A second holder gets None while the first holds the lease, and the lease once it is released."""
        first = self.make_store(tmp_path).open(NAME, file_layout(DATA), "file")
        second = self.make_store(tmp_path).open(NAME, file_layout(DATA), "file")
        lease = first.lease("t-1")
        assert lease is not None
        assert second.lease("t-2") is None
        lease.release()
        again = second.lease("t-2")
        assert again is not None
        again.release()
        first.close()
        second.close()

    def test_a_refused_lease_names_its_holder(self, tmp_path: Path) -> None:
        """While one handle holds the lease, another is told who: the pid, host and start the holder wrote."""
        first = self.make_store(tmp_path).open(NAME, file_layout(DATA), "file")
        second = self.make_store(tmp_path).open(NAME, file_layout(DATA), "file")
        lease = first.lease(holder_for("t-1", 1_780_000_000_000_000_000))
        assert lease is not None and second.lease(holder_for("t-2", 0)) is None
        said = second.lease_holder()
        assert f"pid {os.getpid()} on {socket.gethostname()} since 2026-05-28T20:26:40.000000Z (transfer t-1)" == said
        lease.release()
        first.close()
        second.close()

    def test_the_epoch_is_stable_under_own_writes(self, tmp_path: Path) -> None:
        """epoch() equals what the last own write returned, read after read; never foreign."""
        handle = self.make_store(tmp_path).open(NAME, file_layout(DATA), "file")
        handle.prepare(0)
        start = handle.epoch()
        assert start == handle.epoch() and not start.endswith("+foreign")
        for offset in range(0, len(DATA), CHUNK):
            _, after = handle.write(offset, DATA[offset : offset + CHUNK])
            assert handle.epoch() == after == handle.epoch() and not after.endswith("+foreign")
        handle.close()

    def test_the_epoch_turns_foreign_after_another_writer(self, tmp_path: Path) -> None:
        """Another client's write changes this client's epoch to `...+foreign`."""
        mine = self.transfer(self.make_store(tmp_path), NAME, file_layout(DATA), "file", DATA[:CHUNK])
        _, after = mine.write(CHUNK, DATA[CHUNK : 2 * CHUNK])
        theirs = self.make_store(tmp_path).open(NAME, file_layout(DATA), "file")
        theirs.write(2 * CHUNK, DATA[2 * CHUNK : 3 * CHUNK])
        assert mine.epoch() == after + "+foreign"
        theirs.close()
        mine.close()

    # --- checkpoints -------------------------------------------------------------------------------

    def test_a_checkpoint_reads_back_what_was_saved_last(self, tmp_path: Path) -> None:
        """checkpoint(data) returns a ref load_checkpoint reads; a second save replaces the first."""
        store = self.make_store(tmp_path)
        handle = store.open(NAME, file_layout(DATA), "file")
        ref = handle.checkpoint(b'{"committed_cursor":1}')
        assert store.load_checkpoint(ref) == b'{"committed_cursor":1}'
        assert handle.checkpoint(b'{"committed_cursor":2}') == ref
        assert self.make_store(tmp_path).load_checkpoint(ref) == b'{"committed_cursor":2}'
        handle.close()
