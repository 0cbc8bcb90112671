"""An all-clear is a claim about something: `asup escalate` on a root that does not exist,
or one with no transfers in it, is a usage error, never "escalation: none"; an all-clear
names how many logs and transfers it judged."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from events.jsonl_log import JsonlLog
from events.payloads import Transition
from events.vocabulary import State, Trigger
from tests.cli import asup_argv, run_asup


def test_a_root_that_does_not_exist_is_a_usage_error(tmp_path: Path) -> None:
    done = run_asup("escalate", "--root", str(tmp_path / "typo"), cwd=tmp_path)
    assert done.returncode == 2 and "no such root" in done.stderr and "escalation" not in done.stdout
    env = {**os.environ, "ASUP_ROOT": str(tmp_path / "typo")}
    via_env = subprocess.run(asup_argv("escalate"), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert via_env.returncode == 2 and "no such root" in via_env.stderr


def test_a_root_with_nothing_to_judge_is_refused(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    done = run_asup("escalate", "--root", "root", cwd=tmp_path)
    assert done.returncode == 2 and "would judge nothing" in done.stderr


def test_an_all_clear_names_what_it_judged(tmp_path: Path) -> None:
    logs = tmp_path / "root" / "logs"
    logs.mkdir(parents=True)
    with JsonlLog.open(logs / "t.jsonl") as log:
        for name in ("a", "b"):
            log.append(
                name,
                [
                    Transition(
                        transfer_id=name,
                        from_state=State.IDLE,
                        trigger=Trigger.START,
                        to_state=State.CAPABILITY_CHECK,
                        attempt=0,
                        committed_cursor=0,
                    )
                ],
            )
    done = run_asup("escalate", "--root", "root", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("escalation: none (0 rules fired over 1 log, 2 transfers)")
    verdict = json.loads(run_asup("escalate", "--root", "root", "--json", cwd=tmp_path).stdout)
    assert (verdict["level"], verdict["transfers"], len(verdict["logs"])) == (None, 2, 1)


def test_the_default_log_follows_the_root_so_escalate_on_that_root_sees_the_transfer(tmp_path: Path) -> None:
    (tmp_path / "src.bin").write_bytes(b"x" * 5000)
    env = {**os.environ, "ASUP_ROOT": str(tmp_path / "elsewhere")}
    sync = ["sync", "src.bin", "out.bin", "--artifact-class", "migration_manifest", "--mode", "strict"]
    done = subprocess.run(asup_argv(*sync), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "elsewhere" / "logs" / "transfers.jsonl").is_file() and not (tmp_path / "artifacts").exists()
    judged = subprocess.run(asup_argv("escalate"), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert judged.stdout.startswith("escalation: none (0 rules fired over 1 log, 1 transfer)"), judged.stdout + judged.stderr
    (tmp_path / "asup.toml").write_text('root = "fromconfig"\n')
    by_config = run_asup(*sync[:2], "out2.bin", *sync[3:], cwd=tmp_path)
    assert by_config.returncode == 0 and (tmp_path / "fromconfig" / "logs" / "transfers.jsonl").is_file()
