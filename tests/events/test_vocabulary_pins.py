"""The vocabulary is append-only: every name pinned in vocabulary_v1.json must still exist.

Pinned: the event tags (REGISTRY keys) with the field paths of each payload (nested
structs included, since old records must still decode), and the values of State,
Trigger, ReasonCode, Mode, Durability, ErrorCode and the closed sets recorded in event
fields (NegotiationOutcome, FaultKind, CheckStatus). Adding is fine; renaming or removing
fails, naming what vanished. To extend the pin after adding names, append them to the
JSON by hand or print the current vocabulary with
`python -m tests.events.test_vocabulary_pins` (the venv's python, from the
repository root) and merge — never drop an entry.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from enum import Enum
from pathlib import Path
from typing import Any

import msgspec
import pytest

from events.catalog import REGISTRY
from events.errors import ErrorCode
from events.payloads import Event
from events.vocabulary import CheckStatus, Durability, FaultKind, Mode, NegotiationOutcome, ReasonCode, State, Trigger

PIN_FILE = Path(__file__).with_name("vocabulary_v1.json")
ENUMS: dict[str, type[Enum]] = {
    "State": State,
    "Trigger": Trigger,
    "ReasonCode": ReasonCode,
    "Mode": Mode,
    "Durability": Durability,
    "ErrorCode": ErrorCode,
    "NegotiationOutcome": NegotiationOutcome,
    "FaultKind": FaultKind,
    "CheckStatus": CheckStatus,
}


# --- the current vocabulary, as the pin spells it ----------------------------------


def field_paths(cls: type[msgspec.Struct]) -> dict[str, bool]:
    """Every field path of a payload (`intent.requested[].id`), mapped to whether it is required."""
    info = msgspec.inspect.type_info(cls)
    assert isinstance(info, msgspec.inspect.StructType)
    paths: dict[str, bool] = {}
    _walk_struct(info, "", paths)
    return paths


def _walk_struct(info: msgspec.inspect.StructType, prefix: str, paths: dict[str, bool]) -> None:
    for field in info.fields:
        path = f"{prefix}{field.encode_name}"
        paths[path] = field.required
        _walk_type(field.type, path, paths)


def _walk_type(info: msgspec.inspect.Type, path: str, paths: dict[str, bool]) -> None:
    if isinstance(info, msgspec.inspect.StructType):
        _walk_struct(info, f"{path}.", paths)
    elif isinstance(info, msgspec.inspect.UnionType):
        for member in info.types:
            _walk_type(member, path, paths)
    elif isinstance(info, msgspec.inspect.ListType | msgspec.inspect.SetType | msgspec.inspect.VarTupleType):
        _walk_type(info.item_type, f"{path}[]", paths)
    elif isinstance(info, msgspec.inspect.DictType):
        _walk_type(info.value_type, f"{path}{{}}", paths)


def current_vocabulary() -> dict[str, Any]:
    """The vocabulary as it is now, in the pin file's shape."""
    vocabulary: dict[str, Any] = {
        "event_types": {tag: list(field_paths(cls)) for tag, cls in sorted(REGISTRY.items())},
    }
    for name, enum in ENUMS.items():
        vocabulary[name] = [member.value for member in enum]
    return vocabulary


def load_pin() -> dict[str, Any]:
    pin: dict[str, Any] = json.loads(PIN_FILE.read_text(encoding="utf-8"))
    return pin


def vanished(pinned: Iterable[str], current: Iterable[str]) -> list[str]:
    """The pinned names that are no longer current, in pin order."""
    now = set(current)
    return [name for name in pinned if name not in now]


def vanished_fields(pinned: Mapping[str, list[str]], current: Mapping[str, Iterable[str]]) -> list[str]:
    """`tag.field` for every pinned field path of a still-registered type that is gone."""
    gone: list[str] = []
    for tag, paths in pinned.items():
        if tag in current:
            gone += [f"{tag}.{path}" for path in vanished(paths, current[tag])]
    return gone


# --- the pin itself ----------------------------------------------------------------


