"""The shipped models (the registry default and the fusion) through the API and a REAL worker:
an organization on each enrolls, verifies and identifies real portraits with the model's own
default thresholds, and every decision row names the model and version that made it."""

from __future__ import annotations

import pytest

from faceid.models import FaceTemplate, VerificationAttempt
from inference.embedders import DEFAULT_EMBEDDER, embedder_spec
from tenants import services as tenant_services
from tenants.selectors import policy_for
from tests.api.helpers import Tenant, create_person, enroll, post_multipart
from tests.portraits import ALICE, BOB, STRANGER

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def files(*images: bytes) -> list:
    return [("image", (f"frame{i}.jpg", data, "image/jpeg")) for i, data in enumerate(images)]


@pytest.fixture(params=[None, "fusion_sface_intel"], ids=["default", "fusion"])
def shipped(request, db) -> tuple[Tenant, str]:
    """An organization on the registry default (created without naming a model) or the fusion."""
    extra = {} if request.param is None else {"embedding_model": request.param}
    organization = tenant_services.create_organization(slug="shipped", name="Shipped", **extra)
    return Tenant(organization, policy_for(organization)), request.param or DEFAULT_EMBEDDER


def test_an_organization_on_a_shipped_model_enrolls_verifies_and_identifies(shipped, pipeline_worker, photo):
    tenant, model = shipped
    policy, spec = policy_for(tenant.organization), embedder_spec(model)
    assert policy.embedding_model == model
    assert (policy.threshold_unmasked, policy.threshold_masked) == (
        spec.default_threshold_unmasked,
        spec.default_threshold_masked,
    )
    client = tenant.client("enroll", "verify", "identify")
    alice = create_person(client, "alice")
    bob = create_person(client, "bob")
    assert enroll(client, alice, photo(ALICE[1][0]), photo(ALICE[1][1])).status_code == 201
    assert enroll(client, bob, photo(BOB[1][0])).status_code == 201
    assert set(FaceTemplate.objects.filter(person_id=alice).values_list("model_name", flat=True)) == {model}

    same = post_multipart(client, "/api/v1/verify/", files(photo(ALICE[1][2])), {"person": "alice"})
    other = post_multipart(client, "/api/v1/verify/", files(photo(BOB[1][1])), {"person": "alice"})
    found = post_multipart(client, "/api/v1/identify/", files(photo(ALICE[1][3])))
    unknown = post_multipart(client, "/api/v1/identify/", files(photo(STRANGER[1][0])))

    assert same.status_code == 200 and same.json()["decision"] == "accept", same.content
    assert other.status_code == 200 and other.json()["decision"] == "reject", other.content
    assert found.status_code == 200 and found.json()["decision"] == "accept", found.content
    assert found.json()["matches"][0]["external_id"] == "alice"
    assert found.json()["candidates_searched"] == 2
    assert unknown.status_code == 200 and unknown.json()["decision"] == "no_match", unknown.content
    rows = VerificationAttempt.objects.filter(organization=tenant.organization).exclude(mode="event")
    assert rows.count() == 4
    assert {(row.model_name, row.model_version) for row in rows} == {(model, spec.version)}
