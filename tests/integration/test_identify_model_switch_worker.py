"""Identify during a model switch, with the real Celery worker: the probe is embedded with every
serving model in one pipeline task, a person the old model still serves (no kept photo, waiting to
re-enroll) is found in the old gallery with the old thresholds, a person enrolled after the switch
in the new one, and each audit row names the model and version of the gallery that decided."""

from __future__ import annotations

import pytest
from celery.result import AsyncResult

from faceid import services
from faceid.flows import Caller, ImageInput, prepare_enroll, prepare_identify, run_sync
from faceid.models import FaceTemplate, ModelSwitch, VerificationAttempt
from inference.embedders import embedder_spec
from tenants import services as tenant_services
from tests.api.helpers import make_tenant
from tests.plugins.factories import TEST_MODEL
from tests.portraits import ALICE, BOB

OLD = TEST_MODEL  # the model these organizations switch away from
# Long enough for the worker to load the new model the first time; never a sleep, a bounded wait.
TASK_TIMEOUT = 300


@pytest.mark.slow
def test_identify_during_a_switch_finds_persons_of_the_old_and_the_new_gallery_in_the_worker(
    transactional_db, pipeline_worker, photo, new_model
):
    tenant = make_tenant("identify-switching")
    organization = tenant.organization
    caller = Caller(organization=organization)
    # The open-set thresholds of a two-person search stay at the 1:1 ones (0.92 for dlib, what the
    # portraits' genuine pairs clear): this test checks which gallery decides, not the calibration.
    tenant_services.update_policy(organization, identify_fpir=0.5)
    bob = services.create_person(organization, external_id="bob")
    carol = services.create_person(organization, external_id="carol")
    try:
        enrolled = run_sync(prepare_enroll(caller, person=bob, images=[ImageInput(photo(BOB[1][0]))]))
        assert enrolled.stored == 1, enrolled
        tenant_services.update_policy(organization, embedding_model=new_model)  # commits: the job starts
        switch = ModelSwitch.objects.get(organization=organization)
        assert AsyncResult(switch.job_id).get(timeout=TASK_TIMEOUT) == []  # bob has no kept photo
        # carol (alice's portraits) enrolls after the switch: new-model templates only.
        enrolled = run_sync(prepare_enroll(caller, person=carol, images=[ImageInput(photo(ALICE[1][0]))]))
        assert enrolled.stored == 1, enrolled
        assert set(
            FaceTemplate.objects.filter(organization=organization).values_list("person_id", "model_name")
        ) >= {
            (bob.pk, OLD),
            (carol.pk, new_model),
        }

        for person, image, model_name in ((bob, BOB[1][1], OLD), (carol, ALICE[1][1], new_model)):
            prepared = prepare_identify(caller, images=[ImageInput(photo(image), name="probe.jpg")])
            assert prepared.request.models() == (new_model, OLD)
            result = run_sync(prepared)
            assert [m.external_id for m in result.matches][:1] == [person.external_id], result
            row = VerificationAttempt.objects.get(pk=result.attempt_id)
            assert (row.model_name, row.model_version) == (model_name, embedder_spec(model_name).version)
            assert (result.model.name, result.model.version) == (
                model_name,
                embedder_spec(model_name).version,
            )
            assert result.candidates_searched == 2
        bob_row = VerificationAttempt.objects.filter(matched_person=bob, mode="identify").get()
        assert bob_row.threshold == 0.92  # the old model's 1:1 threshold, kept by the switch
    finally:
        for person in (bob, carol):
            services.erase_person(organization, person)
