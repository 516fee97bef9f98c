from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.urls import reverse

from faceid.selectors import probe_variants
from inference.embedders import DEFAULT_EMBEDDER, deployable_embedders, embedder_spec
from inference.embedders.spec import WEIGHTS_DIR_ENV
from tenants import models as tenant_models
from tenants.forms import PolicyForm
from tenants.models import OrganizationPolicy
from tenants.selectors import policy_for
from tenants.services import create_organization, update_policy
from tests.plugins.factories import TEST_MODEL

DLIB, IRESNET = embedder_spec("dlib_resnet_v1"), embedder_spec("iresnet50")


@pytest.fixture
def weights_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty operator weights directory: no iresnet is deployable until a file is put there."""
    monkeypatch.setenv(WEIGHTS_DIR_ENV, str(tmp_path))
    return tmp_path


def install_weights(weights_dir: Path, name: str) -> None:
    # Deployable means "the weights file is where the spec says"; choosing a model never loads it.
    (weights_dir / embedder_spec(name).weights.file).write_bytes(b"an arcface_torch backbone")


def test_a_new_organization_gets_the_default_policy(org):
    policy = policy_for(org)
    assert policy.embedding_model == TEST_MODEL  # the factory's; the registry default is tested below
    assert policy.threshold_unmasked == embedder_spec(TEST_MODEL).default_threshold_unmasked
    assert policy.threshold_masked == embedder_spec(TEST_MODEL).default_threshold_masked
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


def test_switching_model_resets_thresholds_unless_given(org, weights_dir):
    install_weights(weights_dir, "iresnet50")
    policy = update_policy(org, embedding_model="iresnet50")
    assert (policy.threshold_unmasked, policy.threshold_masked) == (
        IRESNET.default_threshold_unmasked,
        IRESNET.default_threshold_masked,
    )
    policy = update_policy(org, embedding_model="dlib_resnet_v1", threshold_unmasked=0.93)
    assert policy.threshold_unmasked == 0.93
    assert policy.threshold_masked == DLIB.default_threshold_masked


def test_a_model_without_weights_here_cannot_be_chosen(org, weights_dir):
    assert "iresnet50" not in deployable_embedders()
    with pytest.raises(ValidationError) as refused:
        update_policy(org, embedding_model="iresnet50")
    [message] = refused.value.message_dict["embedding_model"]
    assert "iresnet50" in message and "deployable models: dlib_resnet_v1, fusion_sface_intel" in message
    assert policy_for(org).embedding_model == TEST_MODEL


def test_an_organization_whose_model_lost_its_weights_keeps_it(org, weights_dir):
    install_weights(weights_dir, "iresnet50")
    update_policy(org, embedding_model="iresnet50", threshold_unmasked=0.4)
    (weights_dir / IRESNET.weights.file).unlink()

    # Its other settings still change, and its model (and templates) stay as they are.
    policy = update_policy(org, lockout_failures=3)
    assert (policy.embedding_model, policy.threshold_unmasked, policy.lockout_failures) == (
        "iresnet50",
        0.4,
        3,
    )
    # It may move to a deployable model (thresholds reset), but not back without the weights.
    policy = update_policy(org, embedding_model="dlib_resnet_v1")
    assert (policy.threshold_unmasked, policy.threshold_masked) == (
        DLIB.default_threshold_unmasked,
        DLIB.default_threshold_masked,
    )
    with pytest.raises(ValidationError, match="deployable models: dlib_resnet_v1"):
        update_policy(org, embedding_model="iresnet50")


def test_any_save_that_switches_the_model_resets_the_thresholds_it_left_alone(org, weights_dir):
    install_weights(weights_dir, "iresnet50")
    policy = policy_for(org)
    policy.embedding_model = "iresnet50"
    policy.threshold_masked = 0.25
    policy.save(update_fields=["embedding_model", "threshold_masked"])

    policy.refresh_from_db()
    assert (policy.threshold_unmasked, policy.threshold_masked) == (IRESNET.default_threshold_unmasked, 0.25)


def test_policy_form_offers_the_deployable_models_and_the_current_one(org, weights_dir):
    def offered(policy: OrganizationPolicy) -> list[str]:
        return [value for value, _ in PolicyForm(instance=policy).fields["embedding_model"].widget.choices]

    shipped = ["dlib_resnet_v1", "fusion_sface_intel", "intel_0095", "intel_0095_mask_lfw", "sface"]
    assert offered(policy_for(org)) == shipped
    install_weights(weights_dir, "iresnet50")
    assert offered(policy_for(org)) == sorted([*shipped, "iresnet50"])
    update_policy(org, embedding_model="iresnet50")
    (weights_dir / IRESNET.weights.file).unlink()
    # Kept on offer (after the deployable ones), so that saving another field does not switch
    # the model away.
    assert offered(policy_for(org)) == [*shipped, "iresnet50"]


def _admin_change_form(admin_client, org) -> tuple[str, dict[str, object]]:
    """The organization's admin page and the data its form posts back unchanged."""
    url = reverse("admin:tenants_organization_change", args=[org.pk])
    response = admin_client.get(url)
    assert response.status_code == 200
    data: dict[str, object] = {}
    forms = [response.context["adminform"].form]
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        data.update(
            {f"{formset.prefix}-{key}": value for key, value in formset.management_form.initial.items()}
        )
        forms.extend(formset.forms)
    for form in forms:
        for name, field in form.fields.items():
            value = form.initial.get(name, field.initial)
            if value is None or value is False:
                continue
            data[form.add_prefix(name)] = "on" if value is True else value
    return url, data


