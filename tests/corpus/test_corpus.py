"""Every corpus input through every reader of untrusted JSON: only `AsupError` comes out.

In-process for the whole corpus (the JSON parsing test suite's 318 files and the generated
bombs of `inputs.GENERATED`), one test per reader: a digest-valid log line holding the
input (as `data`, and as an integer field), an intent file, a sync-batch line, a fault
plan, an adapter profile, each contract file, a checkpoint, a sidecar, the fault suite, the
e2e rows. A reader may accept a y_ or i_ input; it must refuse every other one, always
with its own error code, and nothing else may escape. A sample runs through real `asup`
processes: exit code, one line, no traceback, nothing recorded.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine import checkpoint as ckpt
from engine import durability
from engine.contracts import (
    MATRIX_FILE,
    PROFILES_FILE,
    STATE_MACHINE_FILE,
    contract_dir,
    load_matrix,
    load_profile,
    load_profiles,
    load_state_machine,
)
from engine.faults import load_plan
from engine.intent import decode_intent
from events import strict_json
from events.errors import AsupError, ErrorCode
from events.scan import read_records
from runbook import e2e
from runbook.batch_commands import _jobs
from runbook.gates.fault import load_suite
from tests.cli import run_asup
from tests.corpus.inputs import INT64_MAX, forge, generated, inputs, last_line, must_refuse, suite
from tests.reliability.crashloop import report

LOG_CODES = {ErrorCode.CORRUPT_RECORD, ErrorCode.SCHEMA_UNSUPPORTED, ErrorCode.TORN_TAIL}


def _log_reader(where: str) -> Callable[[Path, bytes], object]:
    def read(tmp: Path, doc: bytes) -> object:
        path = tmp / "log.jsonl"
        path.write_bytes(forge(doc, where))
        return list(read_records(path, tolerate_torn_tail=False))

    return read


def _file_reader(name: str, load: Callable[[Path], object]) -> Callable[[Path, bytes], object]:
    def read(tmp: Path, doc: bytes) -> object:
        path = tmp / name
        path.write_bytes(doc)
        return load(path)

    return read


def _validate_rows(path: Path) -> object:
    rows, problems = e2e.validate(path)
    if problems:  # validate reports rather than raises: a problem is its refusal
        raise AsupError(ErrorCode.USAGE, "; ".join(problems))
    return rows


# reader -> (how to feed it an input, the one error code it may raise)
READERS: dict[str, tuple[Callable[[Path, bytes], object], set[ErrorCode]]] = {
    "log line data": (_log_reader("data"), LOG_CODES),
    "log line integer": (_log_reader("cursor"), LOG_CODES),
    "intent": (lambda _tmp, doc: decode_intent(doc, "intent.json"), {ErrorCode.USAGE}),
    "sync-batch": (_file_reader("batch.jsonl", lambda p: _jobs(p, None, None)), {ErrorCode.USAGE}),
    "fault plan": (_file_reader("plan.json", load_plan), {ErrorCode.USAGE}),
    "adapter profile": (_file_reader("profile.json", lambda p: load_profile(str(p))), {ErrorCode.BAD_INPUT}),
    "capability matrix": (_file_reader(MATRIX_FILE, load_matrix), {ErrorCode.BAD_INPUT}),
    "state machine": (_file_reader(STATE_MACHINE_FILE, load_state_machine), {ErrorCode.BAD_INPUT}),
    "adapter profiles": (_file_reader(PROFILES_FILE, load_profiles), {ErrorCode.BAD_INPUT}),
    "checkpoint": (lambda _tmp, doc: ckpt.decode(doc, "checkpoint.json"), {ErrorCode.BAD_INPUT}),
    "sidecar": (_file_reader("pack.ec.json", durability.load_manifest), {ErrorCode.BAD_INPUT}),
    "fault suite": (_file_reader("suite.json", load_suite), {ErrorCode.BAD_INPUT}),
    "e2e rows": (_file_reader("rows.jsonl", _validate_rows), {ErrorCode.USAGE}),
    "any document": (
        lambda _tmp, doc: strict_json.decode(doc, Any, what="document", code=ErrorCode.BAD_INPUT, file="doc.json"),
        {ErrorCode.BAD_INPUT},
    ),
}


def _judge(reader: str, name: str, doc: bytes, tmp: Path) -> str | None:
    """What is wrong with how `reader` took the input `name` (None: nothing)."""
    feed, codes = READERS[reader]
    try:
        feed(tmp, doc)
    except AsupError as error:
        if error.code not in codes:
            return f"{name}: {error.code} is not one of {sorted(codes)}: {error.one_line()}"
        if "\n" in error.one_line():
            return f"{name}: the message is not one line: {error.one_line()!r}"
        return None
    except Exception as exc:  # the defect this corpus exists to catch
        return f"{name}: {type(exc).__name__} escaped: {exc}"[:300]
    return f"{name}: accepted, but it must be refused" if must_refuse(name) else None


@pytest.mark.parametrize("reader", list(READERS))
def test_every_corpus_input_gives_only_the_readers_own_error(reader: str, tmp_path: Path) -> None:
    """Each corpus input is accepted (a y_ or i_ file may be) or refused with the reader's own
    error code in one line; n_ files and generated bombs are always refused; no other exception."""
    every = list(inputs())
    problems = [p for name, doc in every if (p := _judge(reader, name, doc, tmp_path)) is not None]
    assert not problems, f"{len(problems)} inputs mishandled by the {reader} reader:\n" + "\n".join(problems)
    report(f"hostile JSON through the {reader} reader", Counter(inputs=len(every)))


def test_the_corpus_holds_the_whole_suite() -> None:
    """All 318 files of the JSON parsing test suite are here, in its three kinds."""
    files = suite()
    assert len(files) == 318
    assert {f.name[:2] for f in files} == {"y_", "n_", "i_"}


def test_a_strict_document_reader_parses_the_suite_as_the_standard_says() -> None:
    """Every y_ file parses except the two with duplicate keys (refused on purpose: which value
    counts would depend on the parser); no n_ file parses."""
    refused_y, accepted_n = [], []
    for path in suite():
        try:
            strict_json.decode(path.read_bytes(), Any, what="document", code=ErrorCode.BAD_INPUT, file=path.name)
        except AsupError as error:
            if path.name.startswith("y_"):
                refused_y.append((path.name, error.message))
        else:
            if path.name.startswith("n_"):
                accepted_n.append(path.name)
    assert accepted_n == []
    assert [name for name, _ in refused_y] == ["y_object_duplicated_key.json", "y_object_duplicated_key_and_value.json"]
    assert all("duplicate key 'a'" in message for _, message in refused_y)


def test_a_refused_log_line_is_reported_at_its_line(tmp_path: Path) -> None:
    """A single-line input sealed into the last record is refused at that line, with the field
    when the typed decoder names one."""
    path, with_field = tmp_path / "log.jsonl", 0
    for name, doc in inputs():
        if b"\n" in doc or b"\r" in doc or len(doc) > 500_000:
            continue  # split into two lines, or over MAX_LINE: framing faults, judged elsewhere
        path.write_bytes(forge(doc))
        try:
            list(read_records(path, tolerate_torn_tail=False))
        except AsupError as error:
            assert error.line == last_line(), f"{name}: {error.one_line()}"
            if " - at `" in error.message:
                assert error.field is not None and error.field.startswith("$.data"), f"{name}: {error.one_line()}"
                with_field += 1
        else:
            assert not must_refuse(name), name
    assert with_field > 50


# --- real processes ----------------------------------------------------------------------

SYNC = ["sync", "a.bin", "b.bin", "--artifact-class", "migration_manifest", "--mode", "strict", "--log", "t.jsonl"]
SAMPLE = [
    "n_structure_100000_opening_arrays.json",
    "n_string_invalid_utf8_after_escape.json",
    "i_string_UTF-16LE_with_BOM.json",
    "n_number_NaN.json",
    "i_structure_500_nested_arrays.json",
]


def _sample(name: str) -> bytes:
    path = suite()[0].parent / name
    return path.read_bytes() if path.exists() else generated(name)


def _one_line_exit_2(result: Any, tmp: Path) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("asup: ") and result.stderr.count("\n") == 1, result.stderr
    assert not (tmp / "t.jsonl").exists(), "a refused input recorded nothing"


@pytest.mark.parametrize("name", SAMPLE)
@pytest.mark.parametrize("where", ["intent", "sync-batch", "adapter profile"])
def test_a_sample_through_real_processes_is_one_usage_line(tmp_path: Path, name: str, where: str) -> None:
    """An intent, a batch or a profile file from the corpus: exit 2, one line naming the file, nothing recorded."""
    (tmp_path / "a.bin").write_bytes(b"payload\n")
    file, argv = {
        "intent": ("intent.json", [*SYNC, "--intent", "intent.json"]),
        "sync-batch": ("batch.jsonl", ["sync-batch", "batch.jsonl", "--log", "t.jsonl"]),
        "adapter profile": ("p.json", [*SYNC, "--adapter", "p.json"]),
    }[where]
    (tmp_path / file).write_bytes(_sample(name))
    result = run_asup(*argv, cwd=tmp_path)
    _one_line_exit_2(result, tmp_path)
    assert file in result.stderr


@pytest.mark.parametrize("name", [*SAMPLE[:3], "int_1e6_digits"])
def test_a_sample_sealed_into_a_log_is_corrupt_at_its_line(tmp_path: Path, name: str) -> None:
    """`asup log verify` on a log whose last record holds a corpus input: exit 1, corrupt_record at that line."""
    (tmp_path / "log.jsonl").write_bytes(forge(_sample(name), "cursor" if name.startswith("int") else "data"))
    result = run_asup("log", "verify", "log.jsonl", cwd=tmp_path)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert f"log.jsonl:{last_line()}: corrupt_record" in result.stdout


def test_a_record_integer_beyond_64_bits_is_refused_not_printed(tmp_path: Path) -> None:
    """`asup tail --json` on a sealed record whose cursor is 2**63 used to be a TypeError from
    the JSON encoder; the record is now refused where it is read: exit 1, one line."""
    (tmp_path / "log.jsonl").write_bytes(forge(str(INT64_MAX + 1).encode(), "cursor"))
    result = run_asup("tail", "log.jsonl", "--json", cwd=tmp_path)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 1
    assert f"log.jsonl:{last_line()}: corrupt_record" in result.stderr
    assert "[field $.data.committed_cursor]" in result.stderr


def test_a_hostile_contract_directory_is_one_line(tmp_path: Path) -> None:
    """`asup contract validate DIR` with a matrix nested 100,000 deep: exit 2, the limit named."""
    shutil.copytree(contract_dir(), tmp_path / "c")
    (tmp_path / "c" / MATRIX_FILE).write_bytes(generated("depth_100000_arrays"))
    result = run_asup("contract", "validate", "c", cwd=tmp_path)
    _one_line_exit_2(result, tmp_path)
    assert "64-level limit" in result.stderr


def test_a_hostile_checkpoint_records_nothing(tmp_path: Path) -> None:
    """`asup sync --resume` with a checkpoint that is not UTF-8: exit 2, one line, no log written."""
    (tmp_path / "a.bin").write_bytes(b"payload\n")
    (tmp_path / "ck.json").write_bytes(generated("invalid_utf8"))
    result = run_asup(*SYNC, "--resume", "ck.json", cwd=tmp_path)
    _one_line_exit_2(result, tmp_path)
    assert "not UTF-8" in result.stderr
