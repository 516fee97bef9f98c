"""A model switch without a flag day: recorded and audited, the old model serving each person until
their new templates exist, kept photos re-embedded, the others listed for re-enrollment.
The job's steps run here on constructed pipeline outputs; tests/integration runs them in a worker."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from django.core.exceptions import ValidationError

from faceid import job_records, jobs, model_switch, services, switch_reembed
from faceid.contracts import ModelFrames
from faceid.events import Actor, event_details
from faceid.flows import Caller, FlowError, prepare_enroll, prepare_verify
from faceid.flows.enroll import finish_enroll
from faceid.flows.verify import finish_verify
from faceid.models import FaceTemplate, ImagePurpose, ModelSwitch, SwitchPersonState, VerificationAttempt
from inference.embedders import deployable_embedders, embedder_spec
from inference.variants import VARIANT_FULL
from tenants import services as tenant_services
from tenants.models import Role
from tests.flows.builders import MODEL, THRESHOLDS, at_similarity, frame, images, output, unit

pytestmark = pytest.mark.django_db


@pytest.fixture
def new_model() -> str:
    """A second deployable model to switch to (the policy may only choose deployable ones)."""
    others = [name for name in deployable_embedders() if name != MODEL]
    if not others:
        pytest.skip("a switch needs a second deployable model; only dlib_resnet_v1 has weights here")
    return "sface" if "sface" in others else others[0]


def _events(organization, action: str) -> list[VerificationAttempt]:
    return list(VerificationAttempt.objects.filter(organization=organization, action=action).order_by("seq"))


def _new_templates(organization, person, model_name: str, rng, source: str = "new photo") -> list[float]:
    """Store one new-model template for the person, as the job or a new enrollment would; its vector."""
    vector = unit(rng.standard_normal(embedder_spec(model_name).dim))
    services.store_templates(
        organization,
        person,
        [
            services.TemplateData(
                model_name=model_name,
                model_version=embedder_spec(model_name).version,
                variant=VARIANT_FULL,
                embedding=vector,
                source_sha256=hashlib.sha256(source.encode()).hexdigest(),
            )
        ],
    )
    return vector


def test_a_model_change_records_the_switch_with_the_old_thresholds_and_audits_it(
    organization, gallery, new_model
):
    alice = gallery.enroll("alice").person
    services.create_person(organization, external_id="bob")  # no templates: nothing to migrate

    tenant_services.update_policy(organization, embedding_model=new_model, actor=Actor(client_ip="192.0.2.1"))

    switch = ModelSwitch.objects.get(organization=organization)
    assert (switch.old_model_name, switch.old_model_version) == (MODEL, "test-v1")
    assert (switch.old_threshold_unmasked, switch.old_threshold_masked) == (0.92, 0.96)
    assert (switch.new_model_name, switch.new_model_version) == (new_model, embedder_spec(new_model).version)
    assert switch.status == "running" and len(switch.job_id) == 32
    assert [(row.person_id, row.state) for row in switch.persons.all()] == [(alice.pk, "pending")]
    [event] = _events(organization, "model_switch_start")
    details = event_details(event)
    assert details["old_model"] == MODEL and details["new_model"] == new_model
    assert details["old_thresholds"] == {"unmasked": 0.92, "masked": 0.96}
    assert details["persons"] == 1 and details["switch"] == switch.pk
    assert str(event.client_ip) == "192.0.2.1"


def test_another_model_change_is_refused_while_a_switch_runs(organization, gallery, new_model):
    gallery.enroll("alice")
    tenant_services.update_policy(organization, embedding_model=new_model)
    with pytest.raises(ValidationError, match="still running"):
        tenant_services.update_policy(organization, embedding_model=MODEL)
    assert ModelSwitch.objects.filter(organization=organization).count() == 1


def test_the_old_model_serves_a_person_until_their_new_templates_exist(organization, gallery, new_model):
    alice = gallery.enroll("alice").person
    tenant_services.update_policy(organization, embedding_model=new_model)
    policy = organization.policy
    policy.refresh_from_db()

    model_name, thresholds = model_switch.serving_model(organization, alice)
    assert model_name == MODEL and thresholds == (0.92, 0.96)
    assert [s.model_name for s in model_switch.serving_galleries(organization)] == [new_model, MODEL]

    _new_templates(organization, alice, new_model, gallery.rng)
    model_name, thresholds = model_switch.serving_model(organization, alice)
    assert model_name == new_model
    assert thresholds == (policy.threshold_unmasked, policy.threshold_masked)
    assert [s.model_name for s in model_switch.serving_galleries(organization)] == [new_model]


def test_verify_during_a_switch_matches_with_the_old_model_and_records_its_version(
    organization, caller, gallery, new_model, attempts
):
    gallery.enroll("alice")
    tenant_services.update_policy(organization, embedding_model=new_model)

    prepared = prepare_verify(caller, person_ref="alice", images=images())
    assert prepared.request.embedder == MODEL
    result = finish_verify(prepared.call, output(frame({VARIANT_FULL: [gallery.probe("alice", 0.95)]})))

    assert result.match is True and result.threshold == THRESHOLDS["threshold_unmasked"]
    [row] = attempts()
    assert (row.model_name, row.model_version) == (MODEL, "test-v1")


def test_verify_of_a_person_the_switch_has_not_reached_embeds_with_the_new_model_too(
    organization, caller, gallery, new_model
):
    gallery.enroll("alice")
    tenant_services.update_policy(organization, embedding_model=new_model)

    prepared = prepare_verify(caller, person_ref="alice", images=images())

    assert prepared.request.embedder == MODEL and prepared.request.also_embed == (new_model,)
    # The new photos' masks are unknown when the call is prepared: the mask-aware vectors come too.
    assert prepared.request.mask_aware is True


def test_a_person_the_job_moves_while_the_pipeline_runs_is_decided_with_the_new_model(
    organization, caller, gallery, new_model, attempts
):
    alice = gallery.enroll("alice").person
    tenant_services.update_policy(organization, embedding_model=new_model)
    policy = organization.policy
    policy.refresh_from_db()
    prepared = prepare_verify(caller, person_ref="alice", images=images())
    # Meanwhile the job stores her new template and retires the old ones.
    new_vector = _new_templates(organization, alice, new_model, gallery.rng)
    assert model_switch.retire_old_templates(organization, alice) > 0
    old_frames = frame({VARIANT_FULL: [gallery.probe("alice", 0.95)]})
    new_frames = ModelFrames(
        new_model, "new-v2", (frame({VARIANT_FULL: [at_similarity(new_vector, 0.9, gallery.rng)]}),)
    )

    result = finish_verify(prepared.call, dataclasses.replace(output(old_frames), also=(new_frames,)))

    assert result.match is True and result.model.name == new_model
    assert result.threshold == policy.threshold_unmasked
    [row] = attempts()
    assert (row.model_name, row.model_version, row.decision) == (new_model, "new-v2", "accept")


def test_a_moved_person_without_the_new_models_frames_is_refused_clearly(
    organization, caller, gallery, new_model, attempts
):
    alice = gallery.enroll("alice").person
    tenant_services.update_policy(organization, embedding_model=new_model)
    prepared = prepare_verify(caller, person_ref="alice", images=images())
    _new_templates(organization, alice, new_model, gallery.rng)
    model_switch.retire_old_templates(organization, alice)

    with pytest.raises(FlowError) as refused:
        finish_verify(prepared.call, output(frame({VARIANT_FULL: [gallery.probe("alice", 0.95)]})))

    assert (refused.value.status, refused.value.reason) == (409, "no_templates")
    [row] = attempts()
    assert row.decision == "no_templates"


def test_persons_without_kept_photos_are_listed_and_keep_their_old_templates(
    organization, gallery, new_model
):
    alice = gallery.enroll("alice").person
    tenant_services.update_policy(organization, embedding_model=new_model)  # keep_images is off
    switch = ModelSwitch.objects.get(organization=organization)

    assert switch_reembed.plan(switch.pk) == []

    switch.refresh_from_db()
    assert switch.status == "completed"
    [listed] = model_switch.persons_needing_enrollment(organization)
    assert listed.person == alice and listed.reason == "the policy keeps no images"
    assert model_switch.progress(switch) == {
        "done": 1,
        "total": 1,
        "pending": 0,
        "reembedded": 0,
        "needs_enrollment": 1,
    }
    [event] = _events(organization, "model_switch_complete")
    assert event_details(event)["needs_enrollment"] == 1
    assert event_details(event)["old_templates_kept_for"] == 1
    # Still verifiable with the old model until enrolled again.
    assert model_switch.serving_model(organization, alice).model_name == MODEL


def test_kept_enrollment_photos_are_re_embedded_and_the_old_templates_go(
    organization, gallery, new_model, media_root
):
    tenant_services.update_policy(organization, keep_images=True)
    alice = gallery.enroll("alice").person
    photo = b"alice enrollment photo bytes"
    services.keep_image(organization, data=photo, purpose=ImagePurpose.ENROLLMENT, person=alice)
    tenant_services.update_policy(organization, embedding_model=new_model)
    switch = ModelSwitch.objects.get(organization=organization)

    [item] = switch_reembed.plan(switch.pk)
    assert item.person_id == alice.pk and item.request.embedder == new_model
    assert item.request.kind == "enroll" and item.sources == (hashlib.sha256(photo).hexdigest(),)

    vector = unit(gallery.rng.standard_normal(embedder_spec(new_model).dim))
    reembedded = output(frame({VARIANT_FULL: [vector]})).to_json() | {"model_version": "new-v2"}
    state = switch_reembed.store_reembedded(switch.pk, alice.pk, item.sources, reembedded)

    assert state == SwitchPersonState.REEMBEDDED
    assert set(FaceTemplate.objects.filter(person=alice).values_list("model_name", "model_version")) == {
        (new_model, "new-v2")
    }
    [deleted] = _events(organization, "template_delete")
    assert event_details(deleted)["model_name"] == MODEL
    switch.refresh_from_db()
    assert switch.status == "completed"
    assert model_switch.serving_model(organization, alice).model_name == new_model
    # A redelivered message finds the person settled.
    assert switch_reembed.store_reembedded(switch.pk, alice.pk, item.sources, None) == "reembedded"
    assert len(_events(organization, "model_switch_complete")) == 1


def test_a_photo_the_new_model_cannot_use_lists_the_person(organization, gallery, new_model, media_root):
    tenant_services.update_policy(organization, keep_images=True)
    alice = gallery.enroll("alice").person
    services.keep_image(organization, data=b"blurred", purpose=ImagePurpose.ENROLLMENT, person=alice)
    tenant_services.update_policy(organization, embedding_model=new_model)
    switch = ModelSwitch.objects.get(organization=organization)
    [item] = switch_reembed.plan(switch.pk)

    refused = output(frame(refusal="too_blurred")).to_json()
    assert switch_reembed.store_reembedded(switch.pk, alice.pk, item.sources, refused) == "needs_enrollment"
    [listed] = model_switch.persons_needing_enrollment(organization)
    assert "too_blurred" in listed.reason


def test_enrolling_again_with_the_new_model_retires_the_old_templates(organization, gallery, new_model):
    alice = gallery.enroll("alice").person
    tenant_services.update_policy(organization, embedding_model=new_model)
    switch = ModelSwitch.objects.get(organization=organization)
    switch_reembed.plan(switch.pk)  # no kept photos: alice is listed

    _new_templates(organization, alice, new_model, gallery.rng)
    assert model_switch.retire_old_templates(organization, alice) == 2  # full + cutout

    assert list(model_switch.persons_needing_enrollment(organization)) == []
    assert not FaceTemplate.objects.filter(person=alice, model_name=MODEL).exists()


def test_the_job_status_shows_done_of_total(organization, caller, gallery, new_model):
    gallery.enroll("alice")
    gallery.enroll("bob")
    tenant_services.update_policy(organization, embedding_model=new_model)
    switch = ModelSwitch.objects.get(organization=organization)
    job_records.save(model_switch.job_record(switch))  # what the commit hook does

    job = jobs.get_job(caller, switch.job_id)
    assert job["kind"] == "model_switch" and job["status"] == "pending"
    assert job["progress"] == {"done": 0, "total": 2}
    switch_reembed.plan(switch.pk)
    job = jobs.get_job(caller, switch.job_id)
    assert job["status"] == "done" and job["progress"] == {"done": 2, "total": 2}
    assert job["outcome"]["needs_enrollment"] == 2
    assert {p["external_id"] for p in job["outcome"]["needs_enrollment_persons"]} == {"alice", "bob"}
    # Another organization cannot read it.
    other = tenant_services.create_organization(slug="other-switch", name="Other")
    assert jobs.get_job(Caller(organization=other), switch.job_id) is None


def test_a_person_with_no_templates_of_either_model_is_refused_clearly(
    organization, caller, gallery, new_model
):
    gallery.enroll("alice")
    services.create_person(organization, external_id="carol")
    tenant_services.update_policy(organization, embedding_model=new_model)
    with pytest.raises(FlowError) as refused:
        prepare_verify(caller, person_ref="carol", images=images())
    assert refused.value.status == 409 and refused.value.reason == "no_templates"


def _enroll(caller, person, new_model, rng, *, override=False):
    prepared = prepare_enroll(caller, person=person, images=images(), override=override)
    vector = unit(rng.standard_normal(embedder_spec(new_model).dim))
    return finish_enroll(prepared.call, output(frame({VARIANT_FULL: [vector]})))


def test_an_enroll_key_cannot_add_a_face_to_a_person_the_old_model_still_serves(
    organization, caller, gallery, new_model
):
    # The old templates cannot vouch for a photo embedded with the new model: without this, any
    # enroll key could give a listed person an attacker's face and then verify as them.
    alice = gallery.enroll("alice").person
    tenant_services.update_policy(organization, embedding_model=new_model)

    result = _enroll(caller, alice, new_model, gallery.rng)

    assert result.stored == 0 and result.photos[0].reason == "face_mismatch"
    assert model_switch.serving_model(organization, alice).model_name == MODEL


def test_an_admin_enrolls_a_listed_person_again_and_the_old_templates_retire(
    organization, gallery, new_model, make_console_caller
):
    alice = gallery.enroll("alice").person
    tenant_services.update_policy(organization, embedding_model=new_model)
    switch = ModelSwitch.objects.get(organization=organization)
    switch_reembed.plan(switch.pk)  # no kept photos: alice is listed

    admin = make_console_caller(Role.ADMIN)
    result = _enroll(admin, alice, new_model, gallery.rng, override=True)

    assert result.stored == 1
    assert set(FaceTemplate.objects.filter(person=alice).values_list("model_name", flat=True)) == {new_model}
    assert list(model_switch.persons_needing_enrollment(organization)) == []
    assert model_switch.serving_model(organization, alice).model_name == new_model
    assert len(_events(organization, "enroll_override")) == 1
