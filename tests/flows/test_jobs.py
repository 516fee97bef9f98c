"""An asynchronous call finishes like a synchronous one, once, and renders the same answer."""

from __future__ import annotations

import pytest

from faceid.api.results import JobSerializer, VerifyResultSerializer
from faceid.contracts import PipelineFailure
from faceid.flows import prepare_verify
from faceid.flows.verify import finish_verify
from faceid.jobs import _key, _save, complete_job
from inference.variants import VARIANT_FULL
from tests.flows.builders import frame, images, output

pytestmark = pytest.mark.django_db


def _job(prepared) -> str:
    """A job record as submit_job writes it, without sending anything to a broker."""
    job_id = f"test{id(prepared):x}"
    _save(
        {
            "id": job_id,
            "kind": prepared.call.kind,
            "status": "pending",
            "organization_id": prepared.call.caller.organization.pk,
            "created_at": "2026-11-29T00:00:00+00:00",
            "finished_at": None,
            "http_status": None,
            "outcome": None,
            "refusal": None,
            "pipeline_task_id": "none",
            "call": prepared.call.to_json(),
        }
    )
    return job_id


def test_a_job_answers_what_the_synchronous_call_answers(caller, gallery, attempts):
    from django.core.cache import cache

    gallery.enroll("alice")
    probe = output(frame({VARIANT_FULL: [gallery.probe("alice", 0.97)]}))
    job_id = _job(prepare_verify(caller, person_ref="alice", images=images()))
    try:
        record = complete_job(job_id, pipeline_output=probe.to_json())
        sync = finish_verify(prepare_verify(caller, person_ref="alice", images=images()).call, probe)
        polled = JobSerializer(record).data
        assert polled["status"] == "done" and polled["http_status"] == 200
        rendered = VerifyResultSerializer(sync).data
        skip = {"attempt_id", "latency_ms"}
        assert {k: v for k, v in polled["result"].items() if k not in skip} == {
            k: v for k, v in rendered.items() if k not in skip
        }
        assert complete_job(job_id, pipeline_output=probe.to_json())["status"] == "done"
        assert [row.decision for row in attempts()] == ["accept", "accept"]  # the redelivery did not audit
    finally:
        cache.delete(_key(job_id))
        cache.delete(f"{_key(job_id)}:lock")


def test_a_failed_job_keeps_the_refusal_body(caller, gallery, attempts):
    from django.core.cache import cache

    gallery.enroll("alice")
    job_id = _job(prepare_verify(caller, person_ref="alice", images=images()))
    try:
        record = complete_job(job_id, failure=PipelineFailure("timeout", "time_limit", "stopped"))
        polled = JobSerializer(record).data
        assert polled["status"] == "failed" and polled["http_status"] == 504
        assert polled["result"]["reason"] == "pipeline_timeout" and polled["result"]["attempt_id"]
        assert [row.decision for row in attempts()] == ["timeout"]
    finally:
        cache.delete(_key(job_id))
        cache.delete(f"{_key(job_id)}:lock")
