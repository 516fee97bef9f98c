"""The pipeline worker's process SIGKILLed in the middle of an enrollment and of a verify.

The real test worker (tests/plugins/celery_worker.py: prefork, acks_late, reject_on_worker_lost)
runs the pipeline; the call is made through the API in a thread, and the pool process running the
task is killed with SIGKILL as soon as the task is active. The message is delivered again to the
replacement process and the call completes within the bounded wait: the enrollment stores each
photo's templates exactly once, the verify leaves exactly one audit row. A message that kills
every process that takes it is not delivered forever: the caller's bounded wait ends it (audited
504), and the revoked task is not run again.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections import Counter
from concurrent.futures import Future, ThreadPoolExecutor

import pytest
from django.db import connections

from config import celery_app
from faceid.audit import verify_chain
from faceid.contracts import PipelineRequest, encode_image
from faceid.flows.runner import PIPELINE_TASK
from faceid.models import FaceTemplate, VerificationAttempt
from faceid.task_results import run_task
from inference.embedders import DEFAULT_EMBEDDER
from tests.api.helpers import create_person, enroll, post_multipart
from tests.portraits import ALICE

pytestmark = [pytest.mark.slow]

# The bounded wait of the poison-message test: long enough for a few deliveries on a busy machine.
POISON_WAIT_SECONDS = 12


def _in_thread(call) -> Future:
    def run():
        try:
            return call()
        finally:
            connections.close_all()  # the thread's own connection to the test database

    executor = ThreadPoolExecutor(1)
    future = executor.submit(run)
    executor.shutdown(wait=False)
    return future


def _active_pipeline_pid(hostname: str) -> int | None:
    """The pool process running a pipeline task on the worker now, if any."""
    replies = celery_app.control.inspect(destination=[hostname], timeout=0.5).active() or {}
    for tasks in replies.values():
        for task in tasks:
            if task.get("name") == PIPELINE_TASK and task.get("worker_pid"):
                return int(task["worker_pid"])
    return None


def _kill_when_active(hostname: str, future: Future, *, times: int, timeout: float = 60) -> list[int]:
    """SIGKILL the pool process running the pipeline task, up to `times` times; the pids killed."""
    killed: list[int] = []
    deadline = time.monotonic() + timeout
    while len(killed) < times and not future.done() and time.monotonic() < deadline:
        pid = _active_pipeline_pid(hostname)
        if pid is not None and pid not in killed:
            with contextlib.suppress(ProcessLookupError):  # reported by a stale answer: gone already
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
        time.sleep(0.05)
    return killed


def _pool_pids(hostname: str) -> list[int]:
    replies = celery_app.control.inspect(destination=[hostname], timeout=1.0).stats() or {}
    return [int(pid) for stats in replies.values() for pid in stats.get("pool", {}).get("processes", [])]


def _cold_pool(hostname: str, timeout: float = 30) -> None:
    """Replace the idle pool processes by fresh ones without models, so that the next pipeline task
    spends seconds loading them: long enough to be seen active and killed, on any machine."""
    old = _pool_pids(hostname)
    for pid in old:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        fresh = _pool_pids(hostname)
        if fresh and not set(fresh) & set(old):
            return
        time.sleep(0.2)
    raise AssertionError(f"the worker did not replace its pool processes {old}")


@pytest.fixture
def worker(pipeline_worker):
    yield pipeline_worker
    # The killed pool process was replaced by one without models: load them again, so that the
    # next test's bounded wait is not spent loading.
    request = PipelineRequest(
        kind="probe",
        images_b64=(encode_image(b"not an image"),),
        embedder=DEFAULT_EMBEDDER,
        mask_threshold=0.5,
    )
    run_task(PIPELINE_TASK, request.to_json(), timeout=300)


def _verify(client, person: str, image: bytes):
    files = [("image", ("probe.jpg", image, "image/jpeg"))]
    return post_multipart(client, "/api/v1/verify/", files, {"person": person})


def test_worker_killed_mid_enrollment_redelivers_and_stores_each_template_once(
    worker, org_client, portrait, settings
):
    settings.PIPELINE_WAIT_SECONDS = 60
    organization, client = org_client
    person_id = create_person(client, "alice")
    rows_before = VerificationAttempt.objects.filter(organization=organization).count()
    photos = [portrait(name) for name in ALICE[1][:2]]

    _cold_pool(worker.hostname)  # the first delivery loads the models: seen running, then killed
    future = _in_thread(lambda: enroll(client, person_id, *photos))
    killed = _kill_when_active(worker.hostname, future, times=1)
    response = future.result(timeout=120)

    assert killed, "the pipeline task was never seen running"
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["stored"] == 2
    templates = FaceTemplate.objects.filter(person_id=person_id)
    per_photo = Counter((t.source_sha256, t.variant) for t in templates)
    assert per_photo and max(per_photo.values()) == 1, per_photo  # nothing stored twice
    assert templates.count() == sum(len(p["templates"]) for p in body["photos"])  # nothing half-written
    # Whatever the enrollment audits, it is audited once and the chain holds.
    assert VerificationAttempt.objects.filter(organization=organization).count() - rows_before <= 1
    assert verify_chain(organization).ok
    assert "WorkerLostError" in worker.log_tail(400) or "signal 9" in worker.log_tail(400)


def test_worker_killed_mid_verify_redelivers_and_audits_once(worker, org_client, portrait, settings):
    settings.PIPELINE_WAIT_SECONDS = 60
    organization, client = org_client
    person_id = create_person(client, "alice")
    assert enroll(client, person_id, portrait(ALICE[1][0])).status_code == 201
    last = VerificationAttempt.objects.filter(organization=organization).order_by("-seq").first()
    last_seq = last.seq if last else 0

    _cold_pool(worker.hostname)  # the first delivery loads the models: seen running, then killed
    future = _in_thread(lambda: _verify(client, "alice", portrait(ALICE[1][1])))
    killed = _kill_when_active(worker.hostname, future, times=1)
    response = future.result(timeout=120)

    assert killed, "the pipeline task was never seen running"
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["decision"] == "accept", body
    rows = VerificationAttempt.objects.filter(organization=organization, seq__gt=last_seq, mode="verify")
    assert [row.pk for row in rows] == [body["attempt_id"]]
    assert verify_chain(organization).ok


def test_a_message_that_kills_every_worker_is_not_delivered_forever(worker, org_client, portrait, settings):
    settings.PIPELINE_WAIT_SECONDS = 60
    organization, client = org_client
    person_id = create_person(client, "alice")
    assert enroll(client, person_id, portrait(ALICE[1][0])).status_code == 201
    settings.PIPELINE_WAIT_SECONDS = POISON_WAIT_SECONDS
    _cold_pool(worker.hostname)  # every delivery now loads the models first: it is seen and killed

    started = time.monotonic()
    future = _in_thread(lambda: _verify(client, "alice", portrait(ALICE[1][1])))
    killed = _kill_when_active(worker.hostname, future, times=50, timeout=30)
    response = future.result(timeout=60)
    answered_after = time.monotonic() - started

    assert len(killed) >= 2, (
        f"delivered {len(killed)} time(s) only: {response.status_code} {response.content[:300]}\n"
        + worker.log_tail(60)
    )
    assert answered_after < POISON_WAIT_SECONDS + 10, answered_after
    assert response.status_code in (503, 504), response.content
    body = response.json()
    assert body["reason"] in ("pipeline_timeout", "pipeline_unavailable") and "decision" not in body
    rows = VerificationAttempt.objects.filter(organization=organization, mode="verify")
    assert [row.pk for row in rows] == [body["attempt_id"]]
    assert rows.get().decision in ("timeout", "error")
    # Revoked: it still kills every process that takes it, and no process takes it again (one that
    # took it just before the revoke arrived may still be running it when the answer goes out).
    after = _kill_when_active(worker.hostname, Future(), times=50, timeout=8)
    assert len(after) <= 1, f"the poison message is still delivered: {after}\n{worker.log_tail(80)}"
    assert verify_chain(organization).ok
