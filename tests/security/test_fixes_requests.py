"""Issue 10, item 7: request-level fixes of the API.

* deeply nested JSON is a 400 ``malformed_request``, not a RecursionError (500);
* a key reads an ``?async=true`` job only with the scope of the call that started it;
* per-organization limits: a pipeline rate for all the organization's keys together, and a bound
  on its calls in flight (429 ``organization_busy`` with Retry-After).
"""

from __future__ import annotations

import time
import uuid

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from faceid.api.parsers import MAX_JSON_DEPTH, json_depth
from faceid.contracts import PipelineFailure
from faceid.jobs import complete_job
from faceid.models import VerificationAttempt
from tenants.models import Role
from tests.api.helpers import make_tenant


@pytest.fixture(autouse=True)
def _generous(generous_rate_limits) -> None:
    pass


@pytest.fixture(autouse=True)
def _jobs_stay_pending(monkeypatch) -> None:
    """The async jobs of these tests are sent to a queue no worker consumes, so they stay pending
    until the test finishes them, also in a run where the session's Celery worker is up."""
    from celery import chain

    from faceid import jobs

    monkeypatch.setattr(jobs, "chain", lambda *tasks: chain(*tasks).set(queue="faceid-test-unconsumed"))


def _fresh_tenant():
    tenant = make_tenant(f"fix-{uuid.uuid4().hex[:8]}")
    # Test databases start their ids again, the cache outlives them: forget an earlier run's
    # counters and in-flight slots of an organization that had this id.
    pk = tenant.organization.pk
    cache.delete_many(
        [f"inflight:{pk}:{i}" for i in range(64)]
        + [f"throttle:org_pipeline:org:{pk}:86400:{int(time.time() // 86400) + d}" for d in (0, 1)]
    )
    return tenant


@pytest.fixture
def acme(db):
    return _fresh_tenant()


@pytest.fixture
def globex(db):
    return _fresh_tenant()


# --- deep JSON ------------------------------------------------------------------------------------


def test_json_depth_ignores_brackets_inside_strings():
    assert json_depth(b'{"a": [1, {"b": "[[[[{{{{"}]}') == 3
    assert json_depth(b'"\\"[[[["') == 0
    assert json_depth(b"[" * 5000) == 5000


@pytest.mark.parametrize("url", ["/api/v1/verify/", "/api/v1/persons/", "/api/v1/identify/"])
@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 100_000])
def test_deeply_nested_json_is_400_not_500(acme, url, depth):
    client = acme.client("enroll", "verify", "identify")
    body = '{"person": ' + "[" * depth + "]" * depth + "}"
    response = client.generic("POST", url, body, content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    assert response.json()["reason"] == "malformed_request"


def test_ordinary_nesting_still_parses(acme):
    client = acme.client("enroll")
    body = '{"external_id": "nested-ok", "display_name": "N"}'
    response = client.generic("POST", "/api/v1/persons/", body, content_type="application/json")
    assert response.status_code == 201, response.content


# --- job scope ------------------------------------------------------------------------------------


def _bad_identify_job(client: APIClient) -> str:
    # Queued only (see _jobs_stay_pending), so the job stays pending.
    response = client.post("/api/v1/identify/?async=true", {"image": "aGVsbG8="}, format="json")
    assert response.status_code == 202, response.content
    return response.json()["id"]


def test_job_needs_the_scope_of_its_kind(acme, settings):
    job_id = _bad_identify_job(acme.client("identify"))
    url = f"/api/v1/jobs/{job_id}/"
    for scopes in (["audit:read"], ["verify"], ["enroll"]):
        response = acme.client(*scopes).get(url)
        assert response.status_code == 403, (scopes, response.content)
        assert response.json()["reason"] == "missing_scope"
    assert acme.client("identify").get(url).status_code == 200


def test_job_scope_for_console_users_follows_their_role(acme):
    job_id = _bad_identify_job(acme.client("identify"))
    url = f"/api/v1/jobs/{job_id}/"
    auditor = APIClient()
    acme.user("auditor-fix@example.com", Role.AUDITOR)
    assert auditor.login(username="auditor-fix@example.com", password="Str0ng-pass-phrase!")
    assert auditor.get(url).status_code == 403
    admin = APIClient()
    acme.user("admin-fix@example.com", Role.ADMIN)
    assert admin.login(username="admin-fix@example.com", password="Str0ng-pass-phrase!")
    assert admin.get(url).status_code == 200


def test_a_refused_poll_does_not_consume_a_finished_job(acme):
    job_id = _bad_identify_job(acme.client("identify"))
    complete_job(job_id, failure=PipelineFailure("input", "not_an_image", "not an image"))
    url = f"/api/v1/jobs/{job_id}/"
    assert acme.client("audit:read").get(url).status_code == 403
    answer = acme.client("identify").get(url)
    assert answer.status_code == 200 and answer.json()["status"] == "failed", answer.content


def test_another_organizations_job_stays_404_whatever_the_scope(acme, globex):
    job_id = _bad_identify_job(acme.client("identify"))
    assert globex.client("audit:read").get(f"/api/v1/jobs/{job_id}/").status_code == 404


# --- per-organization limits ----------------------------------------------------------------------


def _verify_nobody(client: APIClient):
    return client.post("/api/v1/verify/", {"person": "nobody"}, format="json")


def test_organization_pipeline_rate_counts_all_its_keys(acme, globex, settings):
    rates = {"api": "1000/minute", "pipeline": "1000/minute", "org_pipeline": "3/day"}
    settings.FACEID_THROTTLE_RATES = rates
    keys = [acme.client("verify") for _ in range(4)]
    codes = [_verify_nobody(client).status_code for client in keys]
    assert codes == [404, 404, 404, 429]
    refused = _verify_nobody(keys[0])
    assert refused.json()["reason"] == "rate_limited" and refused["Retry-After"]
    assert VerificationAttempt.objects.get(pk=refused.json()["attempt_id"]).decision == "rate_limited"
    assert _verify_nobody(globex.client("verify")).status_code == 404  # another tenant is not slowed


def test_organization_in_flight_bound(acme, globex, settings):
    settings.API_ORG_MAX_IN_FLIGHT = 1
    client = acme.client("verify", "identify")
    # Synchronous calls give their slot back when they answer: one after the other all pass.
    assert [_verify_nobody(client).status_code for _ in range(3)] == [404, 404, 404]
    # An async job holds the organization's only slot until it is finished.
    job_id = _bad_identify_job(client)
    busy = _verify_nobody(acme.client("verify"))
    assert busy.status_code == 429, busy.content
    body = busy.json()
    assert body["reason"] == "organization_busy" and body["retry_after"] >= 1 and busy["Retry-After"]
    assert VerificationAttempt.objects.get(pk=body["attempt_id"]).decision == "rate_limited"
    assert _verify_nobody(globex.client("verify")).status_code == 404  # other tenants keep their share
    complete_job(job_id, failure=PipelineFailure("input", "not_an_image", "not an image"))
    assert _verify_nobody(client).status_code == 404
