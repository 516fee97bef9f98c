"""Issue 10, item 7: an external id that looks like a number cannot shadow another person's id.

The one rule (faceid.selectors.person_by_id_or_external_id), for the API, the console and the
audit filter alike: ``id:<n>`` (and the API's ``person_id`` field) is always the id; anything else
is an external id; a bare number that is nobody's external id is still read as an id.
"""

from __future__ import annotations

import pytest
from django.test import Client

from faceid import selectors, services
from faceid.models import VerificationAttempt
from tenants.models import Role


@pytest.fixture(autouse=True)
def _generous(generous_rate_limits) -> None:
    pass


@pytest.fixture
def shadowed(acme):
    """Alice, and Mallory whose external id is Alice's id written as a number."""
    alice = services.create_person(acme.organization, external_id="alice")
    mallory = services.create_person(acme.organization, external_id=str(alice.pk))
    return alice, mallory


def test_selector_rule(acme, shadowed):
    alice, mallory = shadowed
    org = acme.organization
    assert selectors.person_by_id_or_external_id(org, f"id:{alice.pk}") == alice
    assert selectors.person_by_id_or_external_id(org, alice.pk) == alice  # an int is an id
    assert selectors.person_by_id_or_external_id(org, str(alice.pk)) == mallory  # text: external id
    assert selectors.person_by_id_or_external_id(org, "alice") == alice
    assert selectors.person_by_id_or_external_id(org, "id:") is None
    assert selectors.person_by_id_or_external_id(org, "id:abc") is None
    # Backward compatible: a bare number nobody carries as an external id is still an id ...
    assert selectors.person_by_id_or_external_id(org, str(mallory.pk)) == mallory
    # ... but not once anybody carried it, even a person since erased: then it names that person.
    carrier = services.create_person(org, external_id=str(mallory.pk))
    services.erase_person(org, carrier)
    assert selectors.person_by_id_or_external_id(org, str(mallory.pk), include_erased=True) == carrier
    assert selectors.person_by_id_or_external_id(org, str(mallory.pk)) is None
    assert selectors.person_by_id_or_external_id(org, f"id:{mallory.pk}") == mallory


def _last_claim(org):
    return VerificationAttempt.objects.filter(organization=org).latest("pk").claimed_person_id


@pytest.mark.parametrize("field", ["person_id", "person"])
def test_api_verify_by_id_cannot_be_shadowed(acme, shadowed, field):
    alice, _ = shadowed
    value = str(alice.pk) if field == "person_id" else f"id:{alice.pk}"
    response = acme.client("verify").post("/api/v1/verify/", {field: value}, format="json")
    assert response.status_code in (400, 409), response.content  # nobody enrolled: refused, audited
    assert _last_claim(acme.organization) == alice.pk


def test_console_verify_by_id_cannot_be_shadowed(acme, shadowed):
    alice, _ = shadowed
    acme.user("op-fix@example.com", Role.OPERATOR)
    client = Client()
    assert client.login(username="op-fix@example.com", password="Str0ng-pass-phrase!")
    response = client.post("/console/verify/frames/", {"person": f"id:{alice.pk}"})
    assert response.status_code in (400, 409), response.content
    assert _last_claim(acme.organization) == alice.pk


def test_audit_filter_uses_the_same_rule(acme, shadowed):
    alice, mallory = shadowed
    client = acme.client("verify", "audit:read")
    client.post("/api/v1/verify/", {"person": f"id:{alice.pk}"}, format="json")
    client.post("/api/v1/verify/", {"person": str(alice.pk)}, format="json")  # Mallory's external id
    by_id = client.get("/api/v1/attempts/", {"person": f"id:{alice.pk}"}).json()["results"]
    by_external_id = client.get("/api/v1/attempts/", {"person": str(alice.pk)}).json()["results"]
    assert len(by_id) == 1 and len(by_external_id) == 1
    assert by_id[0]["id"] != by_external_id[0]["id"]
    claimed = {
        row.pk: row.claimed_person_id
        for row in VerificationAttempt.objects.filter(organization=acme.organization)
    }
    assert claimed[by_id[0]["id"]] == alice.pk and claimed[by_external_id[0]["id"]] == mallory.pk
