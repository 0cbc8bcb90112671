"""`asup log verify|repair|stats|cat|demo`, `--version` and every command's help, driven
through typer's CliRunner in-process and in real `asup` processes (`python -m runbook`).

Each test runs in its own directory (paths are relative, so messages stay short). asup's
own errors are exactly one line on stderr: `asup: FILE[:LINE]: code: message`.
"""

from __future__ import annotations

import fcntl
import os
import re
from collections import Counter
from importlib import metadata
from pathlib import Path
from typing import Any

import orjson
import pytest
import typer.main
from blake3 import blake3
from typer.core import TyperGroup
from typer.testing import CliRunner, Result

from events.catalog import REGISTRY
from events.clock import StepClock
from events.jsonl_log import JsonlLog
from events.observations import LeaseChecked, SourceHashed
from events.payloads import Event, Transition
from events.record import LOG_SCHEMA, SCHEMA_VERSION
from events.vocabulary import Mode, ReasonCode, State, Trigger
from runbook.cli import app
from tests.cli import run_asup

LOG = "log.jsonl"


def transition(name: str, trigger: Trigger, to_state: State, reason: ReasonCode | None = None) -> Transition:
    return Transition(
        transfer_id=name,
        from_state=State.SYNCING,
        trigger=trigger,
        to_state=to_state,
        attempt=1,
        committed_cursor=0,
        reason_code=reason,
        mode=Mode.HARDENED,
    )


CONTENT: list[tuple[str, Event]] = [
    ("t-1", transition("t-1", Trigger.START, State.CAPABILITY_CHECK)),
    ("t-2", SourceHashed(digest="blake3:" + "1" * 64, size=10)),
    ("t-1", transition("t-1", Trigger.CHUNK_COMMITTED, State.SYNCING)),
    ("t-2", transition("t-2", Trigger.CAPABILITY_REJECTED, State.FAILED_CLOSED, ReasonCode.CAPABILITY_MISMATCH)),
    ("t-1", transition("t-1", Trigger.RETRY_BUDGET_EXCEEDED, State.FAILED_CLOSED, ReasonCode.RETRY_EXHAUSTED)),
    ("t-3", LeaseChecked(acquired=True, holder="me")),
    ("t-3", transition("t-3", Trigger.RETRY_BUDGET_EXCEEDED, State.FAILED_CLOSED, ReasonCode.RETRY_EXHAUSTED)),
    ("t-1", transition("t-1", Trigger.CHECKSUM_VALIDATED, State.COMPLETED)),
]
RECORDS = len(CONTENT) + 1  # the header first


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("NO_COLOR", raising=False)
    return tmp_path


@pytest.fixture
def log(workdir: Path) -> Path:
    """A verified log of CONTENT: three transfer streams, transitions with and without reason codes, observations."""
    path = workdir / LOG
    with JsonlLog.open(path, log_id="cli", clock=StepClock()) as store:
        for stream, event in CONTENT:
            store.append(stream, [event])
    return path


