"""Event payloads: frozen msgspec Structs, one per event type.

Each type is registered under its snake_case tag with `@event_type`; the tag is the
record's `type` field. Schema evolution rules: a new field gets a default; a field is
never retyped or renamed; tags are forever (tests pin them).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, TypeVar

import msgspec

from events.strict_json import JsonInt
from events.vocabulary import Mode, ReasonCode, State, Trigger


class Event(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True, gc=False):
    """Base of every payload; `TYPE` is set by `@event_type`."""

    TYPE: ClassVar[str] = ""


E = TypeVar("E", bound=type[Event])

REGISTRY: dict[str, type[Event]] = {}


def event_type(tag: str) -> Callable[[E], E]:
    """Register a payload class under `tag` (snake_case, unique, forever)."""

    def register(cls: E) -> E:
        if not tag or not tag.replace("_", "").isalnum() or tag != tag.lower():
            raise ValueError(f"event tag {tag!r} is not snake_case")
        if tag in REGISTRY:
            raise ValueError(f"event tag {tag!r} registered twice")
        cls.TYPE = tag
        REGISTRY[tag] = cls
        return cls

    return register


# --- log maintenance ---------------------------------------------------------------


@event_type("log_created")
class LogCreated(Event, frozen=True):
    """The header record: first line of every log, names the log and its schema."""

    log_id: str
    schema: str


@event_type("log_repaired")
class LogRepaired(Event, frozen=True):
    """A torn final line was moved to a quarantine file and cut from the log."""

    offset: JsonInt  # byte offset where the torn bytes began
    length: JsonInt
    torn_digest: str  # blake3 of the quarantined bytes
    quarantine: str  # file name, relative to the log's directory
    reason: str  # no_newline | digest_mismatch | undecodable | too_long


@event_type("tail_forced")
class TailForced(Event, frozen=True):
    """The operator's explicit `asup log repair --force-tail`: the log was cut back to its
    last valid record although the damage was not a torn tail (or acknowledged records were
    already gone, a rollback). The bytes cut are kept in `quarantine` ("" when none were left)."""

    offset: JsonInt  # the log's size after the cut
    length: JsonInt  # bytes cut (and quarantined)
    torn_digest: str
    quarantine: str
    first_seq_cut: JsonInt  # the seqs no longer in the log: first_seq_cut .. last_seq_cut (0, 0: none known)
    last_seq_cut: JsonInt
    reason: str  # what was wrong: the first problem's reason, or "rollback"


LOG_EVENTS = (LogCreated, LogRepaired, TailForced)  # the log's own records (stream `$log`), not a transfer's


# --- adapter ---------------------------------------------------------------------


@event_type("transition")
class Transition(Event, frozen=True):
    """One state change of a transfer: the reference's transition record + telemetry."""

    transfer_id: str
    from_state: State
    trigger: Trigger
    to_state: State
    attempt: JsonInt
    committed_cursor: JsonInt
    reason_code: ReasonCode | None = None
    artifact_id: str = ""
    artifact_class: str = ""
    mode: Mode = Mode.STRICT
    seed: JsonInt = 0
    replay_command: str = ""
    env_fingerprint: str = ""
    duration_ms: float = 0.0
    rejected_trigger: Trigger | None = None  # set when trigger is trigger_rejected: what was refused
