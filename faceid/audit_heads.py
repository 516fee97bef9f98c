"""Published chain heads: the audit chain's last (seq, hash) of each organization, signed and appended
to files outside the database, and the table checked against them.

The HMAC chain (faceid.audit) stops a database role from forging or altering rows, but not from
deleting the newest rows: a shorter chain is still a valid chain. Each published head pins the chain
up to its seq: ``check_heads`` reports a table whose head is behind a published head (truncation)
and a row whose hash differs from the published one (a rewrite).

Storage: settings.AUDIT_HEAD_DIR/org-<organization id>.jsonl, one JSON object per line, appended
(never rewritten), e.g.
  {"organization": 3, "slug": "acme", "seq": 1042, "hash": "<row_hash>",
   "published_at": "2025-01-01T00:00:00.000000Z", "signature": "<hex>"}
``signature`` is HMAC-SHA256, under a key derived from AUDIT_HMAC_KEY for heads only, of the
canonical JSON of the other fields, so a line written without the key is reported as forged. Mount
the directory from storage the database host and role cannot write (another host, an object store
synced from it, a WORM bucket): a head is only as safe as the place it is kept.

Scheduled by Celery beat (task ``faceid.audit_heads.publish_heads``, queue ``default``) and by hand
with ``manage.py publish_audit_heads``. A head is published only for a chain that verifies, and only
when it moved since the last line.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from celery import shared_task
from django.conf import settings

from faceid.audit import derived_key, verify_chain
from faceid.models import VerificationAttempt
from tenants.models import Organization

logger = logging.getLogger("faceid.audit")
_SIGNED_FIELDS = ("organization", "slug", "seq", "hash", "published_at")


def head_dir() -> Path:
    return Path(settings.AUDIT_HEAD_DIR)


def head_file(organization: Organization) -> Path:
    return head_dir() / f"org-{organization.pk}.jsonl"


def sign_head(head: dict[str, Any]) -> str:
    payload = json.dumps(
        {name: head.get(name) for name in _SIGNED_FIELDS}, sort_keys=True, separators=(",", ":")
    ).encode("ascii")
    return hmac.new(derived_key("heads"), payload, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class PublishedHeads:
    heads: list[dict[str, Any]]  # lines whose signature verifies, in file order
    problems: list[str]  # lines that do not parse or whose signature does not verify


def read_heads(organization: Organization) -> PublishedHeads:
    path = head_file(organization)
    heads: list[dict[str, Any]] = []
    problems: list[str] = []
    if not path.exists():
        return PublishedHeads(heads, problems)
    with path.open(encoding="ascii", errors="replace") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                head = json.loads(line)
                valid = (
                    isinstance(head, dict)
                    and head.get("organization") == organization.pk
                    and isinstance(head.get("seq"), int)
                    and hmac.compare_digest(str(head.get("signature", "")), sign_head(head))
                )
            except (ValueError, TypeError):
                valid = False
            if valid:
                heads.append(head)
            else:
                problems.append(f"{path.name} line {number}: not a head signed with AUDIT_HMAC_KEY (forged?)")
    return PublishedHeads(heads, problems)


def publish_head(organization: Organization) -> dict[str, Any] | None:
    """Append the organization's current head to its file; None when the chain is empty, unchanged
    since the last published head, or broken (never pin a broken chain: it is logged instead)."""
    last = (
        VerificationAttempt.objects.filter(organization=organization)
        .order_by("-seq")
        .values("seq", "row_hash")
        .first()
    )
    if last is None:
        return None
    published = read_heads(organization).heads
    if published and published[-1]["seq"] == last["seq"] and published[-1]["hash"] == last["row_hash"]:
        return None
    report = verify_chain(organization)
    if not report.ok:
        logger.error("audit chain of %s is broken, head not published: %s", organization.slug, report)
        return None
    head: dict[str, Any] = {
        "organization": organization.pk,
        "slug": organization.slug,
        "seq": report.head_seq,
        "hash": report.head_hash,
        "published_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    head["signature"] = sign_head(head)
    path = head_file(organization)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    # O_APPEND: concurrent publishers add whole lines and never overwrite one.
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (json.dumps(head, sort_keys=True, separators=(",", ":")) + "\n").encode("ascii"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return head


def publish_heads(organizations: list[Organization] | None = None) -> int:
    """Publish the head of each organization (all by default); returns how many heads were written."""
    count = 0
    for organization in organizations if organizations is not None else Organization.objects.order_by("pk"):
        if publish_head(organization) is not None:
            count += 1
    return count


@shared_task(name="faceid.audit_heads.publish_heads", ignore_result=True)
def publish_heads_task() -> int:
    return publish_heads()


@dataclass(frozen=True)
class HeadReport:
    ok: bool
    checked: int  # published heads found and checked
    problems: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        if self.ok:
            return (
                f"published heads: {self.checked} checked, all match" if self.checked else "no published head"
            )
        return "published heads: " + "; ".join(self.problems)


def check_heads(organization: Organization) -> HeadReport:
    """The table against every published head: truncation (the table ends before a published seq)
    and rewrites (a row's hash is not the published one)."""
    published = read_heads(organization)
    problems = list(published.problems)
    seqs = {head["seq"] for head in published.heads}
    rows = dict(
        VerificationAttempt.objects.filter(organization=organization, seq__in=seqs).values_list(
            "seq", "row_hash"
        )
    )
    table_head = (
        VerificationAttempt.objects.filter(organization=organization)
        .order_by("-seq")
        .values_list("seq", flat=True)
        .first()
        or 0
    )
    highest = max(seqs, default=0)
    if table_head < highest:
        problems.append(
            f"TRUNCATED: the table's head is seq {table_head}, behind the published head seq {highest} "
            "(rows were deleted at the end of the chain)"
        )
    for head in published.heads:
        stored = rows.get(head["seq"])
        if stored is not None and not hmac.compare_digest(stored, str(head["hash"])):
            problems.append(
                f"REWRITTEN: row seq {head['seq']} has hash {stored[:16]}..., "
                f"published {str(head['hash'])[:16]}... at {head['published_at']}"
            )
    return HeadReport(ok=not problems, checked=len(published.heads), problems=problems)
