"""Security-relevant actions in the audit log: who did what to which person or key, and when.

An event is a row of the same table and the same per-organization chain as the verify/identify rows
(``VerificationAttempt`` with mode ``event``, an ``action`` and canonical-JSON ``details``), so one
``verify_chain`` and one published head cover both. Write events from the services, inside the
transaction of the change they record: the change and its row commit together or not at all.

This module must not import faceid.flows (the flows import it).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from faceid.audit import append_attempt, clean_client_ip, clean_text
from faceid.models import AttemptMode, AuditAction, Person, VerificationAttempt
from tenants.exceptions import ensure_same_organization
from tenants.models import ApiKey, Organization

# The event names (enroll, template_delete, person_erase, ...); one class with the model's choices.
Action = AuditAction

# Canonical details beyond this are refused rather than truncated (a cut JSON text is not JSON).
MAX_DETAILS_CHARS = 8000


@dataclass(frozen=True)
class Actor:
    """Who acted: an API key, a console/admin user, or neither (a management command, the system)."""

    api_key: ApiKey | None = None
    user: Any = None
    client_ip: str | None = None


def _plain(value: Any) -> Any:
    """JSON-safe form of a details value: the same input gives the same canonical text."""
    if value is None or isinstance(value, bool | int | str):
        return value.replace("\x00", "") if isinstance(value, str) else value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_plain(v) for v in value]
        return sorted(items, key=repr) if isinstance(value, set | frozenset) else items
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return str(value)


def canonical_details(details: dict[str, Any] | None) -> str:
    """Sorted keys, no whitespace, ASCII only: the text stored in ``details`` and hashed."""
    if not details:
        return ""
    text = json.dumps(_plain(details), sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    if len(text) > MAX_DETAILS_CHARS:
        raise ValueError(f"event details too long ({len(text)} > {MAX_DETAILS_CHARS} characters)")
    return text


def event_details(row: VerificationAttempt) -> dict[str, Any]:
    """The details of an event row as a dict ({} for verify/identify rows)."""
    return json.loads(row.details) if row.details else {}


def record_event(
    organization: Organization,
    *,
    action: str,
    actor: Actor | None = None,
    person: Person | None = None,
    details: dict[str, Any] | None = None,
) -> VerificationAttempt:
    """Append one event to the organization's audit chain and return its row."""
    if action not in Action.values:
        raise ValueError(f"unknown audit action {action!r}")
    actor = actor or Actor()
    ensure_same_organization(organization.id, actor.api_key, person)
    row = VerificationAttempt(
        organization=organization,
        mode=AttemptMode.EVENT,
        decision="",
        action=action,
        details=canonical_details(details),
        api_key=actor.api_key,
        user=actor.user if getattr(actor.user, "pk", None) is not None else None,
        claimed_person=person,
        claimed_external_id=clean_text(person.external_id if person is not None else "", 128),
        client_ip=clean_client_ip(actor.client_ip),
    )
    return append_attempt(row)
