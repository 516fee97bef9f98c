"""Round trips through a real Celery worker process: results come back, failures come back as errors."""

from __future__ import annotations

import base64
import io
import os
import time
import uuid
from importlib.metadata import version

import pytest
from PIL import Image

from faceid.contracts import PipelineRequest
from faceid.task_results import TaskFailed, TaskTimedOut, run_task
from faceid.worker.tasks import decode_probe, worker_info


def _png_b64(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 40)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_worker_info_comes_back_from_a_worker_process_on_the_test_database(celery_worker):
    info = run_task(worker_info, timeout=60)

    assert info["pid"] != os.getpid()
    assert info["pid"] != celery_worker.process.pid, "the task ran in the prefork pool, not the parent"
    assert info["hostname"] == celery_worker.hostname
    assert info["torch"] == version("torch")
    assert info["device"] in {"cpu", "cuda"}
    assert info["warmed_up"] is False, "INFERENCE_WARMUP=false must skip the model loading"
    # A real query in the worker, on the database pytest-django created for this run.
    assert info["database"]["name"] == celery_worker.database
    assert info["database"]["name"].startswith("test_")
    assert info["database"]["pgvector"], "the test database must have the vector extension"


def test_decode_probe_decodes_an_image_in_the_worker(celery_worker):
    assert run_task(decode_probe, _png_b64(40, 30), timeout=60) == {"height": 30, "width": 40, "channels": 3}


def test_garbage_bytes_surface_as_a_clear_input_error_not_a_hang(celery_worker):
    garbage = base64.b64encode(b"this is not an image, just some bytes" * 10).decode()
    started = time.monotonic()
    with pytest.raises(TaskFailed) as caught:
        run_task(decode_probe, garbage, timeout=60)
    error = caught.value
    assert time.monotonic() - started < 30
    assert error.input_error is True
    assert error.reason == "not_an_image"
    assert error.task_name == "faceid.worker.tasks.decode_probe"
    assert error.task_id
    assert "not an image" in str(error)


def test_invalid_base64_is_refused_with_its_own_reason(celery_worker):
    with pytest.raises(TaskFailed) as caught:
        run_task(decode_probe, "@@@ not base64 @@@", timeout=60)
    assert caught.value.reason == "not_base64"
    assert caught.value.input_error is True


def test_an_unexpected_exception_in_the_worker_surfaces_as_task_failed(celery_worker):
    with pytest.raises(TaskFailed) as caught:
        run_task(worker_info, hold_seconds="soon", timeout=60)
    error = caught.value
    assert error.input_error is False
    assert error.reason == "error"
    assert error.exc_type == "ValueError"
    assert "soon" in error.message


def test_a_time_limit_surfaces_as_timed_out_and_the_worker_carries_on(celery_worker):
    # Celery arms the hard limit only after the soft one, so a per-call limit is a soft_time_limit
    # (with the settings' hard limit behind it); the task gets SoftTimeLimitExceeded in the worker.
    started = time.monotonic()
    with pytest.raises(TaskTimedOut) as caught:
        run_task(worker_info, hold_seconds=60, timeout=45, options={"soft_time_limit": 1})
    assert caught.value.reason == "time_limit"
    assert "SoftTimeLimitExceeded" in caught.value.message or "time limit" in caught.value.message
    assert time.monotonic() - started < 30
    # The next task runs normally on the same worker.
    assert run_task(worker_info, timeout=60)["database"]["name"] == celery_worker.database
    assert celery_worker.process.poll() is None


def test_no_consumer_means_a_bounded_wait_then_timed_out(celery_worker):
    queue = f"nobody-listens-{uuid.uuid4().hex[:8]}"
    started = time.monotonic()
    with pytest.raises(TaskTimedOut) as caught:
        run_task(worker_info, timeout=1.5, options={"queue": queue})
    elapsed = time.monotonic() - started
    assert caught.value.reason == "wait_timeout"
    assert 1.5 <= elapsed < 10


def test_an_unknown_model_is_the_callers_mistake(celery_worker):
    request = PipelineRequest("probe", (_png_b64(40, 30),), "no_such_model", 0.5)
    with pytest.raises(TaskFailed) as caught:
        run_task("faceid.worker.tasks.run_pipeline", request.to_json(), timeout=60)
    assert caught.value.input_error is True and caught.value.reason == "bad_argument"


def test_a_registered_model_without_weights_is_a_fault_of_the_deployment(celery_worker):
    request = PipelineRequest("probe", (_png_b64(40, 30),), "iresnet50", 0.5)
    with pytest.raises(TaskFailed) as caught:
        run_task("faceid.worker.tasks.run_pipeline", request.to_json(), timeout=60)
    assert caught.value.input_error is False and "weights" in caught.value.message


def test_a_request_outside_the_contract_is_refused_by_the_worker(celery_worker):
    with pytest.raises(TaskFailed) as caught:
        document = {**PipelineRequest("probe", ("eA==",), "dlib_resnet_v1", 0.5).to_json(), "images_b64": []}
        run_task("faceid.worker.tasks.run_pipeline", document, timeout=60)
    assert caught.value.input_error is True and caught.value.reason == "no_image"