def test_the_django_admin_switches_model_and_resets_the_thresholds(admin_client, org, weights_dir):
    install_weights(weights_dir, "iresnet50")
    url, data = _admin_change_form(admin_client, org)
    page = admin_client.get(url).content.decode()
    assert 'value="iresnet50"' in page and 'value="iresnet18"' not in page

    response = admin_client.post(url, {**data, "policy-0-embedding_model": "iresnet50"})

    assert response.status_code == 302, response.context["inline_admin_formsets"][0].formset.errors
    policy = policy_for(org)
    assert policy.embedding_model == "iresnet50"
    assert (policy.threshold_unmasked, policy.threshold_masked) == (
        IRESNET.default_threshold_unmasked,
        IRESNET.default_threshold_masked,
    )


def test_the_django_admin_refuses_a_model_without_weights(admin_client, org, weights_dir):
    url, data = _admin_change_form(admin_client, org)

    response = admin_client.post(url, {**data, "policy-0-embedding_model": "iresnet18"})

    assert response.status_code == 200
    [errors] = response.context["inline_admin_formsets"][0].formset.errors
    assert "deployable models: dlib_resnet_v1" in errors["embedding_model"][0]
    assert policy_for(org).embedding_model == TEST_MODEL


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
    assert policy_for(org).embedding_model == TEST_MODEL


def test_the_database_refuses_out_of_range_policies(org):
    with pytest.raises(IntegrityError), transaction.atomic():
        OrganizationPolicy.objects.filter(organization=org).update(threshold_masked=3)


def test_mask_decision_threshold_and_template_variants_follow_the_policy(org):
    policy = update_policy(org, mask_threshold=0.6, threshold_unmasked=0.93, threshold_masked=0.97)
    # The pipeline's rule (inference.variants.is_masked): reaching the threshold counts as masked.
    assert policy.is_masked(0.6) and not policy.is_masked(0.59) and not policy.is_masked(None)
    assert policy.threshold_for(masked=True) == 0.97 and policy.threshold_for(masked=False) == 0.93
    assert probe_variants(policy, masked=False) == ["full"]
    assert probe_variants(policy, masked=True) == ["masked_cutout"]
    policy = update_policy(org, mask_strategy="synthetic")
    assert probe_variants(policy, masked=True) == ["masked_synthetic"]


