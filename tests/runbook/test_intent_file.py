"""One intent loader: `asup sync --intent FILE` and each line of `asup sync-batch` are read
by `engine.intent` and report a bad intent the same way (usage, exit 2, file, line, field)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.intent import IntentFile, decode_intent, load_intent
from events.errors import AsupError, ErrorCode, ExitCode
from events.vocabulary import Mode
from tests.projections.helpers import invoke


def test_load_intent_reads_the_fields_it_names(tmp_path: Path) -> None:
    """A valid intent file decodes to the fields it holds; the rest stay unset for flags or defaults."""
    path = tmp_path / "intent.json"
    path.write_text('{"source": "a.bin", "seed": 5, "mode": "hardened"}')
    assert load_intent(path) == IntentFile(source="a.bin", seed=5, mode=Mode.HARDENED)


@pytest.mark.parametrize(("text", "field"), [(b'{"sauce": 1}', "$.sauce"), (b'{"seed": "x"}', "$.seed"), (b"{not json", None)])
def test_invalid_intent_is_usage_naming_file_line_and_field(text: bytes, field: str | None) -> None:
    """An unknown field, a wrong type and broken JSON are all usage errors naming the file, line and field."""
    with pytest.raises(AsupError) as info:
        decode_intent(text, "batch.jsonl", 3)
    error = info.value
    assert (error.code, error.file, error.line, error.field) == (ErrorCode.USAGE, "batch.jsonl", 3, field)


def test_missing_intent_file_is_usage(tmp_path: Path) -> None:
    """An intent file that does not exist is a usage error naming it."""
    with pytest.raises(AsupError) as info:
        load_intent(tmp_path / "absent.json")
    assert info.value.code is ErrorCode.USAGE and info.value.file == str(tmp_path / "absent.json")


def test_sync_and_sync_batch_report_a_bad_intent_alike(tmp_path: Path) -> None:
    """The same unknown field in `sync --intent` and in a batch line gives the same usage line (the batch adds its line)."""
    intent = tmp_path / "intent.json"
    intent.write_text('{"sauce": "x"}')
    batch = tmp_path / "batch.jsonl"
    batch.write_text('{"sauce": "x"}\n')
    log = str(tmp_path / "log.jsonl")
    single = invoke("sync", "--intent", str(intent), "--log", log)
    many = invoke("sync-batch", str(batch), "--log", log)
    assert single.exit_code == many.exit_code == ExitCode.USAGE
    assert single.stderr.strip() == f"asup: {intent}: usage: invalid intent: Object contains unknown field `sauce` [field $.sauce]"
    assert many.stderr.strip() == f"asup: {batch}:1: usage: invalid intent: Object contains unknown field `sauce` [field $.sauce]"