def asup(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def flat(text: str) -> str:
    """Output with rich's line wrapping undone (whitespace runs collapsed)."""
    return " ".join(text.split())


def one_error_line(result: Result) -> str:
    """The single stderr line of an asup error (asserted to be exactly one line)."""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and result.stderr.endswith("\n"), f"stderr is not one line: {result.stderr!r}"
    assert lines[0].startswith("asup: ")
    return lines[0]


def json_out(result: Result) -> dict[str, Any]:
    assert result.stdout.count("\n") == 1, result.stdout
    doc: dict[str, Any] = orjson.loads(result.stdout)
    assert doc.pop("schema") == "asup.cli/1"
    return doc


def tear(path: Path, keep: int = 30) -> bytes:
    """Cut the last line after `keep` bytes, as a crash in the middle of writing it would, and
    drop the head record that batch never got to refresh; return the torn bytes left."""
    data = path.read_bytes()
    start = data.rstrip(b"\n").rfind(b"\n") + 1
    path.write_bytes(data[: start + keep])
    path.with_name(path.name + ".head.json").unlink()
    return data[start : start + keep]


def drop_line(path: Path, line: int) -> None:
    lines = path.read_bytes().splitlines(keepends=True)
    del lines[line - 1]
    path.write_bytes(b"".join(lines))


def flip_line(path: Path, line: int) -> None:
    data = bytearray(path.read_bytes())
    start = sum(len(x) for x in bytes(data).splitlines(keepends=True)[: line - 1])
    data[start + 40] ^= 0x02
    path.write_bytes(bytes(data))


# --- verify ------------------------------------------------------------------------------


def test_verify_ok(log: Path) -> None:
    """verify on an intact log exits 0 and reports the records, streams and last seq (human and --json)."""
    result = asup("log", "verify", LOG)
    assert result.exit_code == 0, result.output
    assert f"{LOG}: ok" in result.stdout and f"{RECORDS} records" in result.stdout and result.stderr == ""
    doc = json_out(asup("log", "verify", LOG, "--json"))
    assert doc == {"log": LOG, "log_id": "cli", "records": RECORDS, "streams": 4, "last_seq": RECORDS, "ok": True, "problem": None}


def test_verify_torn_tail_names_repair_and_line(log: Path) -> None:
    """verify on a cut last line exits 1, names the line and `asup log repair FILE`; --json says torn_tail."""
    tear(log)
    result = asup("log", "verify", LOG)
    assert result.exit_code == 1
    assert "DAMAGED" in result.stdout
    text = flat(result.stdout)
    assert f"{LOG}:{RECORDS}: torn_tail" in text
    assert f"asup log repair {LOG}" in text
    doc = json_out(asup("log", "verify", LOG, "--json"))
    assert doc["ok"] is False and doc["records"] == RECORDS - 1
    problem = doc["problem"]
    assert (problem["kind"], problem["line"], problem["reason"], problem["writer_active"]) == ("torn_tail", RECORDS, "no_newline", False)
    assert f"asup log repair {LOG}" in problem["message"]


def test_verify_corrupt_names_line_and_seq(log: Path) -> None:
    """verify on a log missing line 4 exits 1 naming line 4 and the seq found there (5)."""
    drop_line(log, 4)
    result = asup("log", "verify", LOG)
    assert result.exit_code == 1
    text = flat(result.stdout)
    assert f"{LOG}:4: corrupt_record" in text and "(seq 5)" in text
    assert "asup log repair" not in text
    problem = json_out(asup("log", "verify", LOG, "--json"))["problem"]
    assert (problem["kind"], problem["line"], problem["reason"]) == ("corrupt", 4, "chain")


def test_verify_bit_flip_names_line_and_seq(log: Path) -> None:
    """verify on a bit flip in line 4 exits 1 naming line 4 and its seq 4."""
    flip_line(log, 4)
    result = asup("log", "verify", LOG)
    assert result.exit_code == 1
    text = flat(result.stdout)
    assert f"{LOG}:4: corrupt_record" in text
    assert "(seq 4)" in text, text


def add_unknown_field(path: Path, line: int) -> None:
    """Give the record at `line` a data field this asup does not know, its digest recomputed (what a newer asup might write)."""
    lines = path.read_bytes().splitlines(keepends=True)
    obj = orjson.loads(lines[line - 1])
    obj["data"]["surprise"] = 1
    prefix = orjson.dumps({k: v for k, v in obj.items() if k != "h"})[:-1]
    lines[line - 1] = prefix + b',"h":"blake3:' + blake3(prefix).hexdigest().encode() + b'"}\n'
    path.write_bytes(b"".join(lines))


def test_verify_a_newer_record_is_schema_unsupported(log: Path) -> None:
    """verify on a digest-valid record with an unknown field exits 1: UNSUPPORTED, one schema_unsupported line: file, line, seq, field."""
    add_unknown_field(log, 4)
    result = asup("log", "verify", LOG)
    assert result.exit_code == 1
    assert "UNSUPPORTED" in result.stdout and "DAMAGED" not in result.stdout and "corrupt" not in result.stdout
    expected = (
        f"{LOG}:4: schema_unsupported: Object contains unknown field `surprise` - at `$.data`: "
        "written by a newer asup? upgrade asup (seq 4) [field $.data.surprise]"
    )
    assert f"first problem: {expected}" in result.stdout
    problem = json_out(asup("log", "verify", LOG, "--json"))["problem"]
    assert (problem["kind"], problem["line"], problem["reason"]) == ("schema_unsupported", 4, "schema_unsupported")
    assert problem["message"] == expected
    cat = asup("log", "cat", LOG)
    assert cat.exit_code == 1
    assert one_error_line(cat) == f"asup: {expected}"


def test_verify_problem_line_is_one_line_when_piped(log: Path) -> None:
    """The first-problem line (with the repair command to copy) is printed unwrapped on a non-terminal stdout."""
    tear(log)
    message = json_out(asup("log", "verify", LOG, "--json"))["problem"]["message"]
    result = asup("log", "verify", LOG)
    assert f"first problem: {message}" in result.stdout.splitlines()[1], result.stdout


def test_verify_notes_an_active_writer(log: Path) -> None:
    """A partial last line while a writer holds the lock (a batch in flight) is reported with writer_active."""
    fd = os.open(log, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # what a writer holds while it writes a batch
        with log.open("ab") as fh:
            fh.write(b'{"type":"transition"')
        result = asup("log", "verify", LOG, "--json")
    finally:
        os.close(fd)
    assert result.exit_code == 1
    problem = json_out(result)["problem"]
    assert problem["kind"] == "torn_tail" and problem["writer_active"] is True


@pytest.mark.parametrize("command", ["verify", "repair", "stats", "cat"])
def test_missing_file_is_one_line_exit_2(workdir: Path, command: str) -> None:
    """Every log command on a missing file exits 2 with one stderr line naming the file."""
    result = asup("log", command, "missing.jsonl")
    assert result.exit_code == 2
    assert one_error_line(result) == "asup: missing.jsonl: log_not_found: no such log file"
    assert result.stdout == ""
    assert not (workdir / "missing.jsonl").exists()


# --- repair ------------------------------------------------------------------------------


def test_repair_moves_the_torn_bytes_and_the_log_verifies(log: Path) -> None:
    """repair quarantines the torn bytes, appends log_repaired, exits 0; verify is then ok; a second repair does nothing."""
    offset = log.read_bytes().rstrip(b"\n").rfind(b"\n") + 1
    torn = tear(log, keep=55)
    result = asup("log", "repair", LOG)
    assert result.exit_code == 0, result.output
    text = flat(result.stdout)
    assert f"moved {len(torn)} torn bytes (no_newline) from offset {offset}" in text
    assert f"{LOG}.torn-{offset}" in text
    assert Path(f"{LOG}.torn-{offset}").read_bytes() == torn
    assert asup("log", "verify", LOG).exit_code == 0
    records = [orjson.loads(line) for line in log.read_bytes().splitlines()]
    assert records[-1]["type"] == "log_repaired" and records[-1]["seq"] == RECORDS
    again = asup("log", "repair", LOG, "--json")
    assert again.exit_code == 0
    assert json_out(again) == {"log": LOG, "repaired": False, "last_seq": RECORDS}


def test_repair_json_describes_the_repair(log: Path) -> None:
    """repair --json reports offset, length, quarantine, reason and the seq of log_repaired."""
    torn = tear(log, keep=12)
    doc = json_out(asup("log", "repair", LOG, "--json"))
    offset = doc["offset"]
    assert doc == {
        "log": LOG,
        "repaired": True,
        "last_seq": RECORDS,
        "offset": offset,
        "length": len(torn),
        "quarantine": f"{LOG}.torn-{offset}",
        "reason": "no_newline",
    }
    assert log.read_bytes()[offset:].startswith(b'{"type":"log_repaired"')


def test_repair_refuses_corruption_and_leaves_the_file(log: Path) -> None:
    """repair on mid-log damage exits 1 with one stderr line naming line and seq; the file is untouched, nothing quarantined."""
    drop_line(log, 4)
    before = log.read_bytes()
    result = asup("log", "repair", LOG)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert line.startswith(f"asup: {LOG}:4: corrupt_record:") and "(seq 5)" in line
    assert log.read_bytes() == before
    assert not list(log.parent.glob("*.torn-*"))


def test_repair_of_a_locked_log_exits_3(log: Path) -> None:
    """repair while another writer holds the lock past --lock-timeout exits 3 with one stderr line (log_locked)."""
    fd = os.open(log, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        result = asup("log", "repair", LOG, "--lock-timeout", "0.1")
    finally:
        os.close(fd)
    assert result.exit_code == 3
    assert "log_locked" in one_error_line(result)


# --- stats and cat -------------------------------------------------------------------------


def test_stats_json_counts_by_type_stream_and_reason(log: Path) -> None:
    """stats --json counts every record by type, stream and reason code (computed here from what was appended)."""
    types = Counter(event.TYPE for _, event in CONTENT) + Counter({"log_created": 1})
    streams = Counter(stream for stream, _ in CONTENT) + Counter({"$log": 1})
    reasons = Counter(str(e.reason_code) for _, e in CONTENT if isinstance(e, Transition) and e.reason_code is not None)
    result = asup("log", "stats", LOG, "--json")
    assert result.exit_code == 0
    assert json_out(result) == {
        "log": LOG,
        "records": RECORDS,
        "types": dict(types),
        "streams": dict(streams),
        "reason_codes": dict(reasons),
    }
    assert reasons == {"capability_mismatch": 1, "retry_exhausted": 2}, "the fixture has reason codes to count"
    assert set(types) <= set(REGISTRY)


def test_stats_human_lists_the_counts(log: Path) -> None:
    """stats without --json prints the record count and a row per type, reason code and stream."""
    result = asup("log", "stats", LOG)
    assert result.exit_code == 0
    assert f"{RECORDS} records" in result.stdout
    for name in ("transition", "source_hashed", "lease_checked", "retry_exhausted", "capability_mismatch", "t-3", "$log"):
        assert name in result.stdout


def test_stats_on_a_torn_log_fails_with_one_line(log: Path) -> None:
    """stats on a torn log exits 1 with one stderr line naming the line and `asup log repair`."""
    tear(log)
    result = asup("log", "stats", LOG)
    assert result.exit_code == 1
    line = one_error_line(result)
    assert f"{LOG}:{RECORDS}: torn_tail" in line and f"asup log repair {LOG}" in line


@pytest.mark.parametrize(
    ("stream", "type_"),
    [(None, None), ("t-1", None), (None, "transition"), ("t-2", "transition"), ("t-3", "lease_checked"), ("t-9", None), (None, "nope")],
)
def test_cat_filters_by_stream_and_type(log: Path, stream: str | None, type_: str | None) -> None:
    """cat prints exactly the records of the stream/type asked for, one per line; --json lines equal the stored records."""
    stored = [orjson.loads(line) for line in log.read_bytes().splitlines()]
    wanted = [r for r in stored if (stream is None or r["stream"] == stream) and (type_ is None or r["type"] == type_)]
    args = ["log", "cat", LOG, *(["--stream", stream] if stream else []), *(["--type", type_] if type_ else [])]
    human = asup(*args)
    assert human.exit_code == 0, human.output
    lines = human.stdout.splitlines()
    assert [int(line.split()[0]) for line in lines] == [r["seq"] for r in wanted]
    for line, record in zip(lines, wanted, strict=True):
        assert f"{record['stream']}#{record['sv']} {record['type']}" in line
    as_json = asup(*args, "--json")
    assert as_json.exit_code == 0
    printed = [orjson.loads(line) for line in as_json.stdout.splitlines()]
    assert printed == wanted
    assert [list(r) for r in printed] == [list(r) for r in wanted], "keys in file order"


def test_cat_of_a_corrupt_log_prints_the_verified_prefix_then_fails(log: Path) -> None:
    """cat stops at the damage: the records before it are printed, then one stderr line and exit 1."""
    drop_line(log, 5)
    result = asup("log", "cat", LOG, "--json")
    assert result.exit_code == 1
    assert [orjson.loads(line)["seq"] for line in result.stdout.splitlines()] == [1, 2, 3, 4]
    assert f"{LOG}:5: corrupt_record" in one_error_line(result)


# --- demo ------------------------------------------------------------------------------------


def test_demo_is_deterministic_and_keeps_earlier_files(workdir: Path) -> None:
    """demo with one seed writes identical bytes to any path; rerunning on a path keeps the earlier file as PATH.1, PATH.2."""
    assert asup("log", "demo", "a/demo.jsonl", "--seed", "11").exit_code == 0
    assert asup("log", "demo", "b/demo.jsonl", "--seed", "11").exit_code == 0
    first = Path("a/demo.jsonl").read_bytes()
    assert first and Path("b/demo.jsonl").read_bytes() == first
    again = asup("log", "demo", "a/demo.jsonl", "--seed", "11")
    assert again.exit_code == 0
    assert "kept the earlier log as a/demo.jsonl.1" in flat(again.stdout)
    assert Path("a/demo.jsonl.1").read_bytes() == first
    assert Path("a/demo.jsonl").read_bytes() == first
    assert asup("log", "demo", "a/demo.jsonl", "--seed", "12").exit_code == 0
    assert Path("a/demo.jsonl.2").read_bytes() == first
    assert Path("a/demo.jsonl").read_bytes() != first, "another seed, other bytes"
    assert asup("log", "verify", "a/demo.jsonl").exit_code == 0


# --- version and help --------------------------------------------------------------------------


def test_version_prints_the_log_schema() -> None:
    """--version exits 0 printing the package version, the log schema and the record version."""
    result = asup("--version")
    assert result.exit_code == 0
    assert LOG_SCHEMA in result.stdout and f"record v{SCHEMA_VERSION}" in result.stdout


def _commands() -> list[list[str]]:
    paths: list[list[str]] = [[]]

    def walk(command: Any, path: list[str]) -> None:
        if isinstance(command, TyperGroup):
            if path:
                paths.append(path)
            for name, sub in command.commands.items():
                walk(sub, [*path, name])
        else:
            paths.append(path)

    walk(typer.main.get_command(app), [])
    return paths


@pytest.mark.parametrize("path", _commands(), ids=lambda p: " ".join(p) or "asup")
def test_every_command_help_has_an_example(path: list[str]) -> None:
    """Every command's --help (the root's and each group's too) exits 0 and shows an `Example:` line."""
    result = asup(*path, "--help")
    assert result.exit_code == 0, result.output
    assert "Example:" in result.stdout


def _command_of(path: list[str]) -> Any:
    command: Any = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]
    return command


@pytest.mark.parametrize("path", [p for p in _commands() if p], ids=" ".join)
def test_help_keeps_placeholders_and_reflows_paragraphs(path: list[str]) -> None:
    """Help is rendered as markdown: every `<placeholder>` written in a command's text or its
    options' help survives, and a paragraph's source line breaks do not survive (on a wide
    terminal each paragraph is one line)."""
    command = _command_of(path)
    texts = [command.help or "", *(getattr(param, "help", None) or "" for param in command.params)]
    wide = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "400"})
    assert wide.exit_code == 0, wide.output
    for placeholder in {m for text in texts for m in re.findall(r"<[\w-]+>", text)}:
        assert placeholder in wide.stdout, f"{placeholder} lost from `asup {' '.join(path)} --help`"
    for paragraph in (command.help or "").split("\n\n")[1:]:
        lines = [line.split() for line in paragraph.strip().splitlines()]
        if len(lines) > 1 and lines[0] and lines[1]:
            seam = f"{lines[0][-1]} {lines[1][0]}".replace("`", "")
            assert seam in wide.stdout.replace("`", ""), f"`asup {' '.join(path)} --help` breaks its paragraph at {seam!r}"


