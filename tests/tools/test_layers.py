"""The layer check: wrong-way imports and import cycles fail it with file:line, the real tree passes."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tools.layers import FREE, LAYERS, check

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "tools" / "layers.py"


def tree(root: Path, files: dict[str, str]) -> Path:
    """A fake source tree: every layer a package, plus the given modules."""
    for package in LAYERS:
        (root / package).mkdir(parents=True, exist_ok=True)
        (root / package / "__init__.py").write_text("")
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_repository_obeys_the_layers_and_has_no_cycle() -> None:
    """The real packages import only leftwards and never round: no problem, hundreds of imports seen."""
    result = check(REPO)
    assert result.problems == []
    assert len(result.edges) > 500 and result.modules > 100


def test_imports_pointing_left_and_from_the_free_packages_pass(tmp_path: Path) -> None:
    """runbook may import every layer and tests may import runbook: no problem, every import counted."""
    files = {
        "events/a.py": "import os\n",
        "engine/b.py": "from events import a\n",
        "runbook/c.py": "import engine.b\nfrom replay import x\n",
        "replay/x.py": "from projections import y\n",
        "projections/y.py": "from engine.b import thing\n",
        "tests/t.py": "from runbook import c\n",
    }
    result = check(tree(tmp_path, files))
    assert result.problems == []
    assert len(result.edges) == 6  # `import os` is third-party and not counted


def test_a_wrong_way_import_names_the_file_and_line(tmp_path: Path) -> None:
    """engine importing replay at line 3 is reported as engine/b.py:3 with what engine may import."""
    files = {"engine/b.py": "import os\n\nfrom replay.diff import first\n", "replay/diff.py": ""}
    assert check(tree(tmp_path, files)).problems == [
        "engine/b.py:3: wrong-way import: engine.b imports replay.diff (engine may import events)"
    ]


def test_no_layer_may_import_runbook_or_the_free_packages(tmp_path: Path) -> None:
    """projections importing runbook, and events importing tests, are both wrong-way."""
    files = {"projections/p.py": "import runbook.cli\n", "runbook/cli.py": ""}
    files |= {"events/e.py": "from tests import helpers\n", "tests/helpers.py": ""}
    problems = check(tree(tmp_path, files)).problems
    assert [p.split(": ")[0] for p in problems] == ["events/e.py:1", "projections/p.py:1"]
    assert "tests" in FREE


def test_lazy_and_type_checking_imports_count(tmp_path: Path) -> None:
    """An import inside a function and one under TYPE_CHECKING are checked like any other."""
    lazy = "def f() -> None:\n    from replay import r\n"
    typed = "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from runbook.cli import App\n"
    files = {"engine/lazy.py": lazy, "events/typed.py": typed, "replay/r.py": "", "runbook/cli.py": ""}
    problems = check(tree(tmp_path, files)).problems
    assert [p.split(": ")[0] for p in problems] == ["events/typed.py:4", "engine/lazy.py:2"]


def test_a_cycle_inside_one_package_is_reported_with_every_import(tmp_path: Path) -> None:
    """events.a -> events.b -> events.a is a cycle even when one side imports lazily."""
    files = {"events/a.py": "from events import b\n", "events/b.py": "import os\n\n\ndef f() -> None:\n    from events.a import g\n"}
    assert check(tree(tmp_path, files)).problems == [
        "events/a.py:1: import cycle: events.a -> events.b -> events.a (imports at events/a.py:1, events/b.py:5)"
    ]


def test_a_cycle_across_packages_and_relative_imports_are_resolved(tmp_path: Path) -> None:
    """A relative import is resolved to its module, so runbook.x -> runbook.gates.y -> runbook.x is found."""
    files = {"runbook/x.py": "from .gates import y\n", "runbook/gates/__init__.py": "", "runbook/gates/y.py": "from ..x import z\n"}
    problems = check(tree(tmp_path, files)).problems
    route = "runbook.gates.y -> runbook.x -> runbook.gates.y"
    assert problems == [f"runbook/gates/y.py:1: import cycle: {route} (imports at runbook/gates/y.py:1, runbook/x.py:1)"]


def test_the_script_fails_on_a_planted_import_in_a_copy_of_the_tree(tmp_path: Path) -> None:
    """Run as `make lint` runs it, on a copy of the packages with one wrong-way import and one cycle: exit 1, file:line each."""
    for package in (*LAYERS, "tests", "bench", "tools"):
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    with (tmp_path / "engine" / "layout.py").open("a") as layout:
        layout.write("from runbook import cli\n")
    line = len((tmp_path / "engine" / "layout.py").read_text().splitlines())
    (tmp_path / "events" / "ping.py").write_text("from events import pong\n")
    (tmp_path / "events" / "pong.py").write_text("from events import ping\n")
    run = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 1, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert f"engine/layout.py:{line}: wrong-way import: engine.layout imports runbook.cli (engine may import events)" in lines
    assert any(p.startswith("events/ping.py:1: import cycle: events.ping -> events.pong -> events.ping") for p in lines)
    assert lines[-1].startswith("layers: ") and lines[-1].endswith(" problem(s)")
