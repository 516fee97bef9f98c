"""Asynchronous calls (``?async=true``): 202 with a job URL, polled at GET /api/v1/jobs/{id}/.

The job record lives in the Django cache (Redis) for FACEID_JOB_TTL_SECONDS. Submitting chains
the pipeline task (queue `inference`) with ``faceid.jobs.finish_job`` (queue `default`), which runs
faceid.verification.finish exactly like a synchronous call and stores its answer in the record.
A pipeline error reaches finish_job through an error callback. ``complete_job`` takes a lock so a
redelivered message, or the poller declaring an abandoned job timed out, never audits twice.

Status: ``pending`` (queued), ``running`` (the pipeline or the finishing step has started),
``done`` (answered 2xx) or ``failed`` (answered 4xx/5xx); ``http_status`` and ``result`` carry
the answer the synchronous call would have given.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

from celery import chain
from celery.result import AsyncResult
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from faceid.verification import Caller, PipelineCall, finish

logger = logging.getLogger(__name__)

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"


def _ttl() -> int:
    return int(getattr(settings, "FACEID_JOB_TTL_SECONDS", 86400))


def _deadline_seconds() -> float:
    """After this long without an answer the poller declares the job timed out (and audits it)."""
    return float(getattr(settings, "FACEID_JOB_DEADLINE_SECONDS", settings.CELERY_TASK_TIME_LIMIT * 3 + 60))


def _key(job_id: str) -> str:
    return f"job:{job_id}"


def _save(record: dict) -> None:
    cache.set(_key(record["id"]), record, timeout=_ttl())


def submit_job(caller: Caller, call: PipelineCall, *, kind: str) -> dict:
    """Queue the call and return the new job record (status pending)."""
    from faceid.tasks import finish_job, job_pipeline_failed

    job_id = uuid.uuid4().hex
    pipeline_task_id = str(uuid.uuid4())
    record = {
        "id": job_id,
        "kind": kind,
        "status": PENDING,
        "organization_id": caller.organization.pk,
        "api_key_id": caller.api_key.pk if caller.api_key else None,
        "user_id": caller.user.pk if caller.user else None,
        "created_at": timezone.now().isoformat(),
        "finished_at": None,
        "http_status": None,
        "result": None,
        "pipeline_task_id": pipeline_task_id,
        "context": call.context,
    }
    _save(record)
    pipeline = call.task.signature(
        args=call.args, task_id=pipeline_task_id, link_error=job_pipeline_failed.s(job_id)
    )
    chain(pipeline, finish_job.s(job_id)).apply_async()
    return record


def complete_job(job_id: str, *, pipeline_output: dict | None = None, error: dict | None = None) -> dict:
    """Finish the job once: decide, audit, store the answer. Returns the (public) record."""
    record = cache.get(_key(job_id))
    if record is None:
        logger.warning("job %s expired before it could be finished", job_id)
        return {"id": job_id, "status": FAILED}
    if not cache.add(f"{_key(job_id)}:lock", 1, timeout=_ttl()):
        return public(record)  # finished (or being finished) elsewhere
    status, body = finish(record["context"], pipeline_output=pipeline_output, error=error)
    record.update(
        status=DONE if status < 400 else FAILED,
        http_status=status,
        result=body,
        finished_at=timezone.now().isoformat(),
    )
    _save(record)
    return public(record)


def get_job(caller: Caller, job_id: str) -> dict | None:
    """The job if it belongs to the caller's organization, with its live status; None otherwise."""
    try:
        job_id = uuid.UUID(str(job_id)).hex
    except ValueError:
        return None
    record = cache.get(_key(job_id))
    if record is None or record.get("organization_id") != caller.organization.pk:
        return None
    if record["status"] in (PENDING, RUNNING):
        state = AsyncResult(record["pipeline_task_id"]).state
        record["status"] = PENDING if state in ("PENDING", "RECEIVED") else RUNNING
        started = record["context"].get("started", time.time())
        if time.time() - started > _deadline_seconds():
            # Nobody answered (worker gone, message lost): audit the time-out once and report it.
            AsyncResult(record["pipeline_task_id"]).revoke()
            return complete_job(
                job_id,
                error={
                    "kind": "timeout",
                    "reason": "wait_timeout",
                    "message": f"no result within {_deadline_seconds():g} s",
                },
            )
    return public(record)


def public(record: dict) -> dict[str, Any]:
    return {
        "id": record["id"],
        "kind": record.get("kind"),
        "status": record["status"],
        "created_at": record.get("created_at"),
        "finished_at": record.get("finished_at"),
        "http_status": record.get("http_status"),
        "result": record.get("result"),
    }
