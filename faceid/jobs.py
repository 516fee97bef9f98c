"""Asynchronous calls (``?async=true``): 202 with a job URL, polled at GET /api/v1/jobs/{id}/.

The job record lives in the Django cache (Redis, ``faceid.job_records``) for at most
FACEID_JOB_TTL_SECONDS, holds no raw image, and is deleted once a poll has read the finished
answer (and when its person is erased). Submitting chains
the pipeline task (queue `inference`) with ``finish_job`` (queue `default`, see CELERY_TASK_ROUTES),
which finishes the flow exactly like a synchronous call and stores its answer in the record. A
pipeline error reaches finish_job through the error callback ``job_pipeline_failed``.
``complete_job`` takes a lock so that a redelivered message, or the poller declaring an abandoned
job timed out, never audits twice.

Status: ``pending`` (queued), ``running`` (the pipeline or the finishing step has started),
``done`` (answered 2xx) or ``failed`` (answered 4xx/5xx). ``http_status`` is the status the
synchronous call would have had; the record keeps the flow's typed result as JSON (``outcome``)
for the API to render with the same serializers as the synchronous answer, or the refusal's body.
The pipeline task's result (its output, with embeddings) is deleted from the result backend as
soon as the job is finished.

``purge_expired_images`` (Celery beat, see CELERY_BEAT_SCHEDULE) deletes kept images past their
retention.

A model switch's job (faceid.model_switch) is a job of kind ``model_switch``: ``run_model_switch``
chains, per person to re-embed, the pipeline task with ``store_switch_templates``. Its record only
names the switch: get_job reads its status and progress (done/total) from the database, and a read
does not consume it (it expires with FACEID_JOB_TTL_SECONDS; the console shows the switch anyway).
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from celery import chain, current_app, shared_task
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from celery.result import AsyncResult
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from faceid import job_records, model_switch, services, switch_reembed
from faceid.contracts import ContractError, PipelineFailure, PipelineOutput
from faceid.flows.common import Caller, FlowCall, FlowError, PreparedCall
from faceid.flows.runner import PIPELINE_TASK, finish
from faceid.models import ModelSwitch
from faceid.task_results import TaskInputError

logger = logging.getLogger(__name__)

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"


def _deadline_seconds() -> float:
    """After this long without an answer the poller declares the job timed out (and audits it)."""
    return float(getattr(settings, "FACEID_JOB_DEADLINE_SECONDS", settings.CELERY_TASK_TIME_LIMIT * 3 + 60))


_key = job_records.record_key
_save = job_records.save


def submit_job(prepared: PreparedCall, *, slot: str | None = None) -> dict[str, Any]:
    """Queue the call and return the new job record (status pending). ``slot``: the organization's
    in-flight slot (faceid.api.throttling.acquire_slot) the job holds until it is finished."""
    call = prepared.call
    job_id = uuid.uuid4().hex
    pipeline_task_id = str(uuid.uuid4())
    record = {
        "id": job_id,
        "kind": call.kind,
        "status": PENDING,
        "organization_id": call.caller.organization.pk,
        "created_at": timezone.now().isoformat(),
        "finished_at": None,
        "http_status": None,
        "outcome": None,
        "refusal": None,
        "pipeline_task_id": pipeline_task_id,
        "slot": slot,
        "call": job_records.split_kept_images(job_id, call.to_json()),
    }
    _save(record)
    job_records.index_for_person(call.caller.organization.pk, call.person_id, job_id)
    pipeline = current_app.signature(
        PIPELINE_TASK,
        args=[prepared.request.to_json()],
        task_id=pipeline_task_id,
        link_error=job_pipeline_failed.s(job_id),
    )
    chain(pipeline, finish_job.s(job_id)).apply_async()
    return record


def complete_job(
    job_id: str, *, pipeline_output: dict | None = None, failure: PipelineFailure | None = None
) -> dict[str, Any]:
    """Finish the job once: decide, audit, store the answer. Returns the record."""
    record = job_records.load(job_id)
    if record is None:
        logger.warning("job %s expired (or its person was erased) before it could be finished", job_id)
        return {"id": job_id, "status": FAILED}
    if not cache.add(job_records.lock_key(job_id), 1, timeout=job_records.ttl()):
        return record  # finished (or being finished) elsewhere
    try:
        call = FlowCall.from_json(job_records.join_kept_images(job_id, record["call"]))
        try:
            output = PipelineOutput.from_json(pipeline_output) if failure is None else None
        except ContractError as exc:
            output, failure = None, PipelineFailure("failed", exc.reason, exc.message)
        result = finish(call, output, failure)
    except FlowError as exc:
        record.update(http_status=exc.status, refusal=exc.body)
    except Exception:
        # The lock is held: no other delivery will finish this job. Answer it as failed (and free
        # its slot) rather than leave the poller waiting for a deadline; the cause is in the log.
        logger.exception("job %s could not be finished", job_id)
        record.update(
            http_status=503,
            refusal={
                "reason": "job_failed",
                "detail": f"The job could not be finished (reference {job_id}).",
            },
            status=FAILED,
            finished_at=timezone.now().isoformat(),
        )
        if record.get("slot"):
            cache.delete(record["slot"])
        _save(record)
        raise
    else:
        record.update(http_status=result.status, outcome=result.to_json())
    record.update(
        status=DONE if record["http_status"] < 400 else FAILED, finished_at=timezone.now().isoformat()
    )
    if record.get("slot"):
        cache.delete(record["slot"])  # the organization's in-flight slot (faceid.api.throttling)
    if job_records.load(job_id) is None:
        return record  # the person was erased meanwhile: the answer is not stored again
    _save(record)
    for match in (record["outcome"] or {}).get("matches") or ():
        job_records.index_for_person(call.caller.organization.pk, match.get("person"), job_id)
    job_records.drop_kept_images(job_id)
    job_records.forget_result(record["pipeline_task_id"])
    return record


def get_job(caller: Caller, job_id: str) -> dict[str, Any] | None:
    """The job if it belongs to the caller's organization, with its live status; None otherwise."""
    try:
        job_id = uuid.UUID(str(job_id)).hex
    except ValueError:
        return None
    record = job_records.load(job_id)
    if record is None or record.get("organization_id") != caller.organization.pk:
        return None
    if record.get("kind") == model_switch.JOB_KIND:
        # Progress lives in the database; the record only names the switch (and is kept when read).
        switches = ModelSwitch.objects.filter(organization=caller.organization)
        switch = switches.filter(pk=record.get("switch_id")).first()
        return model_switch.job_record(switch) if switch is not None else None
    if record["status"] in (DONE, FAILED):
        # Consumed: the answer is handed over once and not kept (it names a person, maybe a match).
        job_records.delete(record)
        return record
    if record["status"] in (PENDING, RUNNING):
        state = AsyncResult(record["pipeline_task_id"]).state
        record["status"] = PENDING if state in ("PENDING", "RECEIVED") else RUNNING
        if time.time() - record["call"]["started"] > _deadline_seconds():
            # Nobody answered (worker gone, message lost): audit the time-out once and report it.
            AsyncResult(record["pipeline_task_id"]).revoke()
            message = f"no result within {_deadline_seconds():g} s"
            finished = complete_job(job_id, failure=PipelineFailure("timeout", "wait_timeout", message))
            if finished.get("status") in (DONE, FAILED):
                job_records.delete(finished)
            return finished
    return record


