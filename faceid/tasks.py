"""Celery tasks, run by `celery -A faceid worker -Q inference` (every task here routes to `inference`).

Infrastructure first: the base task class, the per-process warm-up hook and two diagnostic tasks.
Pipeline tasks follow below it; call them from the web process through
`faceid.task_results.run_task`, which bounds the wait and turns failures into clear exceptions.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import time
from typing import Any

from celery import Task, shared_task
from celery.signals import worker_process_init
from django.conf import settings
from django.db import connection

from faceid.task_results import TaskInputError

logger = logging.getLogger(__name__)

# Longest a diagnostic task may hold a worker slot, whatever it is asked.
MAX_HOLD_SECONDS = 300.0


class FaceIDTask(Task):
    """Base class of faceid's tasks: arguments are validated JSON, failures are logged once."""

    # Input errors are the caller's fault: never retried, logged without a traceback.
    throws = (TaskInputError,)

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:  # noqa: D401 (Celery hook)
        if not isinstance(exc, TaskInputError):
            logger.error("task %s [%s] failed: %r", self.name, task_id, exc)
        super().on_failure(exc, task_id, args, kwargs, einfo)


# --- the worker process ------------------------------------------------------------------------

_warmed_up = False


def inference_device() -> str:
    """The device inference runs on in this process: settings.INFERENCE_DEVICE, "auto" resolved."""
    import torch

    wanted = settings.INFERENCE_DEVICE
    if wanted == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return wanted


@worker_process_init.connect
def _init_worker_process(**_: Any) -> None:
    """Runs in each pool process right after the fork, never in the parent.

    CUDA cannot be initialised before a fork, and models must not be loaded once per task: so
    torch threads and the pipeline are set up here, once per process. INFERENCE_WARMUP=false skips
    the model loading (tests, or a worker that should start fast). A failed warm-up is logged and
    the process carries on: the first task then reports the same error to its caller, instead of
    the pool respawning a process that dies at start, forever.
    """
    global _warmed_up
    if settings.INFERENCE_THREADS > 0:
        from inference.device import configure_threads

        configure_threads(settings.INFERENCE_THREADS)
    if not settings.INFERENCE_WARMUP:
        return
    started = time.monotonic()
    try:
        from inference.pipeline import get_pipeline

        # The stages cache their models per process, so pipelines built later for other
        # policy settings reuse what this one loaded.
        get_pipeline(device=inference_device())
    except Exception:
        logger.exception("pipeline warm-up failed in pid %s; tasks will report the error", os.getpid())
        return
    _warmed_up = True
    logger.info("pipeline warmed up in pid %s in %.1f s", os.getpid(), time.monotonic() - started)


# --- diagnostic tasks --------------------------------------------------------------------------


@shared_task(bind=True, base=FaceIDTask, name="faceid.tasks.worker_info")
def worker_info(self: Task, hold_seconds: float = 0.0) -> dict[str, Any]:
    """What a worker process runs with: pid, torch, inference device, and its database (a real query).

    `hold_seconds` keeps the worker slot busy that long first (capped at MAX_HOLD_SECONDS): it lets
    an operator check routing, concurrency and the time limits of a deployment end to end, e.g.
    `celery -A faceid call faceid.tasks.worker_info --kwargs '{"hold_seconds": 5}'`.
    """
    import torch

    hold = min(max(float(hold_seconds), 0.0), MAX_HOLD_SECONDS)
    deadline = time.monotonic() + hold
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(min(left, 0.1))

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT current_database(), current_setting('server_version'),"
            " (SELECT extversion FROM pg_extension WHERE extname = 'vector')"
        )
        database, server_version, pgvector = cursor.fetchone()
    return {
        "pid": os.getpid(),
        "hostname": self.request.hostname,
        "torch": torch.__version__,
        "device": inference_device(),
        "warmed_up": _warmed_up,
        "database": {"name": database, "server_version": server_version, "pgvector": pgvector},
    }


