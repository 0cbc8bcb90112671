"""The directory store passes the target store contract."""

from __future__ import annotations

from pathlib import Path

from engine.stores import DirectoryStore, TargetStore
from engine.testing.target_store_contract import TargetStoreContract


class TestDirectoryStore(TargetStoreContract):
    def make_store(self, tmp_path: Path) -> TargetStore:
        return DirectoryStore(tmp_path / "target")