# --- floors --------------------------------------------------------------------------------------


def test_the_registry_gives_every_model_floors_at_or_below_its_defaults():
    assert (DLIB.floor_threshold_unmasked, DLIB.floor_threshold_masked) == (0.91, 0.95)
    assert (IRESNET.floor_threshold_unmasked, IRESNET.floor_threshold_masked) == (0.20, 0.20)
    with pytest.raises(ValueError, match="floor"):
        fields = {name: getattr(DLIB, name) for name in DLIB.__dataclass_fields__}
        type(DLIB)(**{**fields, "floor_threshold_masked": 0.97})  # above the default 0.96


@pytest.mark.parametrize(
    ("fields", "refused"),
    [
        ({"threshold_unmasked": 0.9099}, "threshold_unmasked"),
        ({"threshold_masked": 0.94}, "threshold_masked"),
        ({"threshold_unmasked": 0.29, "threshold_masked": 0.29}, "threshold_masked"),
    ],
)
def test_the_service_refuses_thresholds_below_the_models_floor(org, fields, refused):
    with pytest.raises(ValidationError) as error:
        update_policy(org, **fields)
    assert "floor of dlib_resnet_v1" in error.value.message_dict[refused][0]
    policy = policy_for(org)
    assert (policy.threshold_unmasked, policy.threshold_masked) == (0.94, 0.96)


def test_a_threshold_at_the_floor_is_accepted(org):
    policy = update_policy(org, threshold_unmasked=0.91, threshold_masked=0.95)
    assert (policy.threshold_unmasked, policy.threshold_masked) == (0.91, 0.95)


def test_floors_follow_the_model_a_switch_chooses(org, weights_dir):
    install_weights(weights_dir, "iresnet50")
    with pytest.raises(ValidationError, match="floor of iresnet50"):
        update_policy(org, embedding_model="iresnet50", threshold_unmasked=0.1)
    policy = update_policy(org, embedding_model="iresnet50", threshold_unmasked=0.2)
    assert (policy.threshold_unmasked, policy.threshold_masked) == (0.2, IRESNET.default_threshold_masked)
    # Back to dlib: a threshold left at iresnet's value is reset to dlib's default, not refused...
    policy = update_policy(org, embedding_model="dlib_resnet_v1", threshold_unmasked=0.93)
    assert (policy.threshold_unmasked, policy.threshold_masked) == (0.93, DLIB.default_threshold_masked)
    # ...and one given with the switch is held to dlib's floor.
    update_policy(org, embedding_model="iresnet50")
    with pytest.raises(ValidationError, match="floor of dlib_resnet_v1"):
        update_policy(org, embedding_model="dlib_resnet_v1", threshold_unmasked=0.5)
    assert policy_for(org).embedding_model == "iresnet50"


def test_a_save_without_full_clean_is_refused_below_the_floor(org):
    policy = policy_for(org)
    policy.threshold_unmasked = 0.5
    with pytest.raises(ValidationError, match="floor"):
        policy.save()
    assert policy_for(org).threshold_unmasked == 0.94


def test_the_database_refuses_thresholds_below_the_floor(org):
    with pytest.raises(IntegrityError, match="tenants_policy_thresholds_floor"), transaction.atomic():
        OrganizationPolicy.objects.filter(organization=org).update(threshold_unmasked=0.29)
    with pytest.raises(IntegrityError, match="tenants_policy_thresholds_floor"), transaction.atomic():
        OrganizationPolicy.objects.filter(organization=org).update(embedding_model="facenet")


@pytest.mark.django_db
def test_the_floor_constraint_has_its_migration():
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("makemigrations", "tenants", "--check", "--dry-run", stdout=out)  # exits 1 when missing