def test_command_list_covers_the_log_verbs() -> None:
    """The help check walks the real command tree, log verbs included."""
    assert {("log", verb) for verb in ("verify", "repair", "stats", "cat", "demo")} <= {tuple(p) for p in _commands()}


# --- the CLI in real processes -----------------------------------------------------------------


def test_a_real_process_writes_the_demo_verifies_it_and_refuses_a_missing_file(workdir: Path) -> None:
    """The real `asup` process writes the same demo bytes as in-process, verifies it (exit 0), and a missing file is exit 2 in one line."""
    demo = run_asup("log", "demo", "demo.jsonl", "--seed", "5", cwd=workdir)
    assert demo.returncode == 0, demo.stderr
    assert asup("log", "demo", "inproc.jsonl", "--seed", "5").exit_code == 0
    assert (workdir / "demo.jsonl").read_bytes() == (workdir / "inproc.jsonl").read_bytes()
    verify = run_asup("log", "verify", "demo.jsonl", cwd=workdir)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "demo.jsonl: ok" in verify.stdout and verify.stderr == ""
    missing = run_asup("log", "verify", "nowhere.jsonl", cwd=workdir)
    assert missing.returncode == 2
    assert missing.stderr == "asup: nowhere.jsonl: log_not_found: no such log file\n"
    assert missing.stdout == ""


