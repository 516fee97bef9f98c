"""Biometric data does not linger: an async job's record holds no raw image, its answer and the
pipeline's result (embeddings) are deleted once consumed, erasing a person deletes their job
records, and beat's purge task deletes expired kept images. Real cache (Redis) and database; the
broker is not used (submit_job's chain is captured, nothing is sent)."""

from __future__ import annotations

import base64
import itertools
import json
from datetime import timedelta

import numpy as np
import pytest
from celery.result import AsyncResult
from django.core.cache import cache
from django.utils import timezone

from config import celery_app
from faceid import job_records, jobs, services
from faceid.flows import Caller, prepare_identify, prepare_verify
from faceid.models import StoredImage
from inference.variants import VARIANT_FULL
from tenants import services as tenant_services
from tests.flows.builders import THRESHOLDS, Gallery, frame, images, output

pytestmark = pytest.mark.django_db

_serial = itertools.count(1)


@pytest.fixture
def organization(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    return tenant_services.create_organization(
        slug=f"retention-{next(_serial)}", name="Retention", mask_strategy="cutout", **THRESHOLDS
    )


@pytest.fixture
def caller(organization) -> Caller:
    key, _ = tenant_services.create_api_key(organization, name="kiosk", scopes=["verify", "identify"])
    return Caller(organization=organization, api_key=key, client_ip="192.0.2.7")


@pytest.fixture
def gallery(organization) -> Gallery:
    return Gallery(organization, np.random.default_rng(11))


@pytest.fixture
def submitted(monkeypatch):
    """submit_job without a broker: the chain it builds is kept, not sent. Cleans the cache after."""
    sent: list = []

    class Captured:
        def __init__(self, *tasks) -> None:
            self.tasks = tasks

        def apply_async(self) -> None:
            sent.append(self.tasks)

    monkeypatch.setattr(jobs, "chain", Captured)
    made: list[str] = []

    def submit(prepared) -> dict:
        record = jobs.submit_job(prepared)
        made.append(record["id"])
        return record

    yield submit
    for job_id in made:
        cache.delete_many(
            [job_records.record_key(job_id), job_records.lock_key(job_id), job_records.kept_key(job_id)]
        )


def _raw(job_id: str) -> str:
    return json.dumps(cache.get(job_records.record_key(job_id)), default=str)


def test_the_job_record_holds_no_raw_image_and_kept_images_are_still_kept(caller, gallery, submitted):
    tenant_services.update_policy(caller.organization, keep_images=True)
    alice = gallery.enroll("alice")
    sent = images()
    record = submitted(prepare_verify(caller, person_ref="alice", images=sent))
    encoded = base64.b64encode(sent[0].data).decode()
    assert encoded not in _raw(record["id"])
    assert all(
        image["kept_b64"] is None
        for image in cache.get(job_records.record_key(record["id"]))["call"]["images"]
    )
    probe = output(frame({VARIANT_FULL: [gallery.probe("alice", 0.995)]}))
    finished = jobs.complete_job(record["id"], pipeline_output=probe.to_json())
    assert finished["status"] == "done"
    kept = StoredImage.objects.get(organization=caller.organization)
    assert kept.sha256 == sent[0].sha256 and kept.attempt.claimed_person == alice.person
    assert cache.get(job_records.kept_key(record["id"])) is None  # gone with the finished job


def test_a_finished_job_is_handed_over_once_and_its_pipeline_result_deleted(caller, gallery, submitted):
    gallery.enroll("alice")
    record = submitted(prepare_verify(caller, person_ref="alice", images=images()))
    probe = output(frame({VARIANT_FULL: [gallery.probe("alice", 0.995)]}))
    # What the pipeline task leaves in the result backend: its output, embeddings included.
    celery_app.backend.store_result(record["pipeline_task_id"], probe.to_json(), "SUCCESS")
    assert AsyncResult(record["pipeline_task_id"]).state == "SUCCESS"
    jobs.complete_job(record["id"], pipeline_output=probe.to_json())
    assert AsyncResult(record["pipeline_task_id"]).state == "PENDING"  # forgotten
    polled = jobs.get_job(caller, record["id"])
    assert polled["status"] == "done" and polled["outcome"]["match"] is True
    assert jobs.get_job(caller, record["id"]) is None
    assert cache.get(job_records.record_key(record["id"])) is None


def test_a_pending_job_stays_until_it_is_finished(caller, gallery, submitted):
    gallery.enroll("alice")
    record = submitted(prepare_verify(caller, person_ref="alice", images=images()))
    assert jobs.get_job(caller, record["id"])["status"] == "pending"
    assert jobs.get_job(caller, record["id"])["status"] == "pending"


def test_erasing_a_person_deletes_their_job_records(
    caller, gallery, submitted, django_capture_on_commit_callbacks
):
    alice, bob = gallery.enroll("alice"), gallery.enroll("bob")
    pending = submitted(prepare_verify(caller, person_ref="alice", images=images()))
    done = submitted(prepare_verify(caller, person_ref="alice", images=images()))
    jobs.complete_job(
        done["id"], pipeline_output=output(frame({VARIANT_FULL: [gallery.probe("alice", 0.995)]})).to_json()
    )
    # identify names its matches only when finished: indexed then
    matched = submitted(prepare_identify(caller, images=images()))
    jobs.complete_job(
        matched["id"],
        pipeline_output=output(frame({VARIANT_FULL: [gallery.probe("alice", 0.995)]})).to_json(),
    )
    assert cache.get(job_records.record_key(matched["id"]))["outcome"]["matches"]
    other = submitted(prepare_verify(caller, person_ref="bob", images=images()))
    with django_capture_on_commit_callbacks(execute=True):
        services.erase_person(caller.organization, alice.person)
    for job in (pending, done, matched):
        assert cache.get(job_records.record_key(job["id"])) is None
        assert jobs.get_job(caller, job["id"]) is None
    assert jobs.get_job(caller, other["id"])["status"] == "pending"  # bob's job is untouched
    assert bob.person.pk
    # The erased person's pending job, if its output still arrives, is not finished for nobody.
    late = jobs.complete_job(
        pending["id"], pipeline_output=output(frame({VARIANT_FULL: [alice.full]})).to_json()
    )
    assert late["status"] == "failed" and cache.get(job_records.record_key(pending["id"])) is None


def test_beats_purge_task_deletes_expired_kept_images(organization):
    tenant_services.update_policy(organization, keep_images=True, image_retention_days=1)
    old = services.keep_image(organization, data=b"old", purpose="enrollment")
    fresh = services.keep_image(organization, data=b"fresh", purpose="enrollment")
    StoredImage.objects.filter(pk=old.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert jobs.purge_expired_images.run() == 1
    assert list(StoredImage.objects.values_list("pk", flat=True)) == [fresh.pk]
