"""The contract's state machine drawn as SVG, with one transfer's path on it.

States sit on a grid derived from the contract: each state's column is its distance from
the initial state, the failure state (the invalid-trigger policy's) on a row of its own
below, under the middle column; so the same transfer always draws the same bytes. Every label is escaped; the SVG has no script.
"""

from __future__ import annotations

from collections import Counter
from html import escape

from engine.rules import default_rules
from runbook.console.views import Diagram, DiagramEdge

_W, _H, _BOX_W, _BOX_H = 170, 120, 140, 36


def diagram(transitions: list[tuple[str, str, str]]) -> Diagram:
    """`transitions`: this transfer's (from, trigger, to), in log order."""
    rules = default_rules()
    spec = rules.spec
    states = [s.value for s in spec.states]
    taken = Counter((a, t, b) for a, t, b in transitions)
    edges = sorted(
        {(r.from_state.value, r.to_state.value, r.event.value) for r in spec.transition_table},
    )
    out = [DiagramEdge(a, b, t, taken.get((a, t, b), 0)) for a, b, t in edges]
    path = [transitions[0][0]] if transitions else []
    path += [b for _a, _t, b in transitions]
    current = path[-1] if path else rules.initial.value
    terminal = sorted(s.value for s in rules.terminal)
    where = _layout(states, out, rules.initial.value, rules.failed.value)
    return Diagram(states, terminal, out, path, current, _svg(states, out, where, set(path), current))


def _layout(states: list[str], edges: list[DiagramEdge], initial: str, failed: str) -> dict[str, tuple[int, int]]:
    """(x, y) of each state's box: breadth-first columns from `initial`, `failed` below."""
    column = {initial: 0}
    frontier = [initial]
    while frontier:
        nxt = []
        for state in frontier:
            for edge in edges:
                if edge.source == state and edge.target not in column and edge.target != failed:
                    column[edge.target] = column[state] + 1
                    nxt.append(edge.target)
        frontier = sorted(nxt)
    last = max(column.values(), default=0)
    for state in states:  # one the walk never reached still gets a place
        if state not in column and state != failed:
            last += 1
            column[state] = last
    where = {state: (10 + c * _W, 40) for state, c in column.items()}  # room above for the self-loops' counts
    where[failed] = (10 + (last // 2) * _W, 40 + _H)
    return where


def _svg(states: list[str], edges: list[DiagramEdge], where: dict[str, tuple[int, int]], visited: set[str], current: str) -> str:
    width = max(x for x, _ in where.values()) + _W
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="diagram" viewBox="0 0 {width} {60 + _H + _BOX_H}" role="img" '
        'aria-label="state machine with this transfer\'s path">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto">'
        '<path d="M0,0 L10,5 L0,10 z" fill="context-stroke"/></marker></defs>',
    ]
    pairs: dict[tuple[str, str], list[DiagramEdge]] = {}
    for edge in edges:
        pairs.setdefault((edge.source, edge.target), []).append(edge)
    for (a, b), group in sorted(pairs.items()):
        parts.append(_edge(where[a], where[b], group))
    for state in states:
        x, y = where[state]
        cls = f"state s-{state}" + (" current" if state == current else " visited" if state in visited else "")
        parts.append(
            f'<g class="{cls}"><rect x="{x}" y="{y}" width="{_BOX_W}" height="{_BOX_H}" rx="8"/>'
            f'<text x="{x + _BOX_W // 2}" y="{y + 23}" text-anchor="middle">{escape(state)}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _edge(a: tuple[int, int], b: tuple[int, int], group: list[DiagramEdge]) -> str:
    count = sum(e.taken for e in group)
    cls = "edge taken" if count else "edge"
    title = escape(", ".join(f"{e.trigger}" + (f" x{e.taken}" if e.taken else "") for e in group))
    label = escape(f"x{count}") if count else ""
    if a == b:  # a self-loop (syncing -chunk_committed-> syncing) above the box
        x, y = a[0] + _BOX_W // 2, a[1]
        d = f"M{x - 18},{y} C{x - 30},{y - 22} {x + 30},{y - 22} {x + 18},{y}"
        tx, ty = x + 40, y - 14
    else:
        (x1, y1), (x2, y2) = _anchor(a, b), _anchor(b, a)
        d = f"M{x1},{y1} L{x2},{y2}"
        tx, ty = (x1 + x2) // 2, (y1 + y2) // 2 - 4
    text = f'<text class="count" x="{tx}" y="{ty}" text-anchor="middle">{label}</text>' if label else ""
    return f'<g class="{cls}"><title>{title}</title><path d="{d}" marker-end="url(#arrow)"/>{text}</g>'


def _anchor(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    """Where an edge from box `a` towards box `b` leaves `a`: its right, left, top or bottom side."""
    ax, ay = a
    bx, by = b
    if ay == by:
        return (ax + _BOX_W, ay + _BOX_H // 2) if bx > ax else (ax, ay + _BOX_H // 2)
    return (ax + _BOX_W // 2, ay + _BOX_H) if by > ay else (ax + _BOX_W // 2, ay)
