"""No state, trigger or reason-code name is spelled as a string in the package code: it is
`State`, `Trigger`, `ReasonCode` (events/vocabulary.py) or the rules compiled from the
contract (engine/rules.py), so a renamed or retired name cannot linger in a view, a colour
map or a comparison. An AST scan, so docstrings (which may name states) are skipped and
comments are never seen.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from events.vocabulary import ReasonCode, State, Trigger

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("events", "engine", "projections", "replay", "runbook")
# Where the names are defined: the vocabulary, and the loader that checks the contract against it.
SOURCES = frozenset({"events/vocabulary.py", "engine/contracts.py"})
# Other closed sets that share a name with the vocabulary; each entry says why.
ALLOWED: dict[str, frozenset[str]] = {
    # ErrorCode.CONFLICT_DETECTED (a stale expected stream version) and ErrorCode.IO_FAILED (the OS
    # refused a call; a transfer that meets one after its intent fails closed with the reason code
    # of the same name) are error codes, not the reason codes
    "events/errors.py": frozenset({"conflict_detected", "io_failed"}),
    # the fault kind that corrupts a chunk, named for the trigger it provokes
    "engine/faults.py": frozenset({"checksum_mismatch"}),
    # scenario names, each named for the reason code or trigger it exercises
    "engine/scenarios.py": frozenset(
        {
            "retry_exhausted",
            "checksum_mismatch",
            "capability_mismatch",
            "unsupported_capability",
            "resume_transfer_mismatch",
            "resume_cursor_ahead",
        }
    ),
}
VOCABULARY: dict[str, str] = {member.value: kind.__name__ for kind in (State, Trigger, ReasonCode) for member in kind}


def _docstrings(tree: ast.Module) -> set[int]:
    """The ids of the constants that are docstrings: the first statement of a module, class or function."""
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def literals(source: str, path: str) -> Iterator[str]:
    """`path:line: ...` for every string constant in `source` that is a vocabulary name it may not spell."""
    tree = ast.parse(source, filename=path)
    skip = _docstrings(tree)
    allowed = ALLOWED.get(path, frozenset())
    constants = [n for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str) and id(n) not in skip]
    for node in sorted(constants, key=lambda n: (n.lineno, n.col_offset)):
        value = str(node.value)
        kind = VOCABULARY.get(value)
        if kind is not None and value not in allowed:
            yield f"{path}:{node.lineno}: {value!r} is a {kind} name: use {kind} or engine.rules"


def _package_files() -> Iterator[tuple[str, str]]:
    for package in PACKAGES:
        for file in sorted((ROOT / package).rglob("*.py")):
            path = file.relative_to(ROOT).as_posix()
            if path not in SOURCES:
                yield path, file.read_text(encoding="utf-8")


def test_no_vocabulary_literal_outside_the_vocabulary_and_the_contract() -> None:
    """Every .py file of the packages spells states, triggers and reason codes through the enums."""
    found = [line for path, source in _package_files() for line in literals(source, path)]
    assert not found, "vocabulary names spelled as strings:\n" + "\n".join(found)


def test_the_scan_sees_the_packages() -> None:
    """The scan reads files of every package (a wrong root would pass vacuously)."""
    paths = [path for path, _ in _package_files()]
    assert {path.split("/")[0] for path in paths} == set(PACKAGES)
    assert "engine/machine.py" in paths and "runbook/cli.py" in paths


def test_a_planted_literal_is_reported_with_file_and_line() -> None:
    """A comparison with "completed", a key "failed_closed" and a reason in a call are each found at their line."""
    source = '"""Naming completed is fine."""\nx = state == "completed"\ncolors = {"failed_closed": "red"}\nf("retry_exhausted")\n'
    assert list(literals(source, "projections/planted.py")) == [
        "projections/planted.py:2: 'completed' is a State name: use State or engine.rules",
        "projections/planted.py:3: 'failed_closed' is a State name: use State or engine.rules",
        "projections/planted.py:4: 'retry_exhausted' is a ReasonCode name: use ReasonCode or engine.rules",
    ]


def test_docstrings_are_skipped_but_other_bare_strings_are_not() -> None:
    """A function's docstring may say "idle"; the same string as a later expression statement is reported."""
    source = 'def f():\n    "idle"\n    "idle"\n'
    assert list(literals(source, "engine/planted.py")) == ["engine/planted.py:3: 'idle' is a State name: use State or engine.rules"]


def test_the_allow_list_is_per_file() -> None:
    """An error code's name is allowed in events/errors.py only."""
    source = 'CODE = "conflict_detected"\n'
    assert list(literals(source, "events/errors.py")) == []
    assert list(literals(source, "runbook/cli.py")) == [
        "runbook/cli.py:1: 'conflict_detected' is a ReasonCode name: use ReasonCode or engine.rules"
    ]