def test_the_policy_form_shows_and_enforces_the_floors(org):
    form = PolicyForm(instance=policy_for(org))
    assert "dlib_resnet_v1 0.91" in form.fields["threshold_unmasked"].help_text
    assert "dlib_resnet_v1 0.95" in form.fields["threshold_masked"].help_text
    data = {**form.initial, "threshold_masked": "0.9"}
    data = {k: v for k, v in data.items() if v is not None and v is not False}
    bound = PolicyForm(data, instance=policy_for(org))
    assert not bound.is_valid() and "floor of dlib_resnet_v1" in bound.errors["threshold_masked"][0]


def test_the_django_admin_refuses_a_threshold_below_the_floor(admin_client, org):
    url, data = _admin_change_form(admin_client, org)
    assert "dlib_resnet_v1 0.91" in admin_client.get(url).content.decode()

    response = admin_client.post(url, {**data, "policy-0-threshold_unmasked": "0.29"})

    assert response.status_code == 200
    [errors] = response.context["inline_admin_formsets"][0].formset.errors
    assert "floor of dlib_resnet_v1" in errors["threshold_unmasked"][0]
    assert policy_for(org).threshold_unmasked == 0.94


# --- every change audited ------------------------------------------------------------------------


def policy_events(org):
    from faceid.events import Action, event_details
    from faceid.models import VerificationAttempt

    rows = VerificationAttempt.objects.filter(organization=org, action=Action.POLICY_CHANGE).order_by("pk")
    return [(row, event_details(row)["changes"]) for row in rows]


def test_a_policy_change_is_audited_with_old_and_new_values_and_the_actor(org, django_user_model):
    from faceid.audit import verify_chain
    from faceid.events import Actor

    user = django_user_model.objects.create_user("boss@example.com", password="x")
    update_policy(
        org, actor=Actor(user=user, client_ip="10.0.0.9"), threshold_unmasked=0.95, lockout_failures=3
    )
    update_policy(org, lockout_failures=3)  # nothing changed: nothing recorded

    [(row, changes)] = policy_events(org)
    assert changes == {"threshold_unmasked": [0.94, 0.95], "lockout_failures": [5, 3]}
    assert row.user_id == user.pk and row.client_ip == "10.0.0.9" and row.decision == ""
    assert verify_chain(org).ok


def test_a_model_switch_audits_the_thresholds_it_resets(org, weights_dir):
    install_weights(weights_dir, "iresnet50")
    update_policy(org, embedding_model="iresnet50")
    [(_, changes)] = policy_events(org)
    assert changes == {
        "embedding_model": ["dlib_resnet_v1", "iresnet50"],
        "threshold_unmasked": [0.94, 0.36],
        "threshold_masked": [0.96, 0.30],
    }


def test_a_refused_change_is_neither_saved_nor_audited(org):
    with pytest.raises(ValidationError):
        update_policy(org, lockout_failures=2, threshold_unmasked=0.5)
    assert policy_events(org) == [] and policy_for(org).lockout_failures == 5


def test_the_django_admin_audits_a_policy_change_with_its_user(admin_client, admin_user, org):
    url, data = _admin_change_form(admin_client, org)
    response = admin_client.post(url, {**data, "policy-0-threshold_masked": "0.97"})
    assert response.status_code == 302
    [(row, changes)] = policy_events(org)
    assert changes == {"threshold_masked": [0.96, 0.97]} and row.user_id == admin_user.pk
    assert policy_for(org).threshold_masked == 0.97


# --- scores of rejects ---------------------------------------------------------------------------


def _verify_result(org, decision: str, similarity: float):
    from faceid import services as audit_services
    from faceid.flows.results import ModelRef, PersonRef, VerifyResult

    row = audit_services.record_attempt(
        org, mode="verify", decision=decision, similarity=similarity, threshold=0.94, masked=False
    )
    return VerifyResult(
        threshold=0.94,
        masked=False,
        mask_probability=0.01,
        attempt_id=row.pk,
        latency_ms=12.0,
        pipeline_ms=10.0,
        decision=decision,
        frames=(),
        model=ModelRef("dlib_resnet_v1", "v"),
        match=decision == "accept",
        similarity=similarity,
        person=PersonRef(1, "alice"),
        frame=0,
        quality=0.9,
    ), row


