"""The built-in demo log: a few seeded transfers' transitions, deterministic to the byte."""

from __future__ import annotations

import os
import random
from pathlib import Path

from events.atomic import make_dirs, move_aside
from events.clock import StepClock
from events.jsonl_log import JsonlLog, drop_side_files
from events.payloads import Transition
from events.vocabulary import Mode, ReasonCode, State, Trigger

S, T = State, Trigger


def _route(rng: random.Random, fail: bool) -> list[tuple[State, Trigger, State, ReasonCode | None]]:
    steps: list[tuple[State, Trigger, State, ReasonCode | None]] = [
        (S.IDLE, T.START, S.CAPABILITY_CHECK, None),
        (S.CAPABILITY_CHECK, T.CAPABILITY_ACCEPTED, S.SYNCING, None),
    ]
    steps += [(S.SYNCING, T.CHUNK_COMMITTED, S.SYNCING, None)] * rng.randint(2, 5)
    if fail:
        steps += [(S.SYNCING, T.TRANSPORT_INTERRUPTED, S.SYNCING, None)] * 3
        steps.append((S.SYNCING, T.RETRY_BUDGET_EXCEEDED, S.FAILED_CLOSED, ReasonCode.RETRY_EXHAUSTED))
    else:
        steps += [
            (S.SYNCING, T.CHECKSUM_VERIFICATION_STARTED, S.VERIFYING_CHECKSUM, None),
            (S.VERIFYING_CHECKSUM, T.CHECKSUM_VALIDATED, S.COMPLETED, None),
        ]
    return steps


def keep_earlier(path: Path) -> Path | None:
    """Move an existing file at `path` aside to `path.<n>` (never overwrite); return where."""
    if not os.path.lexists(path):
        return None
    kept = move_aside(path, "")
    drop_side_files(path)  # caches of the moved log
    return kept


def write_demo_log(path: Path, seed: int) -> Path | None:
    """Write the demo; an existing file at `path` is renamed aside first, never overwritten."""
    make_dirs(path.parent)
    kept = keep_earlier(path)
    rng = random.Random(seed)
    with JsonlLog.open(path, log_id="demo", clock=StepClock()) as log:
        for name, fail in (("demo-ok", False), ("demo-retry", True)):
            attempt, cursor = 0, 0
            events = []
            for from_state, trigger, to_state, reason in _route(rng, fail):
                attempt += trigger is T.TRANSPORT_INTERRUPTED
                cursor += trigger is T.CHUNK_COMMITTED
                events.append(
                    Transition(
                        transfer_id=name,
                        from_state=from_state,
                        trigger=trigger,
                        to_state=to_state,
                        attempt=attempt,
                        committed_cursor=cursor,
                        reason_code=reason,
                        artifact_id=f"{name}-artifact",
                        artifact_class="conformance_fixture_bundle",
                        mode=Mode.HARDENED,
                        seed=seed,
                        replay_command=f"asup log demo --seed {seed}",
                    )
                )
            log.append(name, events, expected_version=0)
    return kept
