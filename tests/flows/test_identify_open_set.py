"""Identify's open-set thresholds: chosen for the policy's FPIR per search at the gallery's size."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from faceid import services
from faceid.api.results import IdentifyResultSerializer
from faceid.flows import prepare_identify
from faceid.flows.common import PolicySnapshot
from faceid.flows.identify import finish_identify
from faceid.flows.identify_thresholds import gallery_size, identify_thresholds
from inference.openset import load_references
from inference.variants import VARIANT_FULL
from tenants import services as tenant_services
from tenants.models import DEFAULT_IDENTIFY_FPIR, OrganizationPolicy
from tenants.selectors import policy_for
from tests.flows.builders import MODEL, frame, images, output

pytestmark = pytest.mark.django_db


def identify(caller, *frames, top_k: int = 5):
    prepared = prepare_identify(caller, images=images(len(frames)), top_k=top_k)
    return finish_identify(prepared.call, output(*frames))


def test_a_new_policy_targets_one_percent_fpir_per_search(organization):
    assert DEFAULT_IDENTIFY_FPIR == 0.01
    assert policy_for(organization).identify_fpir == 0.01
    assert PolicySnapshot.of(policy_for(organization)).identify_fpir == 0.01


@pytest.mark.parametrize("bad", [0.0, -0.01, 0.6, 1.0])
def test_an_fpir_outside_its_range_is_refused(organization, bad):
    with pytest.raises(ValidationError) as refused:
        tenant_services.update_policy(organization, identify_fpir=bad)
    assert "identify_fpir" in refused.value.message_dict
    assert policy_for(organization).identify_fpir == 0.01


def test_the_database_refuses_an_fpir_of_zero_even_past_validation(organization):
    with pytest.raises(IntegrityError), transaction.atomic():
        OrganizationPolicy.objects.filter(organization=organization).update(identify_fpir=0.0)


def test_the_gallery_counts_active_persons_with_templates_of_the_model(organization, gallery, make_person):
    for name in ("alice", "bob", "carol"):
        gallery.enroll(name)
    make_person(organization, external_id="no-photo")  # nothing enrolled: not searched
    services.deactivate_person(organization, gallery.people["carol"].person)  # not searched
    assert gallery_size(organization, MODEL) == 2
    assert gallery_size(organization, "sface") == 0


def test_identify_answers_how_many_persons_it_searched(caller, gallery, attempts):
    for name in ("alice", "bob", "carol"):
        gallery.enroll(name)
    result = identify(caller, frame({VARIANT_FULL: [gallery.probe("bob", 0.99)]}))
    assert result.candidates_searched == 3 and result.target_fpir == 0.01
    assert [m.external_id for m in result.matches] == ["bob"]
    rendered = IdentifyResultSerializer(result.to_json()).data
    assert rendered["candidates_searched"] == 3 and rendered["target_fpir"] == 0.01
    row = attempts()[0]
    assert "searched 3 person(s)" in row.reason and row.threshold == result.threshold


def test_an_empty_gallery_searches_nobody_at_the_1to1_threshold(caller, gallery, organization):
    result = identify(caller, frame({VARIANT_FULL: [gallery.probe_vector()]}))
    assert result.candidates_searched == 0 and result.decision == "no_match"
    assert result.threshold == policy_for(organization).threshold_unmasked


def test_thresholds_are_never_below_the_1to1_thresholds(organization):
    policy = policy_for(organization)
    for size in (0, 1, 10, 1000, 10**6):
        limits = identify_thresholds(organization, policy, size=size)
        assert limits.threshold_unmasked >= policy.threshold_unmasked
        assert limits.threshold_masked >= policy.threshold_masked


def test_a_bigger_gallery_gets_a_threshold_at_least_as_strict(organization):
    policy = policy_for(organization)
    sizes = (1, 10, 100, 1000, 10_000, 100_000, 10**6)
    for masked in (False, True):
        values = [
            identify_thresholds(organization, policy, size=n).threshold_for(masked=masked) for n in sizes
        ]
        assert values == sorted(values), (masked, values)


def test_with_the_shipped_reference_a_large_gallery_is_stricter_than_1to1(organization):
    if not load_references(MODEL):
        pytest.fail(f"inference/weights/reference_impostors/{MODEL}.json is missing")
    policy = policy_for(organization)
    small = identify_thresholds(organization, policy, size=1)
    large = identify_thresholds(organization, policy, size=100_000)
    assert large.threshold_unmasked > small.threshold_unmasked
    assert large.unmasked.basis in ("empirical", "tail")
    assert large.unmasked.far_per_comparison == pytest.approx(0.01 / 100_000, rel=0.01)


def test_a_looser_fpir_never_raises_the_threshold(organization):
    strict = identify_thresholds(organization, policy_for(organization), size=5000)
    tenant_services.update_policy(organization, identify_fpir=0.2)
    loose = identify_thresholds(organization, policy_for(organization), size=5000)
    assert loose.threshold_unmasked <= strict.threshold_unmasked
    assert loose.threshold_masked <= strict.threshold_masked