def test_a_real_process_reports_damage(log: Path) -> None:
    """The real `asup log verify` exits 1 on a torn tail naming the repair, and `asup log stats` prints one stderr line."""
    tear(log)
    verify = run_asup("log", "verify", LOG, cwd=log.parent)
    assert verify.returncode == 1
    assert f"asup log repair {LOG}" in flat(verify.stdout)
    stats = run_asup("log", "stats", LOG, "--json", cwd=log.parent)
    assert stats.returncode == 1
    assert stats.stderr.count("\n") == 1 and f"{LOG}:{RECORDS}: torn_tail" in stats.stderr


def test_a_real_process_calls_itself_asup_under_python_m_runbook(workdir: Path) -> None:
    """Started as `python -m runbook`, usage errors and the help still name the command `asup`."""
    wrong = run_asup("log", "nope", cwd=workdir)
    assert wrong.returncode == 2
    assert wrong.stderr == "asup: usage (asup log): No such command 'nope'. (see --help)\n"
    assert "Usage: asup [OPTIONS] COMMAND" in run_asup("--help", cwd=workdir).stdout


def test_version_reads_the_asupersync_distribution(workdir: Path) -> None:
    """`asup --version` in a real process prints the installed asupersync distribution's version."""
    done = run_asup("--version", cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"asup {metadata.version('asupersync')} (log schema {LOG_SCHEMA},")
