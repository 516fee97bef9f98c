"""A model switch as the console and the API show it: progress and who must enroll again."""

from __future__ import annotations

import pytest
from django.test import Client

from faceid import job_records, model_switch, services, switch_reembed
from faceid.models import ModelSwitch
from inference.embedders import deployable_embedders
from tenants import services as tenant_services
from tenants.roles import Role
from tests.api.helpers import store_random_template

pytestmark = pytest.mark.django_db


@pytest.fixture
def switched(tenant):
    """alice (templates, no kept photo) after the policy switched to a second deployable model."""
    others = [name for name in deployable_embedders() if name != "dlib_resnet_v1"]
    if not others:
        pytest.skip("a switch needs a second deployable model")
    alice = services.create_person(tenant.organization, external_id="alice-7", display_name="Alice")
    store_random_template(tenant.organization, alice, seed=1, source_sha256="a" * 64)
    tenant_services.update_policy(tenant.organization, embedding_model=others[0])
    switch = ModelSwitch.objects.get(organization=tenant.organization)
    job_records.save(model_switch.job_record(switch))  # what the commit hook does
    return switch


def test_the_policy_page_shows_the_switch_and_who_must_enroll_again(tenant, switched):
    tenant.user("admin@example.com", Role.ADMIN)
    client = Client()
    assert client.login(username="admin@example.com", password="Str0ng-pass-phrase!")
    page = client.get("/console/policy/").content.decode()
    assert 'id="switch-progress">0/1<' in page and "needs-enrollment" not in page

    switch_reembed.plan(switched.pk)
    page = client.get("/console/policy/").content.decode()
    assert 'id="switch-progress">1/1<' in page
    assert "alice-7" in page and "the policy keeps no images" in page


def test_the_api_job_status_shows_progress_and_the_listed_persons(tenant, switched):
    switch_reembed.plan(switched.pk)
    job = tenant.client("audit:read").get(f"/api/v1/jobs/{switched.job_id}/")
    assert job.status_code == 200, job.content
    body = job.json()
    assert body["kind"] == "model_switch" and body["status"] == "done"
    assert body["progress"] == {"done": 1, "total": 1}
    [listed] = body["result"]["needs_enrollment_persons"]
    assert listed["external_id"] == "alice-7" and listed["reason"] == "the policy keeps no images"
    # Reading it takes the audit scope: a verify key gets 403; the answer is not consumed by a read.
    assert tenant.client("verify").get(f"/api/v1/jobs/{switched.job_id}/").status_code == 403
    assert tenant.client("audit:read").get(f"/api/v1/jobs/{switched.job_id}/").status_code == 200


def test_an_admin_can_send_a_stalled_switch_job_again(tenant, switched, django_capture_on_commit_callbacks):
    tenant.user("admin@example.com", Role.ADMIN)
    client = Client()
    assert client.login(username="admin@example.com", password="Str0ng-pass-phrase!")
    assert "Send the job again" in client.get("/console/policy/").content.decode()
    with django_capture_on_commit_callbacks() as callbacks:
        assert client.post("/console/policy/", {"resume_switch": "1"}).status_code == 302
    assert len(callbacks) == 1  # the job is sent once the request's transaction commits

    switch_reembed.plan(switched.pk)  # alice listed: the switch completes, nothing left to resume
    assert "Send the job again" not in client.get("/console/policy/").content.decode()
    assert model_switch.resume_switch(tenant.organization) is None
