"""A person enrolled with a mask on is verified without one, in the mask-aware space, through the
API and a real worker (the pair the product used to leave unscored: 409 no_templates)."""

from __future__ import annotations

import pytest

from tenants import services as tenant_services
from tenants.selectors import policy_for
from tests.api.helpers import create_person, enroll
from tests.api.test_pipeline_endpoints import Audited, masked_version, verify
from tests.portraits import ALICE, BOB

pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def test_a_person_enrolled_with_a_mask_is_verified_without_one(tenant, pipeline_worker, photo):
    organization = tenant.organization
    tenant_services.update_policy(organization=organization, require_unmasked_enrollment=False)
    policy = policy_for(organization)
    client = tenant.client("enroll", "verify")
    person_id = create_person(client, "alice", "Alice")
    enrolled = enroll(client, person_id, masked_version(photo(ALICE[1][0])))
    assert enrolled.status_code == 201, enrolled.content
    assert {t["variant"] for t in enrolled.json()["photos"][0]["templates"]} == {
        "masked_synthetic",
        "masked_cutout",
    }
    audited = Audited(organization)

    genuine = verify(client, "alice", photo(ALICE[1][2]))
    assert genuine.status_code == 200, genuine.content
    body = genuine.json()
    # The probe wore no mask, the enrolled photo did: compared mask-aware, at the masked threshold.
    assert body["masked"] is False and body["threshold"] == policy.threshold_masked
    row = audited(genuine, body["decision"])
    assert row.threshold == policy.threshold_masked and "masked space" in row.reason

    impostor = verify(client, "alice", photo(BOB[1][0]))
    assert impostor.status_code == 200, impostor.content
    assert impostor.json()["threshold"] == policy.threshold_masked
    impostor_row = audited(impostor, impostor.json()["decision"])
    assert impostor_row.similarity < row.similarity
