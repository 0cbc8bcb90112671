"""Capability negotiation: a transfer's requested primitives against the matrix (what the
artifact class and mode allow) and the adapter profile (what the adapter offers).

- a requested primitive the matrix does not allow, or the adapter does not offer, or one
  the class requires that the request leaves out -> `unsupported_capability`;
- offered or allowed at another version, or with a parameter that does not fit
  (an exact value differs; a value outside `NAME_min`..`NAME_max`) -> `capability_mismatch`.
Unsupported wins over mismatch. Both are decided before any byte moves.
"""

from __future__ import annotations

from engine.contracts import AdapterProfile, CapabilityMatrix, ParamValue
from events.observations import CapabilityNegotiated, Intent, PrimitiveRequest
from events.vocabulary import NegotiationOutcome


def default_requests(matrix: CapabilityMatrix, artifact_class: str, chunk_size: int) -> list[PrimitiveRequest]:
    """What a transfer of this class asks for when the intent names nothing."""
    entry = matrix.entry(artifact_class)
    if entry is None:
        return []
    requests = []
    for primitive in entry.asupersync_primitives:
        params: dict[str, ParamValue] = {k: v for k, v in primitive.params.items() if not k.endswith(("_min", "_max"))}
        if any(k.startswith("chunk_size") for k in primitive.params):
            params["chunk_size"] = chunk_size
        requests.append(PrimitiveRequest(primitive.id, primitive.version, params))
    return requests


def param_problems(request: PrimitiveRequest, version: int, params: dict[str, ParamValue], who: str) -> list[str]:
    problems = []
    if request.version != version:
        problems.append(f"{request.id}: {who} has version {version}, requested {request.version}")
    for key, wanted in sorted(request.params.items()):
        if key in params:
            if params[key] != wanted:
                problems.append(f"{request.id}: {who} has {key}={params[key]!r}, requested {wanted!r}")
            continue
        low, high = params.get(f"{key}_min"), params.get(f"{key}_max")
        if low is None and high is None:
            problems.append(f"{request.id}: {who} has no parameter {key}")
        elif not isinstance(wanted, int) or (isinstance(low, int) and wanted < low) or (isinstance(high, int) and wanted > high):
            problems.append(f"{request.id}: {who} allows {key} in [{low}, {high}], requested {wanted!r}")
    return problems


def negotiate(intent: Intent, matrix: CapabilityMatrix, profile: AdapterProfile, at_ns: int = 0) -> CapabilityNegotiated:
    entry = matrix.entry(intent.artifact_class)
    allowed_by_id = {p.id: p for p in entry.asupersync_primitives} if entry else {}
    offered: dict[str, PrimitiveRequest | None] = {}
    allowed: dict[str, PrimitiveRequest | None] = {}
    unsupported: list[str] = []
    mismatched: list[str] = []
    if entry is None:
        unsupported.append(f"artifact class {intent.artifact_class!r} is not in the capability matrix")
    requested_ids = {r.id for r in intent.requested}
    for primitive_id in sorted(set(allowed_by_id) - requested_ids):
        unsupported.append(f"{primitive_id}: required by {intent.artifact_class} but not requested")
    for request in intent.requested:
        rule = allowed_by_id.get(request.id)
        offer = profile.primitives.get(request.id)
        allowed[request.id] = PrimitiveRequest(rule.id, rule.version, dict(rule.params)) if rule else None
        offered[request.id] = PrimitiveRequest(request.id, offer.version, dict(offer.params)) if offer else None
        if rule is None:
            unsupported.append(f"{request.id}: not allowed for {intent.artifact_class} in {intent.mode} mode")
        if offer is None:
            unsupported.append(f"{request.id}: adapter {profile.name!r} does not offer it")
        if rule is not None:
            mismatched += param_problems(request, rule.version, rule.params, "the matrix")
        if offer is not None:
            mismatched += param_problems(request, offer.version, offer.params, f"adapter {profile.name!r}")
    if unsupported:
        outcome, detail = NegotiationOutcome.UNSUPPORTED_CAPABILITY, unsupported + mismatched
    elif mismatched:
        outcome, detail = NegotiationOutcome.CAPABILITY_MISMATCH, mismatched
    else:
        outcome, detail = NegotiationOutcome.ACCEPTED, []
    return CapabilityNegotiated(
        outcome=outcome, requested=list(intent.requested), offered=offered, allowed=allowed, detail=detail, at_ns=at_ns
    )