@shared_task(bind=True, name="faceid.jobs.finish_job", acks_late=True, ignore_result=True)
def finish_job(self, pipeline_output: dict | None, job_id: str, failure: dict | None = None) -> str:
    """Second half of an asynchronous call, on the `default` queue: the pipeline task's output
    (through the chain) or its failure (through job_pipeline_failed) -> the flow's answer, stored
    in the job record. Runs at most once per job even when redelivered. Returns the job status."""
    parsed = PipelineFailure.from_json(failure) if failure is not None else None
    return complete_job(job_id, pipeline_output=pipeline_output, failure=parsed)["status"]


@shared_task(name="faceid.jobs.job_pipeline_failed", ignore_result=True)
def job_pipeline_failed(request: Any, exc: BaseException, traceback: Any, job_id: str) -> None:
    """Error callback of an async job's pipeline task (called in the failing worker): hand the
    failure to finish_job on the `default` queue, which audits it and marks the job failed."""
    if isinstance(exc, TaskInputError):
        failure = PipelineFailure("input", exc.reason, exc.message)
    elif isinstance(exc, SoftTimeLimitExceeded | TimeLimitExceeded):
        failure = PipelineFailure("timeout", "time_limit", "stopped by the worker's time limit")
    else:
        # The exception text can name files and hosts: logs only; the client gets the task id.
        task_id = getattr(request, "id", None)
        logger.error("pipeline task %s of job %s failed: %s: %s", task_id, job_id, type(exc).__name__, exc)
        failure = PipelineFailure("failed", "error", f"internal error, reference {task_id}")
    finish_job.apply_async(args=[None, job_id], kwargs={"failure": failure.to_json()})


