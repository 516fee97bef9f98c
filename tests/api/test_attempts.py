"""GET /api/v1/attempts/: filters, pagination, CSV, scope and tenant isolation; and the same filter
(faceid.filters) on the console's audit page: the same query gives the same rows."""

from __future__ import annotations

import csv
import io
import re
from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone

from faceid import services
from faceid.models import AttemptMode, DecisionChoices
from tenants.models import Role

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
    # seq counts the chain: events (the keys' creation, issue 10) and attempts alike.
    assert first["api_key"] == log["door"].prefix and first["row_hash"] and first["seq"] > 1


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


# --- the same filter in the API and the console ------------------------------------------------


@pytest.fixture
def api(tenant):
    return tenant.client("audit:read")


@pytest.fixture
def console(tenant) -> Client:
    client = Client()
    client.force_login(tenant.user("auditor@example.com", Role.AUDITOR))
    return client


def api_ids(api, query: str) -> set[int]:
    response = api.get(f"/api/v1/attempts/?{query}")
    assert response.status_code == 200, response.content
    return {row["id"] for row in response.json()["results"]}


def api_csv_ids(api, query: str) -> set[int]:
    response = api.get(f"/api/v1/attempts.csv?{query}")
    assert response.status_code == 200, response.content
    return _csv_ids(response)


def console_ids(console: Client, query: str) -> set[int]:
    response = console.get(f"/console/audit/?{query}")
    assert response.status_code == 200
    page = response.content.decode()
    assert "errorlist" not in page, page
    return {int(pk) for pk in re.findall(r'data-attempt="(\d+)"', page)}


def console_csv_ids(console: Client, query: str) -> set[int]:
    return _csv_ids(console.get(f"/console/audit.csv?{query}"))


def _csv_ids(response) -> set[int]:
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    return {int(row["id"]) for row in rows}


QUERIES = [
    "",
    "decision=reject",
    "decision=accept,no_match",
    "masked=true",
    "masked=0",
    "mode=identify",
    "person=alice",
    "person==cmd|calc",
    "key=nosuchkey",
    "mode=verify&masked=false&decision=accept",
    "since=2000-01-01&until=2999-01-01T00:00:00",
    "until=2000-01-01",
]


@pytest.mark.parametrize("query", QUERIES)
def test_the_same_query_gives_the_same_rows_in_the_api_and_the_console(api, console, log, query):
    rows = api_ids(api, query)
    assert console_ids(console, query) == rows
    assert api_csv_ids(api, query) == rows
    assert console_csv_ids(console, query) == rows


def test_a_key_is_found_by_its_prefix_or_its_id_in_both(api, console, log):
    a, kiosk = log["attempts"], log["kiosk"]
    expected = {a[2].pk, a[3].pk}
    for ref in (kiosk.prefix, str(kiosk.pk)):
        assert api_ids(api, f"key={ref}") == expected, ref
        assert console_ids(console, f"key={ref}") == expected, ref


def test_a_person_is_found_by_external_id_or_id_claimed_or_matched(api, console, log):
    a = log["attempts"]
    assert api_ids(api, f"person={log['bob'].pk}") == console_ids(console, "person=bob") == {a[2].pk}
    assert api_ids(api, "person=alice") == {a[0].pk, a[1].pk}
    assert api_ids(api, "person==cmd|calc") == {a[4].pk}  # claimed, never enrolled


@pytest.mark.parametrize(
    ("query", "field"),
    [("since=yesterday", "since"), ("decision=accept,maybe", "decision"), ("mode=guess", "mode"),
     ("masked=perhaps", "masked")],
)  # fmt: skip
def test_bad_values_are_400_in_the_api_and_form_errors_in_the_console(api, console, log, query, field):
    response = api.get(f"/api/v1/attempts/?{query}")
    assert response.status_code == 400
    assert response.json()["reason"] == "invalid" and field in response.json()["errors"]
    page = console.get(f"/console/audit/?{query}")
    assert page.status_code == 200 and "errorlist" in page.content.decode()


def test_another_organizations_key_matches_nothing(api, other_tenant, log):
    theirs, _ = other_tenant.key("verify", name="theirs")
    assert api_ids(api, f"key={theirs.prefix}") == set()
    assert api_ids(api, f"key={theirs.pk}") == set()
