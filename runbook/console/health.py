"""The checklist and escalation at a glance, from the model's folds and the artifacts root.

The same rules as `asup checklist` and `asup escalate` (projections/checklist.py,
projections/escalation.py), over the same inputs; every piece of evidence becomes a link to
the event it cites (in a console log, or `ops` for the operations log) or the artifact.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgspec

from engine import liveness
from events.errors import AsupError
from projections import checklist as checklist_mod
from projections.artifact_paths import ArtifactPaths
from projections.escalation import Inputs, Rule, escalate, level_of, sort_rules
from projections.metrics import Metrics
from runbook.console.views import ChecklistItem, Evidence, Health, RuleView
from runbook.evidence import gather_facts, ops_state

OPS = "ops"  # the operations log's name in links: /event/ops/SEQ
_PATH_KEYS = ("path", "pack_path", "artifact", "manifest")

Folded = tuple[int, str, dict[str, Any], str]  # (log index, log as given, fold states, problem)


class RootPart(msgspec.Struct):
    """What the artifacts root says: read without holding the model (it re-reads files)."""

    items: list[checklist_mod.Item] = msgspec.field(default_factory=list)
    rules: list[Rule] = msgspec.field(default_factory=list)
    verdict: str = ""
    problem: str = ""


def from_root(root: Path | None) -> RootPart:
    if root is None:
        return RootPart()
    try:
        items, rules = _root_rules(ArtifactPaths(root))
    except AsupError as exc:  # an unreadable root is shown, never a traceback or an all-clear
        return RootPart(problem=exc.one_line())
    return RootPart(items, rules, checklist_mod.verdict(items).value)


def health(logs: list[Folded], root: Path | None, part: RootPart | None = None) -> Health:
    """`logs`' rules (the folds as they stand: read under the model's lock) with the root's
    (`part`, read before taking it; read here when not given)."""
    part = part if part is not None else from_root(root)
    rules: list[tuple[str, Rule]] = []
    problems = []
    for index, text, states, problem in logs:
        if problem:
            problems.append(problem)
        rules += [(str(index), rule) for rule in escalate(_log_inputs(text, states, problem))]
    if part.problem:
        problems.append(part.problem)
    rules += [(OPS, rule) for rule in part.rules]
    items, verdict = part.items, part.verdict
    ordered = sort_rules([rule for _, rule in rules])
    where = {id(rule): log for log, rule in rules}
    level = level_of(ordered)
    return Health(
        root=str(root) if root is not None else "",
        verdict=verdict,
        checklist=[ChecklistItem(i.id, i.title, i.status.value, i.reason, [evidence(e, OPS) for e in i.evidence]) for i in items],
        level=level.value if level is not None else "",
        rules=[RuleView(r.level.value, r.rule, r.detail, [evidence(e, where[id(r)]) for e in r.evidence]) for r in ordered],
        problems=problems,
    )


def _log_inputs(text: str, states: dict[str, Any], problem: str) -> Inputs:
    violations = states["violations"]
    return Inputs(
        transfers=states["transfers"],
        audit=states["audit"],
        metrics=Metrics().render(states["metrics"]),
        log_problems=[{"log": text, "message": problem}] if problem else [],
        terminal_exits=violations.terminal_exits,
        forbidden_accepts=violations.forbidden_accepts,
        stale=liveness.stale_facts(states["transfers"].transfers.values(), text),
    )


def _root_rules(paths: ArtifactPaths) -> tuple[list[checklist_mod.Item], list[Rule]]:
    ops = ops_state(paths)
    facts = gather_facts(paths)
    items = checklist_mod.derive(ops, facts)
    # evidence drift needs evidence: with no sealed pack there is nothing to drift (as `asup escalate`)
    judged = items if facts.pack_digest is not None else None
    return items, escalate(Inputs(ops=ops, checklist=judged, pack_drift=facts.pack_drift))


def evidence(fact: dict[str, Any], log: str) -> Evidence:
    """One cited fact as a link: the transfer it names (in a console log), else the event,
    else the artifact, else plain text."""
    label = ", ".join(f"{k} {v}" for k, v in fact.items() if isinstance(v, (str, int, float)) and not isinstance(v, bool))
    transfer = fact.get("transfer_id")
    if log != OPS and isinstance(transfer, str) and transfer:
        return Evidence(label, f"/transfer/{quote(f'{log}:{transfer}', safe='')}", fact)
    for key in _PATH_KEYS:
        value = fact.get(key)
        if isinstance(value, str) and value:
            return Evidence(label, f"/artifact?path={quote(value, safe='')}", fact)
    seq = fact.get("seq", fact.get("evidence_seq"))
    if isinstance(seq, int) and not isinstance(seq, bool) and seq > 0:
        return Evidence(label, f"/event/{log}/{seq}", fact)
    return Evidence(label, "", fact)
