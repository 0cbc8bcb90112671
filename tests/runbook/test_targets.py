"""DST resolved for the writing commands (`runbook.targets`), without a server: a path is
the directory store's, a URL an object store's (shared per bucket URL in a batch), and a
malformed URL is one usage error naming where it was given. Nothing connects here."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.object_store import ObjectStore
from engine.stores import DirectoryStore
from events.errors import AsupError, ErrorCode
from runbook.targets import shared_stores, target_of


def test_a_path_is_an_artifact_of_the_directory_store_there(tmp_path: Path) -> None:
    target = target_of(f"{tmp_path}//out/./a.bin")
    assert isinstance(target.store, DirectoryStore) and target.store.root == tmp_path / "out"
    assert (target.given, target.name, target.recorded) == (str(tmp_path / "out" / "a.bin"), "a.bin", tmp_path / "out" / "a.bin")
    assert target.checkpoint_ref() == str(tmp_path / "out" / ".a.bin.asup-ckpt.json")
    assert target.saved_checkpoint() is None


def test_a_url_is_an_artifact_of_a_bucket_and_lines_naming_one_bucket_share_its_store() -> None:
    with shared_stores() as stores:
        first = target_of("nats://127.0.0.1:4222/B?lease_ttl=2#dir/a.bin", shared=stores)
        second = target_of("nats://127.0.0.1:4222/B?lease_ttl=2#b.bin", shared=stores)
        other = target_of("nats://127.0.0.1:4222/C#b.bin", shared=stores)
        assert isinstance(first.store, ObjectStore) and first.store is second.store and other.store is not first.store
        assert sorted(stores) == ["nats://127.0.0.1:4222/B?lease_ttl=2", "nats://127.0.0.1:4222/C"]
    assert (first.name, first.recorded) == ("dir/a.bin", "nats://127.0.0.1:4222/B?lease_ttl=2#dir/a.bin")
    assert first.checkpoint_ref().startswith("$O.B.C.asup-") and first.checkpoint_ref().endswith("-ckpt")
    assert target_of("nats://127.0.0.1:4222/B#a").store is not target_of("nats://127.0.0.1:4222/B#a").store  # unshared


def test_a_malformed_url_names_the_argument_or_the_file_line_and_field() -> None:
    with pytest.raises(AsupError) as given:
        target_of("nats://127.0.0.1:4222/B")
    assert given.value.code is ErrorCode.USAGE
    assert given.value.one_line() == "nats://127.0.0.1:4222/B: usage: DST: not an object-store target: write nats://HOST:PORT/BUCKET#NAME"
    with pytest.raises(AsupError) as read:
        target_of("nats://127.0.0.1:4222/B", what="target", file="b.jsonl", line=3, field="$.target")
    expected = "b.jsonl:3: usage: target 'nats://127.0.0.1:4222/B': not an object-store target: write nats://HOST:PORT/BUCKET#NAME"
    assert read.value.one_line() == expected + " [field $.target]"
