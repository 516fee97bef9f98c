import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from faceid.embedding_models import DEFAULT_EMBEDDING_MODEL, EMBEDDING_MODELS
from faceid.selectors import probe_variants
from tenants import models as tenant_models
from tenants.models import OrganizationPolicy
from tenants.selectors import policy_for
from tenants.services import create_organization, update_policy


def test_a_new_organization_gets_the_default_policy(org):
    policy = policy_for(org)
    assert policy.embedding_model == DEFAULT_EMBEDDING_MODEL
    assert policy.threshold_unmasked == EMBEDDING_MODELS[DEFAULT_EMBEDDING_MODEL].default_threshold_unmasked
    assert policy.threshold_masked == EMBEDDING_MODELS[DEFAULT_EMBEDDING_MODEL].default_threshold_masked
    assert policy.target_far == tenant_models.DEFAULT_TARGET_FAR == 0.001
    assert policy.mask_threshold == 0.5 and policy.mask_strategy == "cutout"
    assert policy.require_unmasked_enrollment is True
    assert (policy.lockout_failures, policy.lockout_window_seconds, policy.lockout_seconds) == (5, 300, 900)
    assert policy.keep_images is False and policy.image_retention_days == 30


def test_create_organization_accepts_policy_overrides(db):
    org = create_organization(slug="strict", name="Strict", lockout_failures=3, keep_images=True)
    assert policy_for(org).lockout_failures == 3 and policy_for(org).keep_images


def test_create_organization_refuses_an_existing_slug(org):
    with pytest.raises(ValidationError):
        create_organization(slug=org.slug, name="Again")


def test_switching_model_resets_thresholds_unless_given(org):
    policy = update_policy(org, embedding_model="iresnet50")
    assert (policy.threshold_unmasked, policy.threshold_masked) == (
        EMBEDDING_MODELS["iresnet50"].default_threshold_unmasked,
        EMBEDDING_MODELS["iresnet50"].default_threshold_masked,
    )
    policy = update_policy(org, embedding_model="dlib_resnet_v1", threshold_unmasked=0.9)
    assert policy.threshold_unmasked == 0.9
    assert policy.threshold_masked == EMBEDDING_MODELS["dlib_resnet_v1"].default_threshold_masked


@pytest.mark.parametrize(
    "fields",
    [
        {"embedding_model": "facenet"},
        {"threshold_unmasked": 1.5},
        {"target_far": 0},
        {"mask_threshold": -0.1},
        {"lockout_failures": 0},
        {"image_retention_days": 0},
        {"mask_strategy": "scarf"},
        {"colour": "blue"},
    ],
)
def test_invalid_policy_values_are_refused(org, fields):
    with pytest.raises(ValidationError):
        update_policy(org, **fields)
    assert policy_for(org).embedding_model == DEFAULT_EMBEDDING_MODEL


def test_the_database_refuses_out_of_range_policies(org):
    with pytest.raises(IntegrityError), transaction.atomic():
        OrganizationPolicy.objects.filter(organization=org).update(threshold_masked=3)


def test_mask_decision_threshold_and_template_variants_follow_the_policy(org):
    policy = update_policy(org, mask_threshold=0.6, threshold_unmasked=0.8, threshold_masked=0.7)
    assert not policy.is_masked(0.6) and policy.is_masked(0.61) and not policy.is_masked(None)
    assert policy.threshold_for(masked=True) == 0.7 and policy.threshold_for(masked=False) == 0.8
    assert probe_variants(policy, masked=False) == ["full"]
    assert probe_variants(policy, masked=True) == ["masked_cutout"]
    policy = update_policy(org, mask_strategy="synthetic")
    assert probe_variants(policy, masked=True) == ["masked_synthetic"]