@shared_task(name="faceid.jobs.purge_expired_images", ignore_result=True)
def purge_expired_images() -> int:
    """Celery beat's housekeeping (every PURGE_IMAGES_INTERVAL_SECONDS): delete kept raw images past
    their organization's retention. The same as `manage.py purge_expired_images`."""
    count = services.purge_expired_images()
    logger.info("purged %d expired kept images", count)
    return count


# --- model switches (faceid.model_switch) ------------------------------------------------------------


@shared_task(name="faceid.jobs.run_model_switch", acks_late=True)
def run_model_switch(switch_id: int) -> list[str]:
    """A model switch's job: one chain per person to re-embed (the pipeline task on `inference`,
    then store_switch_templates here on `default`). Persons without a kept photo are listed for
    re-enrollment by switch_reembed.plan. Returns the ids of the storing tasks (tests wait on them)."""
    ids = []
    for item in switch_reembed.plan(switch_id):
        pipeline_id, store_id = str(uuid.uuid4()), str(uuid.uuid4())
        person = {"switch_id": switch_id, "person_id": item.person_id, "sources": list(item.sources)}
        pipeline = current_app.signature(
            PIPELINE_TASK,
            args=[item.request.to_json()],
            task_id=pipeline_id,
            link_error=switch_pipeline_failed.s(store_id=store_id, **person),
        )
        store = store_switch_templates.signature(
            kwargs={**person, "pipeline_task_id": pipeline_id}, task_id=store_id
        )
        chain(pipeline, store).apply_async()
        ids.append(store_id)
    return ids


@shared_task(name="faceid.jobs.store_switch_templates", acks_late=True)
def store_switch_templates(
    pipeline_output: dict | None,
    *,
    switch_id: int,
    person_id: int,
    sources: list[str],
    pipeline_task_id: str | None = None,
    error: str = "",
) -> str:
    """Store one person's new-model templates (or list them for re-enrollment), then delete the
    pipeline's output (embeddings) from the result backend. Returns the person's state."""
    state = switch_reembed.store_reembedded(switch_id, person_id, sources, pipeline_output, error=error)
    job_records.forget_result(pipeline_task_id)
    return state


@shared_task(name="faceid.jobs.switch_pipeline_failed", ignore_result=True)
def switch_pipeline_failed(
    request: Any,
    exc: BaseException,
    traceback: Any,
    *,
    switch_id: int,
    person_id: int,
    sources: list[str],
    store_id: str,
) -> None:
    """Error callback of a re-embedding pipeline task: the person is listed for re-enrollment by a
    storing task under ``settling_task_id(store_id)`` (Celery marks the chain's own storing task
    failed with the pipeline's exception; whoever waits on it then waits on this one)."""
    task_id = getattr(request, "id", None)
    logger.error("re-embedding task %s (switch %s) failed: %r", task_id, switch_id, exc)
    store_switch_templates.apply_async(
        args=[None],
        kwargs={
            "switch_id": switch_id,
            "person_id": person_id,
            "sources": sources,
            "error": f"re-embedding failed (reference {task_id})",
        },
        task_id=settling_task_id(store_id),
    )


def settling_task_id(store_id: str) -> str:
    """The id of the storing task that settles a person whose re-embedding pipeline task failed."""
    return f"{store_id}-settled"
