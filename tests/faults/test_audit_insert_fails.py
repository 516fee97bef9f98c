"""A failure injected into the audit insert: no decision is answered without its audit row.

A trigger makes PostgreSQL refuse every INSERT into the audit table (as a full disk, a lost
connection or a revoked privilege would). A verify that reaches a decision (a real pipeline run in
the real worker), and one refused before the pipeline (unknown person), must then fail cleanly:
JSON 5xx, no decision, no similarity, and nothing written. Once the insert works again, the same
verify is answered and audited.
"""

from __future__ import annotations

import contextlib
import json

import pytest
from django.db import connection

from faceid.audit import AUDIT_TABLE, verify_chain
from faceid.models import VerificationAttempt
from tests.api.helpers import create_person, enroll, post_multipart
from tests.portraits import ALICE

pytestmark = [pytest.mark.slow]

FAIL_INSERTS = f"""
CREATE FUNCTION faults_refuse_audit_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'injected fault: the audit insert fails';
END;
$$;
CREATE TRIGGER faults_audit_insert_fails BEFORE INSERT ON {AUDIT_TABLE}
    FOR EACH ROW EXECUTE FUNCTION faults_refuse_audit_insert();
"""
RESTORE_INSERTS = f"""
DROP TRIGGER IF EXISTS faults_audit_insert_fails ON {AUDIT_TABLE};
DROP FUNCTION IF EXISTS faults_refuse_audit_insert();
"""


@contextlib.contextmanager
def audit_inserts_fail():
    with connection.cursor() as cursor:
        cursor.execute(FAIL_INSERTS)
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute(RESTORE_INSERTS)


def _verify(client, person: str, image: bytes):
    return post_multipart(
        client, "/api/v1/verify/", [("image", ("p.jpg", image, "image/jpeg"))], {"person": person}
    )


def _assert_failed_without_decision(response) -> None:
    assert response.status_code >= 500, response.content
    assert response["Content-Type"].startswith("application/json"), response.content[:300]
    body = json.loads(response.content)
    for leaked in ("decision", "match", "similarity", "attempt_id", "candidates"):
        assert leaked not in body, body
    assert body.get("reason"), body


def test_no_verify_decision_without_its_audit_row(pipeline_worker, org_client, portrait, settings):
    settings.PIPELINE_WAIT_SECONDS = 60
    organization, client = org_client
    person_id = create_person(client, "alice")
    assert enroll(client, person_id, portrait(ALICE[1][0])).status_code == 201
    probe = portrait(ALICE[1][1])
    rows_before = VerificationAttempt.objects.filter(organization=organization).count()

    with audit_inserts_fail():
        _assert_failed_without_decision(_verify(client, "alice", probe))  # a decision was reached
        _assert_failed_without_decision(_verify(client, "nobody", probe))  # refused before the pipeline
        assert VerificationAttempt.objects.filter(organization=organization).count() == rows_before

    response = _verify(client, "alice", probe)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["decision"] == "accept"
    assert VerificationAttempt.objects.filter(organization=organization, pk=body["attempt_id"]).exists()
    assert verify_chain(organization).ok
