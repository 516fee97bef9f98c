"""A model switch run by the real Celery worker: a person with a kept enrollment photo is re-embedded
with the new model, a person without one is listed for re-enrollment and keeps verifying with the
old model, every decision records the model version it used, and the API shows the job's progress."""

from __future__ import annotations

import pytest
from celery.result import AsyncResult

from faceid import model_switch, services
from faceid.audit import verify_chain
from faceid.flows import Caller, ImageInput, prepare_enroll, prepare_verify, run_sync
from faceid.jobs import settling_task_id
from faceid.models import FaceTemplate, ModelSwitch, Person, VerificationAttempt
from inference.embedders import embedder_spec
from tenants import services as tenant_services
from tests.api.helpers import make_tenant
from tests.plugins.factories import TEST_MODEL
from tests.portraits import ALICE, BOB

OLD = TEST_MODEL  # the model these organizations switch away from
# Long enough for the worker to load the new model the first time; never a sleep, a bounded wait.
TASK_TIMEOUT = 300


def _enroll(caller: Caller, person: Person, image: bytes, name: str) -> None:
    result = run_sync(prepare_enroll(caller, person=person, images=[ImageInput(image, name=name)]))
    assert result.stored == 1, result


def _verify(caller: Caller, claim: str, image: bytes):
    return run_sync(prepare_verify(caller, person_ref=claim, images=[ImageInput(image, name="probe.jpg")]))


def _wait_for_the_job(switch: ModelSwitch) -> None:
    """The job's first task answers with the ids of the storing tasks it chained; wait on each (on
    the settling task instead where the pipeline task failed)."""
    store_ids = AsyncResult(switch.job_id).get(timeout=TASK_TIMEOUT)
    for store_id in store_ids:
        stored = AsyncResult(store_id)
        stored.get(timeout=TASK_TIMEOUT, propagate=False)
        if stored.failed():
            AsyncResult(settling_task_id(store_id)).get(timeout=TASK_TIMEOUT)


@pytest.mark.slow
def test_a_switch_re_embeds_kept_photos_in_the_worker_and_verify_keeps_working(
    transactional_db, pipeline_worker, photo, new_model
):
    tenant = make_tenant("switching")
    organization = tenant.organization
    caller = Caller(organization=organization)
    alice = services.create_person(organization, external_id="alice")
    bob = services.create_person(organization, external_id="bob")
    try:
        _enroll(caller, bob, photo(BOB[1][0]), BOB[1][0])  # images not kept: bob must re-enroll
        tenant_services.update_policy(organization, keep_images=True)
        _enroll(caller, alice, photo(ALICE[1][0]), ALICE[1][0])

        tenant_services.update_policy(organization, embedding_model=new_model)  # commits: the job starts
        switch = ModelSwitch.objects.get(organization=organization)
        # While the job runs, alice is matched with whichever model holds her templates right now:
        # either way she is accepted, and the decision names the model and version it used.
        during = _verify(caller, "alice", photo(ALICE[1][2]))
        assert during.match is True, during
        row = VerificationAttempt.objects.get(pk=during.attempt_id)
        assert (row.model_name, row.model_version) in {
            (OLD, embedder_spec(OLD).version),
            (new_model, embedder_spec(new_model).version),
        }
        _wait_for_the_job(switch)

        switch.refresh_from_db()
        assert switch.status == "completed"
        assert model_switch.progress(switch) == {
            "done": 2,
            "total": 2,
            "pending": 0,
            "reembedded": 1,
            "needs_enrollment": 1,
        }
        new_version = embedder_spec(new_model).version
        assert set(FaceTemplate.objects.filter(person=alice).values_list("model_name", "model_version")) == {
            (new_model, new_version)
        }
        [listed] = model_switch.persons_needing_enrollment(organization)
        assert listed.person == bob and listed.reason == "no kept enrollment photo"

        # The API's job status: done of total.
        client = tenant.client("audit:read")
        job = client.get(f"/api/v1/jobs/{switch.job_id}/")
        assert job.status_code == 200, job.content
        assert job.json()["status"] == "done" and job.json()["progress"] == {"done": 2, "total": 2}
        assert job.json()["result"]["needs_enrollment"] == 1

        # Alice verifies with the new model, bob still with the old one (his only templates).
        for claim, image, model_name, version in (
            ("alice", photo(ALICE[1][1]), new_model, new_version),
            ("bob", photo(BOB[1][1]), OLD, embedder_spec(OLD).version),
        ):
            result = _verify(caller, claim, image)
            assert result.match is True, (claim, result)
            row = VerificationAttempt.objects.get(pk=result.attempt_id)
            assert (row.model_name, row.model_version) == (model_name, version)
        bob_row = VerificationAttempt.objects.filter(claimed_person=bob, mode="verify").get()
        assert bob_row.threshold == 0.92  # the old model's threshold, kept by the switch

        actions = list(
            VerificationAttempt.objects.filter(organization=organization, mode="event").values_list(
                "action", flat=True
            )
        )
        assert "model_switch_start" in actions and "model_switch_complete" in actions
        assert verify_chain(organization).ok
    finally:
        # Kept photos live in the media folder the worker shares: erasure removes them.
        for person in (alice, bob):
            services.erase_person(organization, person)


def test_a_re_embedding_the_worker_cannot_do_lists_the_person_and_completes_the_switch(
    transactional_db, celery_worker
):
    # iresnet50 is registered but its weights are not installed: the worker's pipeline task fails,
    # and its error callback settles the person under the storing task's id.
    from django.db import transaction

    from tests.api.helpers import store_random_template

    tenant = make_tenant("switch-fails")
    organization = tenant.organization
    tenant_services.update_policy(organization, keep_images=True)
    alice = services.create_person(organization, external_id="alice")
    try:
        store_random_template(organization, alice, seed=3, source_sha256="b" * 64)
        services.keep_image(organization, data=b"a kept photo", purpose="enrollment", person=alice)
        with transaction.atomic():
            switch = model_switch.start_switch(
                organization,
                old_model=OLD,
                old_thresholds=model_switch.Thresholds(0.92, 0.95),
                new_model="iresnet50",
            )
        _wait_for_the_job(switch)

        switch.refresh_from_db()
        assert switch.status == "completed"
        [listed] = model_switch.persons_needing_enrollment(organization, switch)
        assert listed.person == alice and listed.reason.startswith("re-embedding failed (reference ")
        # Nothing was lost: alice's old templates still serve her.
        assert FaceTemplate.objects.filter(person=alice, model_name=OLD).count() == 1
    finally:
        services.erase_person(organization, alice)
