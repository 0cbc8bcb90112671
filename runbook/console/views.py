"""What the console shows, as plain structs: the model builds them, the web layer renders them.

Every struct is msgspec-encodable (the JSON endpoints are `msgspec.json.encode` of them), so
the HTML pages and the machine views cannot disagree. `log` is always the index of the log
in the order `asup ui LOG...` was given; `key` is `"{log}:{transfer_id}"`, the one way a
page names a transfer (two logs may hold the same transfer id).
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

import msgspec

SortKey = Literal["transfer", "state", "reason", "attempts", "bytes", "duration", "last_seq", "started"]


class Query(msgspec.Struct, frozen=True):
    """A transfers page request; empty strings mean "any"."""

    state: str = ""
    reason: str = ""
    artifact_class: str = ""
    text: str = ""  # a substring of the transfer id, artifact id, target or cause
    sort: SortKey = "last_seq"
    descending: bool = True
    page: int = 1  # 1-based
    size: int = 50  # at most 500


class TransferRow(msgspec.Struct, frozen=True):
    key: str
    log: int
    transfer_id: str
    artifact_id: str
    artifact_class: str
    state: str
    reason_code: str  # "" none
    cause: str  # one line, engine.causes ("" none)
    attempts: int
    bytes_committed: int
    size: int
    duration_ms: float
    stale: bool  # unfinished and nobody holds its lease (engine.liveness)
    suspended: bool
    last_seq: int
    started: str


class Page(msgspec.Struct, frozen=True):
    rows: list[TransferRow]
    total: int  # rows matching the query (all pages)
    page: int
    pages: int
    by_state: dict[str, int]  # over every transfer, not only the matching ones
    by_reason: dict[str, int]
    classes: list[str]  # artifact classes seen (the filter's choices)
    events: int  # records folded so far, over every log
    logs: list[str]  # each log as given


class TimelineEntry(msgspec.Struct, frozen=True):
    seq: int
    ts: str
    type: str
    group: str  # "transition", "observation", "log": the timeline's grouping
    summary: str  # one line: "syncing -chunk_committed-> syncing", "chunk_written 3/8", ...
    from_state: str = ""
    to_state: str = ""
    trigger: str = ""
    reason_code: str = ""
    since_previous_ms: float = 0.0  # wall time since the stream's previous record (from ts)
    digest: str = ""  # the record's `h`
    data: dict[str, Any] = msgspec.field(default_factory=dict)  # the payload, for the expandable row


class DiagramEdge(msgspec.Struct, frozen=True):
    source: str
    target: str
    trigger: str
    taken: int  # how many times this transfer took it (0: not on its path)


class Diagram(msgspec.Struct, frozen=True):
    """The contract's state machine (engine/contract) with this transfer's path on it."""

    states: list[str]
    terminal: list[str]
    edges: list[DiagramEdge]
    path: list[str]  # the states visited, in order
    current: str
    svg: str  # a self-contained inline SVG (escaped text, no script), drawn server-side


class Command(msgspec.Struct, frozen=True):
    purpose: str  # "reproduce", "resume", "trace", "status"
    command: str  # shell-quoted, ready to paste


class TransferDetail(msgspec.Struct, frozen=True):
    row: TransferRow
    log_path: str
    timeline: list[TimelineEntry]
    diagram: Diagram
    next_step: str  # what an operator does now, one line (runbook section and command)
    section: str  # runbook section (A-D, "" none)
    level: str  # escalation level of its failure ("" none)
    commands: list[Command]


class FieldDiff(msgspec.Struct, frozen=True):
    field: str
    recorded: Any
    replayed: Any


class ReplayResult(msgspec.Struct, frozen=True):
    log: int
    transfer_id: str  # "" the whole log
    outcome: str  # "reproduced", "diverged", "impossible", or "problem"
    transfers: int
    reproduced: int
    first_divergent_transfer: str = ""
    first_divergent_seq: int = 0
    diff: list[FieldDiff] = msgspec.field(default_factory=list)
    leading: list[dict[str, Any]] = msgspec.field(default_factory=list)  # the transitions just before it
    problem: str = ""  # the log's damage where replay stopped, one line
    command: str = ""  # the CLI command that gives the same answer


class Evidence(msgspec.Struct, frozen=True):
    label: str  # "seq 41 blake3:…", "artifacts/…/pack.json"
    href: str  # a console link: the event (/event/{log}/{seq}) or the artifact (/artifact?path=…); "" none
    detail: dict[str, Any]


class ChecklistItem(msgspec.Struct, frozen=True):
    id: str
    title: str
    status: str  # pass, fail, pending
    reason: str
    evidence: list[Evidence]


class RuleView(msgspec.Struct, frozen=True):
    level: str
    rule: str
    detail: str
    evidence: list[Evidence]


class Health(msgspec.Struct, frozen=True):
    """The checklist and escalation at a glance (runbook sections 2 and 3)."""

    root: str  # "" no --root given: no operations log, checklist not derived
    verdict: str  # pass, fail, pending, or "" without a root
    checklist: list[ChecklistItem]
    level: str  # P0, P1, P2 or "" none
    rules: list[RuleView]
    problems: list[str]  # logs that do not verify, one line each
    pending: str = ""  # the escalation folds still catching up on a large log ("" judged in full)


class LiveRecord(msgspec.Struct, frozen=True):
    """One record as the live feed sends it (SSE `id:` is `seq`)."""

    log: int
    seq: int
    key: str  # the transfer's key ("" a record of no transfer, e.g. `$log`)
    entry: TimelineEntry
    row: TransferRow | None  # the transfer's row after this record


class ConsoleModel(Protocol):
    """What the web layer asks of the model. Implementations never write anything."""

    def transfers(self, query: Query) -> Page: ...
    def transfer(self, key: str) -> TransferDetail | None: ...
    def health(self) -> Health: ...
    def replay(self, log: int, transfer_id: str = "") -> ReplayResult: ...
    def event(self, log: int, seq: int) -> TimelineEntry | None: ...
