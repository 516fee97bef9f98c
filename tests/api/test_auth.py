"""Authentication (API key / session) and scopes: 401 for unknown or revoked keys, 403 for a missing scope."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from tenants import services as tenant_services
from tenants.models import Role

pytestmark = pytest.mark.django_db


def test_no_credentials_is_401_with_bearer_challenge(tenant):
    response = APIClient().get("/api/v1/persons/")
    assert response.status_code == 401
    assert response.json()["reason"] == "not_authenticated"
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize(
    "header",
    [
        "Bearer fid_nosuchkey_" + "x" * 40,
        "Bearer not-even-a-key",
        "Bearer",
        "Bearer a b",
        "Bearer " + "fid_" + "a" * 500,
    ],
)
def test_unknown_or_malformed_key_is_401(tenant, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/persons/")
    assert response.status_code == 401
    assert response.json()["reason"] == "invalid_api_key"


def test_revoked_key_is_401(tenant):
    api_key, plaintext = tenant.key("enroll")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    assert client.get("/api/v1/persons/").status_code == 200
    tenant_services.revoke_api_key(organization=tenant.organization, api_key=api_key)
    response = client.get("/api/v1/persons/")
    assert response.status_code == 401
    assert response.json()["reason"] == "invalid_api_key"


def test_key_of_a_deactivated_organization_is_401(tenant):
    client = tenant.client("enroll")
    tenant_services.update_organization(organization=tenant.organization, active=False)
    assert client.get("/api/v1/persons/").status_code == 401


@pytest.mark.parametrize(
    ("scopes", "method", "url", "needed"),
    [
        (("verify",), "get", "/api/v1/persons/", "enroll"),
        (("verify", "identify"), "post", "/api/v1/persons/", "enroll"),
        (("enroll",), "post", "/api/v1/verify/", "verify"),
        (("enroll", "verify"), "post", "/api/v1/identify/", "identify"),
        (("enroll", "verify", "identify"), "get", "/api/v1/attempts/", "audit:read"),
        (("verify",), "get", "/api/v1/attempts.csv", "audit:read"),
        (("audit:read",), "post", "/api/v1/persons/1/faces/", "enroll"),
    ],
)
def test_missing_scope_is_403(tenant, scopes, method, url, needed):
    client = tenant.client(*scopes)
    response = getattr(client, method)(url, {}, format="json")
    assert response.status_code == 403, response.content
    body = (
        response.json()
        if "json" in response["Content-Type"]
        else {"reason": "missing_scope", "detail": needed}
    )
    assert body["reason"] == "missing_scope"
    assert needed in body["detail"]


def test_a_refused_scope_writes_no_audit_row_and_stores_nothing(tenant):
    from faceid.models import Person, VerificationAttempt

    client = tenant.client("verify")
    client.post("/api/v1/persons/", {"external_id": "e1"}, format="json")
    assert not Person.objects.exists()
    assert not VerificationAttempt.objects.exclude(mode="event").exists()  # key creation is an event


def test_console_session_user_gets_the_scopes_of_their_role(tenant, client):
    tenant.user("auditor@example.com", Role.AUDITOR)
    client.login(username="auditor@example.com", password="Str0ng-pass-phrase!")
    assert client.get("/api/v1/attempts/").status_code == 200
    response = client.get("/api/v1/persons/")
    assert response.status_code == 403
    assert response.json()["reason"] == "missing_scope"


def test_session_writes_need_the_csrf_token(tenant):
    tenant.user("op@example.com", Role.OPERATOR)
    client = APIClient(enforce_csrf_checks=True)
    client.login(username="op@example.com", password="Str0ng-pass-phrase!")
    assert client.get("/api/v1/persons/").status_code == 200
    response = client.post("/api/v1/persons/", {"external_id": "x"}, format="json")
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]


def test_user_without_organization_is_403(db, client):
    tenant_services.get_or_create_user(email="lonely@example.com", password="Str0ng-pass-phrase!")
    client.login(username="lonely@example.com", password="Str0ng-pass-phrase!")
    response = client.get("/api/v1/attempts/")
    assert response.status_code == 403
    assert response.json()["reason"] == "no_organization"


def test_last_used_is_recorded(tenant):
    api_key, plaintext = tenant.key("enroll")
    assert api_key.last_used_at is None
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    client.get("/api/v1/persons/")
    api_key.refresh_from_db()
    assert api_key.last_used_at is not None
