"""Schema evolution: the record shapes this asup reads, and how older ones reach them.

The vocabulary (event types, states, triggers, reason codes) grows without a new `v`. A
new or changed field of a record type bumps `v` (`SCHEMA_VERSION`), and that step gets an
upcaster per changed type: a plain function from the `data` object of a record of that
type at `v` to its `data` at `v + 1`, registered as `UPCASTERS[v][tag]`. A reader lifts an
older record through every step up to the current version, then decodes it typed. A
record at the current `v` pays nothing for this: the one typed decoder takes it as it is.

A record whose digest holds but that this asup cannot read — a newer `v`, an unknown
type, an unknown enum code or an unknown field — is `schema_unsupported` (a newer asup
wrote it), never corruption: its bytes are what some writer meant. Anything else a
digest-valid line gets wrong (a missing field, a wrong type, not JSON) is `undecodable`.
"""

from __future__ import annotations

import functools
import operator
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

import msgspec

from events.catalog import REGISTRY
from events.errors import DECODE_ERRORS, NOT_JSON
from events.payloads import Event
from events.record import SCHEMA_VERSION, LineFault, Record, check_line, encode_payload, record_class
from events.strict_json import MAX_DEPTH, depth_exceeded, explain, field_of

Upcaster: TypeAlias = Callable[[dict[str, Any]], dict[str, Any]]
"""The `data` object of one record type at `v` -> the same record's `data` at `v + 1`."""


def _intent_paths(data: dict[str, Any]) -> dict[str, Any]:
    """v1 -> v2: the intent gained its absolute source and target paths; a v1 writer knew
    neither ("", as a library caller records)."""
    intent = data["intent"]
    return {**data, "intent": {**intent, "source_path": "", "target_path": ""}}


# UPCASTERS[v][tag]: the step of `tag` from v to v + 1; a type a step does not name is
# unchanged by it.
UPCASTERS: dict[int, dict[str, Upcaster]] = {1: {"intent_recorded": _intent_paths}}

UPGRADE = "written by a newer asup? upgrade asup"


class Schema:
    """The record classes of one schema version, its typed decoder and the upcaster chain
    that lifts every older version to it."""

    def __init__(self, version: int, payloads: Mapping[str, type[Event]], upcasters: Mapping[int, Mapping[str, Upcaster]]) -> None:
        for step, lifts in upcasters.items():
            if not 1 <= step < version:
                raise ValueError(f"an upcaster from v{step} cannot lead to v{version}")
            if unknown := sorted(set(lifts) - set(payloads)):
                raise ValueError(f"upcasters for unknown event types: {unknown}")
        self.version = version
        self.payloads = dict(payloads)
        self.upcasters = {step: dict(lifts) for step, lifts in upcasters.items()}
        self.record_classes = {tag: record_class(tag, payload) for tag, payload in payloads.items()}
        self.union: Any = functools.reduce(operator.or_, self.record_classes.values())
        self.decoder: msgspec.json.Decoder[Any] = msgspec.json.Decoder(self.union)

    def decode(self, body: bytes) -> Record | LineFault:
        """The typed record of a line whose digest holds, lifted to this version; or why not.

        Its depth is bounded first: no record nests near MAX_DEPTH, and the untyped decode
        of a refused line would otherwise recurse as deep as the line says."""
        deep = depth_exceeded(body)
        if deep is not None:
            return LineFault("too_deep", f"nests deeper than the {MAX_DEPTH}-level limit (at byte {deep})")
        try:
            record: Record = self.decoder.decode(body)
        except msgspec.ValidationError as exc:
            return self._refused(body, str(exc))
        except NOT_JSON as exc:
            return LineFault("undecodable", f"not JSON: {explain(body, exc)}")
        if record.v == self.version or record.v < 1:
            return record  # below 1 is no version at all: the chain rules name it
        if record.v > self.version:
            return self._newer(record.v)
        return self._lift(msgspec.json.decode(body, type=dict[str, Any]), record.v)

    def _refused(self, body: bytes, message: str) -> Record | LineFault:
        """A line the typed decoder refused: another version is judged as that version."""
        raw = _object(body)
        version = None if raw is None else raw.get("v")
        if raw is not None and type(version) is int and version != self.version:
            if version > self.version:
                return self._newer(version)
            if version >= 1:
                return self._lift(raw, version)
        return self._refusal(message)

    def _lift(self, raw: dict[str, Any], version: int) -> Record | LineFault:
        """An older record: its `data` through each step's upcaster, then the typed decode."""
        tag, data = raw.get("type"), raw.get("data")
        if isinstance(tag, str) and isinstance(data, dict):
            for step in range(version, self.version):
                lift = self.upcasters.get(step, {}).get(tag)
                try:
                    data = data if lift is None else lift(data)
                except (KeyError, TypeError, ValueError) as exc:
                    return LineFault("undecodable", f"a v{step} {tag} record does not lift to v{step + 1}: {exc!r}", "$.data")
            raw = {**raw, "data": data}
        try:
            record: Record = msgspec.convert(raw, self.union)
        except msgspec.ValidationError as exc:
            return self._refusal(str(exc))
        return record

    def _newer(self, version: int) -> LineFault:
        message = f"record schema v{version} is newer than this asup reads (v{self.version}): {UPGRADE}"
        return LineFault("schema_unsupported", message, "$.v")

    def _refusal(self, message: str) -> LineFault:
        """What the typed decoder's `message` means: something a newer asup may write, or damage."""
        field = field_of(message)
        if message.startswith("Invalid value") and field == "$.type":
            known = ", ".join(sorted(self.payloads))
            return LineFault("schema_unsupported", f"{message} (unknown event type; known: {known}): {UPGRADE}", field)
        if message.startswith(("Object contains unknown field", "Invalid enum value")):
            return LineFault("schema_unsupported", f"{message}: {UPGRADE}", field)
        return LineFault("undecodable", message, field)


def _object(body: bytes) -> dict[str, Any] | None:
    try:
        return msgspec.json.decode(body, type=dict[str, Any])
    except DECODE_ERRORS:
        return None


SCHEMA = Schema(SCHEMA_VERSION, REGISTRY, UPCASTERS)
RECORD_CLASSES: dict[type[Event], type[Record]] = {REGISTRY[tag]: cls for tag, cls in SCHEMA.record_classes.items()}
DECODER = SCHEMA.decoder


def decode_line(body: bytes, complete: bool = True, schema: Schema = SCHEMA) -> Record | LineFault:
    """A checked line's record, or why it is not one (its bytes are never trusted)."""
    fault = check_line(body, complete)
    return schema.decode(body) if fault is None else fault


def payload_of(line: bytes) -> bytes | None:
    """The encoded `data` of a stored line (for comparing a retried event), or None when
    the line is not a valid record."""
    outcome = decode_line(line.rstrip(b"\n"))
    return None if isinstance(outcome, LineFault) else encode_payload(outcome.data)
