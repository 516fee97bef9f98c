"""Where asynchronous job records live (the Django cache), and how they are made to go away.

A record holds the call's metadata and, once finished, the answer; never raw images. Images the
organization's policy keeps travel beside it under their own short-lived key until the job is
finished. Records expire after FACEID_JOB_TTL_SECONDS, are deleted once a poll has read the
finished answer, and are deleted with everything else of a person when that person is erased:
each person's job ids are indexed for that. Imports nothing of the flows, so that
``faceid.services`` can call ``forget_person`` on erasure.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from celery.result import AsyncResult
from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)

# At most this many job ids are remembered per person (older ones have expired long before).
MAX_INDEXED_JOBS = 1000


def ttl() -> int:
    return int(settings.FACEID_JOB_TTL_SECONDS)


def record_key(job_id: str) -> str:
    return f"job:{job_id}"


def lock_key(job_id: str) -> str:
    return f"job:{job_id}:lock"


def kept_key(job_id: str) -> str:
    return f"job:{job_id}:kept"


def person_key(organization_id: int, person_id: int) -> str:
    return f"jobs:person:{organization_id}:{person_id}"


def save(record: dict[str, Any]) -> None:
    cache.set(record_key(record["id"]), record, timeout=ttl())


def load(job_id: str) -> dict[str, Any] | None:
    return cache.get(record_key(job_id))


def split_kept_images(job_id: str, call_json: dict[str, Any]) -> dict[str, Any]:
    """The call without raw images; the kept ones go under their own key (same TTL)."""
    images = call_json.get("images") or []
    kept = {str(i): image["kept_b64"] for i, image in enumerate(images) if image.get("kept_b64")}
    if kept:
        cache.set(kept_key(job_id), kept, timeout=ttl())
    return {**call_json, "images": [{**image, "kept_b64": None} for image in images]}


def join_kept_images(job_id: str, call_json: dict[str, Any]) -> dict[str, Any]:
    """The call with its kept raw images back in, for finishing it."""
    kept = cache.get(kept_key(job_id)) or {}
    images = [
        {**image, "kept_b64": kept.get(str(i), image.get("kept_b64"))}
        for i, image in enumerate(call_json.get("images") or [])
    ]
    return {**call_json, "images": images}


def drop_kept_images(job_id: str) -> None:
    cache.delete(kept_key(job_id))


def forget_result(task_id: str | None) -> None:
    """Delete a task's result (the pipeline's output, with its embeddings) from the backend."""
    if task_id:
        try:
            AsyncResult(task_id).forget()
        except Exception:  # the backend's TTL (CELERY_RESULT_EXPIRES) removes it anyway
            logger.warning("could not delete the result of task %s", task_id, exc_info=True)


def delete(record: dict[str, Any]) -> None:
    """The record, its kept images and its pipeline result. The lock stays: it holds no data and
    stops a redelivered message from finishing the job a second time."""
    cache.delete_many([record_key(record["id"]), kept_key(record["id"])])
    forget_result(record.get("pipeline_task_id"))


@contextmanager
def _person_lock(key: str, wait: float = 2.0) -> Iterator[None]:
    """A short cache lock around the index's read-modify-write (concurrent submissions)."""
    lock = f"{key}:lock"
    deadline = time.monotonic() + wait
    acquired = cache.add(lock, 1, timeout=10)
    while not acquired and time.monotonic() < deadline:
        time.sleep(0.01)
        acquired = cache.add(lock, 1, timeout=10)
    try:
        yield
    finally:
        if acquired:
            cache.delete(lock)


def index_for_person(organization_id: int, person_id: int | None, job_id: str) -> None:
    """Remember that the job concerns the person, so that erasing them deletes it."""
    if person_id is None:
        return
    key = person_key(organization_id, person_id)
    with _person_lock(key):
        ids = [i for i in (cache.get(key) or []) if i != job_id]
        cache.set(key, [*ids, job_id][-MAX_INDEXED_JOBS:], timeout=ttl())


def forget_person(organization_id: int, person_id: int) -> int:
    """Delete every job record (pending or finished) that concerns the person. Returns how many.

    A pending job whose record is gone is not finished: its pipeline task is revoked, and if its
    output still arrives, finish_job finds no record and drops it.
    """
    key = person_key(organization_id, person_id)
    with _person_lock(key):
        ids = cache.get(key) or []
        cache.delete(key)
    deleted = 0
    for job_id in ids:
        record = load(job_id)
        if record is None or record.get("organization_id") != organization_id:
            continue
        if record.get("status") in ("pending", "running") and record.get("pipeline_task_id"):
            try:
                AsyncResult(record["pipeline_task_id"]).revoke()
            except Exception:
                logger.warning("could not revoke the pipeline task of job %s", job_id, exc_info=True)
            if record.get("slot"):
                cache.delete(record["slot"])  # never finished: its in-flight slot is freed here
        delete(record)
        deleted += 1
    return deleted


def new_job_id() -> str:
    """A fresh, unguessable job id (the API's job URL)."""
    return uuid.uuid4().hex
