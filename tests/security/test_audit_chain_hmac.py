# ruff: noqa: F811  (the foundation fixtures, imported, are redefined as test parameters)
"""The audit chain cannot be rewritten unnoticed by someone who holds the database but not the key:
HMAC rows, version downgrade refused, published heads catching truncation and rewrites."""

import hashlib
import json

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction

from faceid import audit, audit_heads
from faceid.audit import AUDIT_TABLE, canonical_bytes, compute_row_hash, verify_chain
from faceid.models import VerificationAttempt
from tests.plugins.factories import tamper


def _forge_rest_of_chain(org, from_seq: int, make_hash) -> None:
    """Recompute row_hash/prev_hash from ``from_seq`` on, as a forger holding only the database would."""
    rows = list(VerificationAttempt.objects.filter(organization=org).order_by("seq"))
    prev = rows[from_seq - 2].row_hash if from_seq > 1 else audit.GENESIS_HASH
    for row in rows[from_seq - 1 :]:
        row.prev_hash = prev
        new_hash = make_hash(row)
        tamper(
            f"UPDATE {AUDIT_TABLE} SET decision = %s, prev_hash = %s, row_hash = %s, hash_version = %s "
            "WHERE id = %s",
            [row.decision, prev, new_hash, row.hash_version, row.pk],
        )
        prev = new_hash


def test_new_rows_are_hmac_under_the_configured_key(org, record, settings):
    row = record(org)
    assert row.hash_version == 2
    assert row.row_hash != hashlib.sha256(canonical_bytes(row)).hexdigest()  # not a plain SHA-256
    settings.AUDIT_HMAC_KEY = "another key"
    assert compute_row_hash(row) != row.row_hash
    report = verify_chain(org)
    assert not report.ok and "altered" in report.reason


def test_a_chain_recomputed_without_the_key_is_reported(org, record):
    for _ in range(4):
        record(org)
    # The forger changes a reject into an accept and recomputes every later hash as SHA-256 (v2
    # contents), or downgrades the rows to version 1: neither verifies.
    with transaction.atomic():
        VerificationAttempt.objects.filter(organization=org, seq=2)  # nothing changes through the ORM
    tamper(f"UPDATE {AUDIT_TABLE} SET decision = 'accept' WHERE organization_id = %s AND seq = 2", [org.pk])

    def sha_v2(row):
        return hashlib.sha256(canonical_bytes(row)).hexdigest()

    _forge_rest_of_chain(org, 2, sha_v2)
    report = verify_chain(org)
    assert (report.ok, report.first_broken_seq) == (False, 2) and "altered" in report.reason


def test_a_downgrade_to_unkeyed_version_1_rows_is_reported(org, record):
    for _ in range(3):
        record(org)

    def sha_v1(row):
        row.hash_version = 1
        return hashlib.sha256(canonical_bytes(row, 1)).hexdigest()

    _forge_rest_of_chain(org, 3, sha_v1)
    report = verify_chain(org)
    assert (report.ok, report.first_broken_seq) == (
        False,
        3,
    ) and "hash version 1 after version 2" in report.reason


def test_legacy_version_1_rows_still_verify_before_keyed_rows(org, record):
    for _ in range(2):
        record(org)

    def sha_v1(row):
        row.hash_version = 1
        return hashlib.sha256(canonical_bytes(row, 1)).hexdigest()

    _forge_rest_of_chain(org, 1, sha_v1)  # as rows written before migration 0005 are
    record(org)
    report = verify_chain(org)
    assert report.ok and report.checked == 3


def test_published_heads_catch_truncation_and_rewrites(org, other_org, record, capsys):
    rows = [record(org) for _ in range(4)]
    record(other_org)
    call_command("publish_audit_heads")
    assert "2 head(s) published" in capsys.readouterr().out
    assert audit_heads.publish_heads() == 0  # nothing moved: no new line
    heads = audit_heads.read_heads(org)
    assert [(h["seq"], h["hash"]) for h in heads.heads] == [(4, rows[-1].row_hash)] and not heads.problems

    call_command("verify_audit_chain", org.slug)
    assert "published heads: 1 checked, all match" in capsys.readouterr().out

    # Delete the two newest rows: what is left is a valid, shorter chain...
    tamper(f"DELETE FROM {AUDIT_TABLE} WHERE organization_id = %s AND seq > 2", [org.pk])
    assert verify_chain(org).ok
    # ...which the published head exposes.
    report = audit_heads.check_heads(org)
    assert (
        not report.ok
        and "TRUNCATED" in str(report)
        and "seq 2, behind the published head seq 4" in str(report)
    )
    with pytest.raises(CommandError):
        call_command("verify_audit_chain", org.slug)
    assert "TRUNCATED" in capsys.readouterr().out
    assert audit_heads.check_heads(other_org).ok


def test_a_rewritten_published_row_is_reported_and_forged_head_lines_are_refused(org, record, settings):
    rows = [record(org) for _ in range(2)]
    audit_heads.publish_heads()
    tamper(f"UPDATE {AUDIT_TABLE} SET row_hash = %s WHERE id = %s", ["f" * 64, rows[1].pk])

    report = audit_heads.check_heads(org)
    assert not report.ok and "REWRITTEN: row seq 2" in str(report)

    # A head line written without the key (to hide a truncation) is refused, not believed.
    path = audit_heads.head_file(org)
    forged = {
        "organization": org.pk,
        "slug": org.slug,
        "seq": 1,
        "hash": rows[0].row_hash,
        "published_at": "2999-01-01T00:00:00.000000Z",
        "signature": "0" * 64,
    }
    with path.open("a") as out:
        out.write(json.dumps(forged) + "\n")
    published = audit_heads.read_heads(org)
    assert len(published.heads) == 1 and "forged" in published.problems[0]


def test_a_broken_chain_is_never_published(org, record):
    rows = [record(org) for _ in range(2)]
    tamper(f"UPDATE {AUDIT_TABLE} SET reason = 'x' WHERE id = %s", [rows[0].pk])
    assert audit_heads.publish_heads() == 0
    assert not audit_heads.head_file(org).exists()


def test_the_beat_task_is_registered_under_its_name():
    assert audit_heads.publish_heads_task.name == "faceid.audit_heads.publish_heads"