def test_pin_file_covers_every_pinned_section() -> None:
    """The pin holds a non-empty list for the event types and for each pinned enum (an emptied pin would pin nothing)."""
    pin = load_pin()
    assert set(pin) == {"event_types", *ENUMS}
    for section, names in pin.items():
        assert names, f"pin section {section} is empty"
        assert len(set(names)) == len(names), f"pin section {section} repeats a name"
    for tag, paths in pin["event_types"].items():
        assert paths, f"event type {tag} pins no field"


def test_pin_includes_the_reference_names() -> None:
    """The pin is not a trimmed copy: it holds the header/repair/transition tags and the reference vocabulary anchors."""
    pin = load_pin()
    assert {"log_created", "log_repaired", "transition"} <= set(pin["event_types"])
    assert {"idle", "completed", "failed_closed"} <= set(pin["State"])
    assert {"start", "retry_budget_exceeded"} <= set(pin["Trigger"])
    assert {"retry_exhausted", "unsupported_capability"} <= set(pin["ReasonCode"])
    assert {"corrupt_record", "torn_tail"} <= set(pin["ErrorCode"])


# --- names are forever ---------------------------------------------------------------


def test_no_pinned_event_tag_vanished() -> None:
    """Every pinned event tag is still registered (a renamed or removed tag would orphan old records)."""
    gone = vanished(load_pin()["event_types"], REGISTRY)
    assert not gone, f"event types removed or renamed since the pin: {gone}"


@pytest.mark.parametrize("enum_name", list(ENUMS))
def test_no_pinned_enum_value_vanished(enum_name: str) -> None:
    """Every pinned value of the enum is still a member value (adding values passes)."""
    current = [member.value for member in ENUMS[enum_name]]
    gone = vanished(load_pin()[enum_name], current)
    assert not gone, f"{enum_name} values removed or renamed since the pin: {gone}"


def test_no_pinned_field_vanished() -> None:
    """Every pinned field path of every pinned event type is still present (fields are added, never removed or renamed)."""
    current = {tag: field_paths(cls) for tag, cls in REGISTRY.items()}
    gone = vanished_fields(load_pin()["event_types"], current)
    assert not gone, f"event fields removed or renamed since the pin: {gone}"


def test_fields_added_since_the_pin_have_defaults() -> None:
    """A field path not in the pin is optional (or sits under a new optional field), so records written before it still decode."""
    pinned: dict[str, list[str]] = load_pin()["event_types"]
    problems: list[str] = []
    for tag, cls in REGISTRY.items():
        if tag not in pinned:
            continue
        old = set(pinned[tag])
        for path, required in field_paths(cls).items():
            parent = path.rsplit(".", 1)[0].removesuffix("[]").removesuffix("{}") if "." in path else None
            if path not in old and required and (parent is None or parent in old):
                problems.append(f"{tag}.{path}")
    assert not problems, f"fields added since the pin without a default: {problems}"


def test_payload_types_forbid_unknown_fields() -> None:
    """Every registered payload refuses unknown fields, so the pinned field list is the whole wire shape."""
    lax = []
    for tag, cls in REGISTRY.items():
        info = msgspec.inspect.type_info(cls)
        if not isinstance(info, msgspec.inspect.StructType) or not info.forbid_unknown_fields:
            lax.append(tag)
    assert not lax, f"payloads that accept unknown fields: {lax}"
    assert all(issubclass(cls, Event) for cls in REGISTRY.values())


# --- the checks can fail -------------------------------------------------------------


def test_vanished_names_what_is_gone() -> None:
    """The comparison reports removed and renamed names, and passes additions."""
    assert vanished(["idle", "syncing", "completed"], ["idle", "completed", "paused"]) == ["syncing"]
    assert vanished(["a"], ["a", "b"]) == []
    pinned = {"transition": ["attempt", "trigger"], "gone_type": ["x"]}
    current = {"transition": ["attempt", "trigger_name", "extra"]}
    assert vanished_fields(pinned, current) == ["transition.trigger"]


def test_current_vocabulary_contains_the_pin() -> None:
    """The current vocabulary is a superset of the pin in every section (the whole-pin view of the checks above)."""
    pin, now = load_pin(), current_vocabulary()
    assert not vanished(pin["event_types"], now["event_types"])
    for name in ENUMS:
        assert not vanished(pin[name], now[name]), name


if __name__ == "__main__":
    print(json.dumps(current_vocabulary(), indent=2))