def test_a_reject_answers_without_its_similarity_unless_the_policy_reveals_it(org):
    from faceid.api.results import RESULT_SERIALIZERS, JobSerializer, VerifyResultSerializer

    assert policy_for(org).reveal_scores_on_reject is False  # the default
    reject, row = _verify_result(org, "reject", 0.812345)
    accept, _ = _verify_result(org, "accept", 0.971234)
    job = {
        "id": "j",
        "kind": "verify",
        "status": "done",
        "created_at": None,
        "finished_at": None,
        "http_status": 200,
    }

    assert VerifyResultSerializer(reject).data["similarity"] is None
    assert "similarity" in VerifyResultSerializer(reject).data  # the key stays: the schema says nullable
    assert RESULT_SERIALIZERS["verify"](reject).data["similarity"] is None  # the console's JSON
    assert JobSerializer({**job, "outcome": reject.to_json()}).data["result"]["similarity"] is None
    assert VerifyResultSerializer(accept).data["similarity"] == 0.971234
    row.refresh_from_db()
    assert row.similarity == pytest.approx(0.812345)  # the audit log keeps it

    update_policy(org, reveal_scores_on_reject=True)
    assert VerifyResultSerializer(reject).data["similarity"] == 0.812345
    assert JobSerializer({**job, "outcome": reject.to_json()}).data["result"]["similarity"] == 0.812345


def test_the_django_admin_adds_an_organization_with_its_policy_through_the_service(admin_client, admin_user):
    url = reverse("admin:tenants_organization_add")
    page = admin_client.get(url)
    data: dict[str, object] = {"slug": "added", "name": "Added", "active": "on"}
    for inline in page.context["inline_admin_formsets"]:
        formset = inline.formset
        data.update({f"{formset.prefix}-{k}": v for k, v in formset.management_form.initial.items()})
        for form in formset.forms:
            for name, field in form.fields.items():
                value = form.initial.get(name, field.initial)
                if value is not None and value is not False:
                    data[form.add_prefix(name)] = "on" if value is True else value
    data["policy-0-threshold_unmasked"] = "0.95"

    response = admin_client.post(url, data)

    assert response.status_code == 302, response.context["inline_admin_formsets"][0].formset.errors
    org = tenant_models.Organization.objects.get(slug="added")
    assert policy_for(org).threshold_unmasked == 0.95
    [(row, changes)] = policy_events(org)
    # The admin's inline starts from the registry default's thresholds.
    default_unmasked = embedder_spec(DEFAULT_EMBEDDER).default_threshold_unmasked
    assert changes == {"threshold_unmasked": [default_unmasked, 0.95]}
    assert row.user_id == admin_user.pk


def test_a_new_organization_starts_on_the_registry_default_with_its_thresholds(db):
    organization = create_organization(slug="fresh", name="Fresh")
    policy = policy_for(organization)
    spec = embedder_spec(DEFAULT_EMBEDDER)
    assert policy.embedding_model == DEFAULT_EMBEDDER == "intel_0095"
    assert (policy.threshold_unmasked, policy.threshold_masked) == (
        spec.default_threshold_unmasked,
        spec.default_threshold_masked,
    )


def test_an_organization_created_on_a_model_starts_there_without_a_switch(db):
    from faceid.models import ModelSwitch

    organization = create_organization(slug="fused", name="Fused", embedding_model="fusion_sface_intel")
    policy = policy_for(organization)
    assert (policy.embedding_model, policy.threshold_unmasked) == ("fusion_sface_intel", 0.38)
    assert not ModelSwitch.objects.filter(organization=organization).exists()
    with pytest.raises(ValidationError) as refused:
        create_organization(slug="nope", name="Nope", embedding_model="iresnet50")
    assert "not deployable" in refused.value.message_dict["embedding_model"][0]
