"""GET /api/v1/attempts/: filters, pagination, CSV, scope and tenant isolation."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.utils import timezone

from faceid import services
from faceid.models import AttemptMode, DecisionChoices

pytestmark = pytest.mark.django_db


@pytest.fixture
def log(tenant, other_tenant):
    org = tenant.organization
    alice = services.create_person(org, external_id="alice")
    bob = services.create_person(org, external_id="bob")
    door, _ = tenant.key("verify", name="door")
    kiosk, _ = tenant.key("identify", name="kiosk")
    rows = [
        dict(
            mode=AttemptMode.VERIFY,
            decision=DecisionChoices.ACCEPT,
            claimed_person=alice,
            matched_person=alice,
            similarity=0.93,
            threshold=0.82,
            masked=False,
            api_key=door,
        ),
        dict(
            mode=AttemptMode.VERIFY,
            decision=DecisionChoices.REJECT,
            claimed_person=alice,
            similarity=0.4,
            threshold=0.78,
            masked=True,
            mask_probability=0.97,
            api_key=door,
        ),
        dict(
            mode=AttemptMode.IDENTIFY,
            decision=DecisionChoices.ACCEPT,
            matched_person=bob,
            similarity=0.9,
            threshold=0.82,
            masked=False,
            api_key=kiosk,
        ),
        dict(mode=AttemptMode.IDENTIFY, decision=DecisionChoices.NO_MATCH, masked=False, api_key=kiosk),
        dict(
            mode=AttemptMode.VERIFY, decision=DecisionChoices.UNKNOWN_PERSON, claimed_external_id="=cmd|calc"
        ),
    ]
    attempts = [services.record_attempt(org, **row) for row in rows]
    services.record_attempt(
        other_tenant.organization, mode=AttemptMode.VERIFY, decision=DecisionChoices.ACCEPT
    )
    return {"attempts": attempts, "alice": alice, "bob": bob, "door": door, "kiosk": kiosk}


def ids(response) -> list[int]:
    assert response.status_code == 200, response.content
    return [row["id"] for row in response.json()["results"]]


def test_lists_newest_first_with_the_audit_fields(tenant, log):
    client = tenant.client("audit:read")
    body = client.get("/api/v1/attempts/").json()
    assert body["count"] == 5
    assert [r["id"] for r in body["results"]] == [a.pk for a in reversed(log["attempts"])]
    first = body["results"][-1]
    assert first["decision"] == "accept" and first["similarity"] == 0.93 and first["threshold"] == 0.82
    assert first["claimed_external_id"] == "alice" and first["matched_external_id"] == "alice"
    assert first["api_key"] == log["door"].prefix and first["row_hash"] and first["seq"] == 1


def test_filters(tenant, log):
    client = tenant.client("audit:read")
    a = log["attempts"]
    assert ids(client.get("/api/v1/attempts/?decision=reject")) == [a[1].pk]
    assert set(ids(client.get("/api/v1/attempts/?decision=accept,no_match"))) == {a[0].pk, a[2].pk, a[3].pk}
    assert ids(client.get("/api/v1/attempts/?masked=true")) == [a[1].pk]
    assert set(ids(client.get("/api/v1/attempts/?person=alice"))) == {a[0].pk, a[1].pk}
    assert ids(client.get(f"/api/v1/attempts/?person={log['bob'].pk}")) == [a[2].pk]
    assert ids(client.get("/api/v1/attempts/?person==cmd|calc")) == [a[4].pk]
    assert set(ids(client.get(f"/api/v1/attempts/?key={log['kiosk'].prefix}"))) == {a[2].pk, a[3].pk}
    assert ids(client.get("/api/v1/attempts/?key=nosuchkey")) == []
    assert set(ids(client.get("/api/v1/attempts/?mode=identify"))) == {a[2].pk, a[3].pk}
    now = timezone.now()
    assert len(ids(client.get("/api/v1/attempts/", {"since": (now - timedelta(hours=1)).isoformat()}))) == 5
    assert ids(client.get("/api/v1/attempts/", {"until": (now - timedelta(hours=1)).isoformat()})) == []
    assert len(ids(client.get("/api/v1/attempts/", {"since": now.date().isoformat()}))) == 5


@pytest.mark.parametrize("query", ["since=yesterday", "decision=maybe", "mode=guess"])
def test_bad_filters_are_400(tenant, log, query):
    response = tenant.client("audit:read").get(f"/api/v1/attempts/?{query}")
    assert response.status_code == 400 and response.json()["reason"] == "invalid"


@pytest.mark.parametrize("url", ["/api/v1/attempts/?format=csv", "/api/v1/attempts.csv"])
def test_csv_export(tenant, log, url):
    response = tenant.client("audit:read").get(
        url + ("&" if "?" in url else "?") + "decision=accept,unknown_person"
    )
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:4] == ["id", "created_at", "mode", "decision"]
    assert len(rows) == 1 + 3
    # client-supplied text cannot become a spreadsheet formula
    assert any(cell == "'=cmd|calc" for row in rows for cell in row)


def test_other_organization_sees_none_of_it(other_tenant, log):
    body = other_tenant.client("audit:read").get("/api/v1/attempts/").json()
    assert body["count"] == 1
    assert (
        other_tenant.client("audit:read").get(f"/api/v1/attempts/?person={log['alice'].pk}").json()["count"]
        == 0
    )
