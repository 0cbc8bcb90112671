"""The golden cases: recorded logs and the exact output of the commands users read.

Every case runs the real CLI (`python -m runbook`) in a copy of this folder, so paths in
the output are the relative ones below. `python -m tests.golden.regen` rewrites
`expected/` from the committed logs (an intended change updates its goldens in the same
commit and says why); `--logs` re-records the logs themselves first.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import msgspec
from blake3 import blake3

from tests.cli import asup_argv

HERE = Path(__file__).resolve().parent
EXPECTED = HERE / "expected"
SEED = "7"
SCENARIOS = "logs/scenarios.jsonl"
DEMO = "logs/demo.jsonl"
SCENARIOS_V1 = "logs/v1/scenarios.jsonl"  # the same scenarios as a v1 asup recorded them: read through the upcasters
OPS = "root/asupersync/v1/asupersync_ops_events_v1.jsonl"
E2E = "root/e2e/latest/e2e_baseline_log.jsonl"

# name -> argv after `asup`; the names are the files under expected/.
CASES: dict[str, list[str]] = {
    "verify_scenarios": ["log", "verify", SCENARIOS],
    "verify_scenarios_json": ["log", "verify", SCENARIOS, "--json"],
    "verify_demo": ["log", "verify", DEMO],
    "verify_ops": ["log", "verify", OPS],
    "verify_e2e": ["log", "verify", E2E],
    "verify_bitflip": ["log", "verify", "logs/bitflip.jsonl"],
    "verify_bitflip_json": ["log", "verify", "logs/bitflip.jsonl", "--json"],
    "verify_torn": ["log", "verify", "logs/torn.jsonl"],
    "verify_extra_field": ["log", "verify", "logs/extra_field.jsonl"],
    "verify_newer_v": ["log", "verify", "logs/newer_v.jsonl"],
    "stats_scenarios": ["log", "stats", SCENARIOS, "--json"],
    "replay_scenarios": ["replay", SCENARIOS],
    "replay_scenarios_json": ["replay", SCENARIOS, "--json"],
    "replay_scenarios_no_lever": ["replay", SCENARIOS, "--no-lever", "--json"],
    "replay_demo": ["replay", DEMO],
    "replay_until": ["replay", SCENARIOS, "--until", "120"],
    "replay_bitflip": ["replay", "logs/bitflip.jsonl"],
    "replay_torn": ["replay", "logs/torn.jsonl"],
    "trace_scenarios": ["trace", SCENARIOS],
    "trace_demo": ["trace", DEMO],
    "status_scenarios": ["status", SCENARIOS],
    "status_scenarios_json": ["status", SCENARIOS, "--json"],
    "status_demo": ["status", DEMO],
    "status_until": ["status", SCENARIOS, "--until", "120", "--json"],
    "status_bitflip": ["status", "logs/bitflip.jsonl"],
    "escalate_scenarios": ["escalate", SCENARIOS],
    "escalate_scenarios_json": ["escalate", SCENARIOS, "--json"],
    "escalate_demo": ["escalate", DEMO],
    "escalate_root": ["escalate", "--root", "root"],
    "checklist_root": ["checklist", "--root", "root"],
    "checklist_root_json": ["checklist", "--root", "root", "--json"],
    "diff_scenarios_demo": ["diff", SCENARIOS, DEMO],
    "verify_v1": ["log", "verify", SCENARIOS_V1],
    "status_v1_json": ["status", SCENARIOS_V1, "--json"],
    "replay_v1_json": ["replay", SCENARIOS_V1, "--json"],
}


def cli_env() -> dict[str, str]:
    """A fixed terminal: wide, colourless, no asup defaults from the caller's shell."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASUP_")}
    env.update(COLUMNS="200", LINES="50", NO_COLOR="1", TERM="dumb", PYTHONHASHSEED="0")
    return env


def asup(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run the CLI of the interpreter running the tests."""
    return subprocess.run(asup_argv(*argv), cwd=cwd, env=cli_env(), capture_output=True, text=True, check=False)


def render(argv: list[str], result: subprocess.CompletedProcess[str]) -> str:
    """One reviewable text per case: the command, its exit code, stdout, stderr."""
    return f"$ asup {' '.join(argv)}\nexit {result.returncode}\n--- stdout\n{result.stdout}--- stderr\n{result.stderr}"


def copy_inputs(dest: Path) -> Path:
    """The logs and the readiness root, copied so a case can never write into the repo."""
    for name in ("logs", "root"):
        shutil.copytree(HERE / name, dest / name)
    return dest


def run_case(name: str, workdir: Path) -> str:
    argv = CASES[name]
    return render(argv, asup(argv, workdir))


def comparable(path: Path) -> list[dict[str, object]]:
    """Records without what a machine changes (env fingerprint) and what follows from it
    (digests: a record's `h` and `prev`, a checkpoint's `stream_digest`, a chain over
    payloads that include the intent's fingerprint): the meaning the goldens pin across
    machines."""
    rows = []
    for line in path.read_bytes().splitlines():
        record = msgspec.json.decode(line)
        record.pop("h", None)
        record.pop("prev", None)
        _drop_fingerprints(record)
        rows.append(record)
    return rows


def _drop_fingerprints(value: object) -> None:
    if isinstance(value, dict):
        value.pop("env_fingerprint", None)
        value.pop("stream_digest", None)
        for item in value.values():
            _drop_fingerprints(item)
    elif isinstance(value, list):
        for item in value:
            _drop_fingerprints(item)


def redigest(line: bytes) -> bytes:
    """Re-seal a line after an edit, as a tool that forges digests would."""
    body = line[: line.rindex(b',"h":')]
    return body + b',"h":"blake3:' + blake3(body).hexdigest().encode() + b'"}\n'