@shared_task(bind=True, base=FaceIDTask, name="faceid.tasks.decode_probe")
def decode_probe(self: Task, image_b64: str) -> dict[str, int]:
    """Decode a base64 image in the worker as the pipeline would; return its height, width, channels.

    Bytes that are not a usable image raise TaskInputError with the decoder's reason code.
    """
    from inference.decode import ImageDecodeError, decode_image

    try:
        data = base64.b64decode(image_b64, validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise TaskInputError("not_base64", f"the image is not valid base64: {exc}") from None
    try:
        pixels = decode_image(data, max_pixels=settings.MAX_IMAGE_PIXELS)
    except ImageDecodeError as exc:
        raise TaskInputError(exc.reason, exc.message) from None
    height, width, channels = pixels.shape
    return {"height": height, "width": width, "channels": channels}


# --- pipeline tasks (API/console) ----------------------------------------------------------------
# The worker runs the pipeline only: no database here. The web process (faceid.verification) reads
# the policy, sends the images, and matches/decides/audits with the returned embeddings.

# Most images one pipeline task accepts (a burst of camera frames or a batch of enrollment photos).
MAX_IMAGES_PER_TASK = 16


def _decode_b64_images(images_b64: list[str]) -> list[bytes]:
    if not isinstance(images_b64, list) or not images_b64:
        raise TaskInputError("no_image", "at least one image is required")
    if len(images_b64) > MAX_IMAGES_PER_TASK:
        raise TaskInputError("too_many_images", f"at most {MAX_IMAGES_PER_TASK} images per call")
    out: list[bytes] = []
    for index, item in enumerate(images_b64):
        try:
            out.append(base64.b64decode(item, validate=True))
        except (binascii.Error, ValueError, TypeError) as exc:
            raise TaskInputError("not_base64", f"image {index} is not valid base64: {exc}") from None
    return out


def _run_pipeline(
    kind: str, images_b64: list[str], *, embedder: str, mask_threshold: float, **options: Any
) -> dict:
    """Decode each image, run the pipeline on the decodable ones, answer one entry per image.

    An entry is FaceResult.to_dict() plus "decode_error" (None, or {"reason", "message"} for bytes
    that are not a usable image: the caller answers 400 for those).
    """
    from inference.decode import ImageDecodeError, decode_image
    from inference.pipeline import MASK_STRATEGIES, get_pipeline

    try:
        mask_threshold = float(mask_threshold)
    except (TypeError, ValueError):
        raise TaskInputError("bad_argument", "mask_threshold must be a number") from None
    if not 0.0 <= mask_threshold <= 1.0:
        raise TaskInputError("bad_argument", "mask_threshold must be within [0, 1]")
    if kind == "probe" and options.get("strategy") not in MASK_STRATEGIES:
        raise TaskInputError("bad_argument", f"unknown mask strategy {options.get('strategy')!r}")
    blobs = _decode_b64_images(images_b64)

    started = time.perf_counter()
    entries: list[dict | None] = [None] * len(blobs)
    pixels: list[Any] = []
    positions: list[int] = []
    for index, data in enumerate(blobs):
        try:
            pixels.append(decode_image(data, max_pixels=settings.MAX_IMAGE_PIXELS))
            positions.append(index)
        except ImageDecodeError as exc:
            entries[index] = {
                "refusal": "bad_image",
                "decode_error": {"reason": exc.reason, "message": exc.message},
            }
    decode_ms = (time.perf_counter() - started) * 1000.0

    try:
        pipeline = get_pipeline(embedder, device=inference_device(), mask_threshold=mask_threshold)
    except (KeyError, ValueError) as exc:
        raise TaskInputError("bad_argument", f"cannot build the pipeline: {exc}") from None
    if pixels:
        if kind == "enroll":
            results = pipeline.enroll(pixels, allow_masked=bool(options.get("allow_masked", False)))
        else:
            results = pipeline.probe(pixels, strategy=options["strategy"])
        for index, result in zip(positions, results, strict=True):
            entry = result.to_dict()
            entry["decode_error"] = None
            entry["timings_ms"]["decode"] = round(decode_ms / len(blobs), 2)
            entries[index] = entry
    return {
        "model_name": embedder,
        "model_version": pipeline.model_version,
        "device": inference_device(),
        "results": entries,
    }


@shared_task(bind=True, base=FaceIDTask, name="faceid.tasks.enroll_faces", track_started=True)
def enroll_faces(
    self: Task, images_b64: list[str], embedder: str, mask_threshold: float, allow_masked: bool = False
) -> dict:
    """Enrollment: templates (full face and mask-aware variants) per photo, or its refusal reason."""
    return _run_pipeline(
        "enroll", images_b64, embedder=embedder, mask_threshold=mask_threshold, allow_masked=allow_masked
    )


@shared_task(bind=True, base=FaceIDTask, name="faceid.tasks.probe_faces", track_started=True)
def probe_faces(
    self: Task, images_b64: list[str], embedder: str, mask_threshold: float, strategy: str = "synthetic"
) -> dict:
    """Verification/identification probe: one result per frame, each with the vectors to compare."""
    return _run_pipeline(
        "probe", images_b64, embedder=embedder, mask_threshold=mask_threshold, strategy=strategy
    )


@shared_task(bind=True, base=FaceIDTask, name="faceid.jobs.finish_job", acks_late=True)
def finish_job(self: Task, pipeline_output: dict | None, job_id: str, error: dict | None = None) -> dict:
    """Second half of an asynchronous (?async=true) API call, on the `default` queue (not `inference`).

    It receives the pipeline task's output (a chain) or, through faceid.tasks.job_pipeline_failed,
    the pipeline's error, then matches, decides, stores and audits exactly like the synchronous call
    (faceid.verification.finish) and saves the answer in the job record that GET /api/v1/jobs/{id}/
    reads. Runs at most once per job even when redelivered.
    """
    from faceid.api.jobs import complete_job

    return complete_job(job_id, pipeline_output=pipeline_output, error=error)


@shared_task(name="faceid.jobs.job_pipeline_failed")
def job_pipeline_failed(request: Any, exc: BaseException, traceback: Any, job_id: str) -> None:
    """Error callback of an async job's pipeline task (called in the failing worker): hand the error
    to finish_job on the `default` queue, which audits it and marks the job failed. No DB here."""
    from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

    if isinstance(exc, TaskInputError):
        error = {"kind": "input", "reason": exc.reason, "message": exc.message}
    elif isinstance(exc, SoftTimeLimitExceeded | TimeLimitExceeded):
        error = {"kind": "timeout", "reason": "time_limit", "message": "stopped by the worker's time limit"}
    else:
        error = {"kind": "failed", "reason": "error", "message": f"{type(exc).__name__}: {exc}"}
    finish_job.apply_async(args=[None, job_id], kwargs={"error": error}, queue="default")
