"""Errors are JSON with a reason; size limits answer 413; nothing answers 500."""

from __future__ import annotations

import pytest
from django.core.exceptions import RequestDataTooBig

from faceid.api.errors import api_exception_handler
from faceid.models import VerificationAttempt

pytestmark = pytest.mark.django_db


def test_request_data_too_big_becomes_413():
    response = api_exception_handler(RequestDataTooBig("too big"), {"view": None})
    assert response.status_code == 413
    assert response.data["reason"] == "too_large"


def test_json_body_over_the_django_limit_is_413(tenant, settings):
    settings.MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # the declared size check passes ...
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000  # ... Django's own body limit does not
    client = tenant.client("enroll")
    response = client.post("/api/v1/persons/", {"external_id": "x" * 5000}, format="json")
    assert response.status_code == 413, response.content
    assert response.json()["reason"] == "too_large"


@pytest.mark.parametrize("url", ["/api/v1/verify/", "/api/v1/identify/", "/api/v1/persons/1/faces/"])
def test_multipart_over_the_limit_is_413(tenant, settings, url):
    settings.MAX_UPLOAD_BYTES = 50_000
    client = tenant.client("enroll", "verify", "identify")
    response = client.post(url, {"person": "x", "image": ("big.jpg", b"\xff" * 80_000)}, format="multipart")
    assert response.status_code == 413, response.content
    body = response.json()
    assert body["reason"] == "too_large" and body["limit_bytes"] == 50_000


def test_a_413_verify_is_audited_once(tenant, settings):
    settings.MAX_UPLOAD_BYTES = 50_000
    client = tenant.client("verify")
    response = client.post("/api/v1/verify/", {"person": "x", "image": b"\xff" * 80_000}, format="multipart")
    assert response.status_code == 413
    attempt = VerificationAttempt.objects.exclude(mode="event").get()
    assert response.json()["attempt_id"] == attempt.pk
    assert attempt.decision == "bad_image" and "exceeds the limit" in attempt.reason


@pytest.mark.parametrize(
    ("url", "payload", "content_type"),
    [
        ("/api/v1/verify/", b"\x00\x01garbage", "application/octet-stream"),
        ("/api/v1/verify/", b"{broken", "application/json"),
        ("/api/v1/verify/", b'{"person": "x", "image": 12}', "application/json"),
        ("/api/v1/verify/", b'{"person": "x", "images": [null]}', "application/json"),
        ("/api/v1/verify/", b'{"person": "x", "image": "%%%not base64"}', "application/json"),
        ("/api/v1/verify/", b'["a list"]', "application/json"),
        ("/api/v1/identify/", b'{"top_k": "many", "image": "aGk="}', "application/json"),
        ("/api/v1/identify/", b'{"top_k": 0, "image": "aGk="}', "application/json"),
        ("/api/v1/identify/", b'{"top_k": 1000, "image": "aGk="}', "application/json"),
        ("/api/v1/identify/", b"", "multipart/form-data; boundary=zz"),
        ("/api/v1/persons/", b'{"external_id": ["a"]}', "application/json"),
    ],
)
def test_malformed_requests_are_4xx_json_never_500(tenant, url, payload, content_type):
    client = tenant.client("enroll", "verify", "identify")
    response = client.generic("POST", url, payload, content_type=content_type)
    assert 400 <= response.status_code < 500, (response.status_code, response.content)
    assert response.json()["reason"]


def test_unknown_paths_and_methods(tenant):
    client = tenant.client("enroll", "verify")
    assert client.put("/api/v1/persons/", {}, format="json").status_code == 405
    assert client.get("/api/v1/verify/").json()["reason"] == "method_not_allowed"
    assert client.get("/api/v1/jobs/not-a-uuid/").status_code == 404
    assert client.get("/api/v1/persons/999999/").json()["reason"] == "not_found"


def test_verify_without_person_or_image_is_audited(tenant):
    client = tenant.client("verify")
    response = client.post("/api/v1/verify/", {}, format="json")
    assert response.status_code == 400 and response.json()["reason"] == "person_required"
    assert VerificationAttempt.objects.get(pk=response.json()["attempt_id"]).decision == "unknown_person"


def test_rate_limit_is_429_and_audited(tenant, settings):
    settings.FACEID_THROTTLE_RATES = {"api": "1000/minute", "pipeline": "2/minute"}
    client = tenant.client("verify", "audit:read")
    codes = [
        client.post("/api/v1/verify/", {"person": "nobody"}, format="json").status_code for _ in range(3)
    ]
    assert codes == [404, 404, 429]
    response = client.post("/api/v1/verify/", {"person": "nobody"}, format="json")
    body = response.json()
    assert response.status_code == 429 and body["reason"] == "rate_limited" and body["retry_after"] >= 1
    assert response["Retry-After"]
    assert VerificationAttempt.objects.get(pk=body["attempt_id"]).decision == "rate_limited"
    # only the pipeline bucket is exhausted: the audit log still answers; other keys are unaffected
    assert client.get("/api/v1/attempts/").status_code == 200
    assert (
        tenant.client("verify").post("/api/v1/verify/", {"person": "nobody"}, format="json").status_code
        == 404
    )
    assert VerificationAttempt.objects.exclude(mode="event").count() == 5
