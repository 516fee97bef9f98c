"""Celery tasks of the inference worker (queue `inference`, see CELERY_TASK_ROUTES).

The worker runs the pipeline only and never touches the database for it: the web side
(faceid.flows) reads the policy, sends a PipelineRequest, and matches, decides and audits with the
PipelineOutput it gets back. Call these tasks from the web process through
``faceid.task_results.run_task`` by name: it bounds the wait and turns failures into exceptions.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import torch
from celery import Task, current_task, shared_task
from django.conf import settings
from django.db import connection

from faceid.contracts import (
    ContractError,
    FrameResult,
    ModelFrames,
    PipelineOutput,
    PipelineRequest,
    decode_image_text,
)
from faceid.task_results import TaskInputError
from faceid.worker import process
from inference.decode import ImageDecodeError, decode_image, decode_images
from inference.embedders import UnknownEmbedderError, WeightsUnavailableError
from inference.pipeline import FacePipeline, get_pipeline

logger = logging.getLogger(__name__)

# Longest a diagnostic task may hold a worker slot, whatever it is asked.
MAX_HOLD_SECONDS = 300.0


class FaceIDTask(Task):
    """Base class of the worker's tasks: arguments are validated JSON, failures are logged once."""

    # Input errors are the caller's fault: never retried, logged without a traceback.
    throws = (TaskInputError,)

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:  # noqa: D401 (Celery hook)
        if not isinstance(exc, TaskInputError):
            logger.error("task %s [%s] failed: %r", self.name, task_id, exc)
        super().on_failure(exc, task_id, args, kwargs, einfo)


@shared_task(bind=True, base=FaceIDTask, name="faceid.worker.tasks.run_pipeline", track_started=True)
def run_pipeline(self: Task, request: dict[str, Any]) -> dict[str, Any]:
    """A PipelineRequest (JSON) in, a PipelineOutput (JSON) out: one FrameResult per image.

    Bytes that are not a usable image get a FrameResult with ``decode_error``; the other images of
    the call are still analysed. A request that breaks the contract raises TaskInputError.
    """
    try:
        call = PipelineRequest.from_json(request)
        blobs = call.images()
    except ContractError as exc:
        raise TaskInputError(exc.reason, exc.message) from None
    return analyze(call, blobs).to_json()


def current_task_id() -> str:
    """The running task's id (the reference a client quotes), or "none" outside a task."""
    return str(getattr(getattr(current_task, "request", None), "id", None) or "none")


def analyze(call: PipelineRequest, blobs: list[bytes]) -> PipelineOutput:
    """The request's frames through its model's pipeline, then through each model of
    ``call.also_embed`` (each pipeline detects and decides the mask itself: every model's frames
    are complete and consistent on their own)."""
    device = process.inference_device()
    pipelines = [_pipeline(name, device) for name in call.models()]

    started = time.perf_counter()
    decoded = decode_images(
        blobs,
        max_pixels=settings.MAX_IMAGE_PIXELS,
        max_total_pixels=settings.MAX_TASK_PIXELS,
        formats=settings.IMAGE_FORMATS,
    )
    decode_ms = round((time.perf_counter() - started) * 1000.0 / len(blobs), 2)
    # The images are decoded once: only the request's own frames report the decode time.
    frames = [
        _frames(pipeline, call, decoded, decode_ms if position == 0 else None)
        for position, pipeline in enumerate(pipelines)
    ]
    return PipelineOutput(
        model_name=call.embedder,
        model_version=pipelines[0].model_version,
        device=device,
        results=frames[0],
        also=tuple(
            ModelFrames(name, pipeline.model_version, results)
            for name, pipeline, results in zip(call.also_embed, pipelines[1:], frames[1:], strict=True)
        ),
    )


def _pipeline(name: str, device: str) -> FacePipeline:
    try:
        return get_pipeline(name, device=device)
    except WeightsUnavailableError:
        raise  # this deployment lacks the weights: a fault of ours (503), not the caller's
    except UnknownEmbedderError as exc:
        raise TaskInputError("bad_argument", f"cannot build the pipeline: {exc}") from None
    except ValueError as exc:
        # Its text may name files of this machine: the logs get it, the caller only the reference.
        logger.warning("pipeline %r cannot be built [%s]: %s", name, current_task_id(), exc)
        raise TaskInputError(
            "bad_argument", f"cannot build the pipeline (reference {current_task_id()})"
        ) from None


def _frames(
    pipeline: FacePipeline, call: PipelineRequest, decoded: list, decode_ms: float | None
) -> tuple[FrameResult, ...]:
    """One FrameResult per image: undecodable bytes keep their place with ``decode_error``."""
    frames: list[FrameResult | None] = [None] * len(decoded)
    pixels, positions = [], []
    for index, image in enumerate(decoded):
        if isinstance(image, ImageDecodeError):
            frames[index] = FrameResult.undecodable(image.reason, image.message)
        else:
            pixels.append(image)
            positions.append(index)
    if pixels:
        if call.kind == "enroll":
            results = pipeline.enroll(
                pixels, mask_threshold=call.mask_threshold, allow_masked=call.allow_masked
            )
        else:
            results = pipeline.probe(
                pixels, mask_threshold=call.mask_threshold, strategy=call.strategy, mask_aware=call.mask_aware
            )
        for index, result in zip(positions, results, strict=True):
            data = result.to_dict()
            if decode_ms is not None:
                data["timings_ms"]["decode"] = decode_ms
            frames[index] = FrameResult.from_json(data)
    return tuple(frames)


# --- diagnostics ---------------------------------------------------------------------------------


@shared_task(bind=True, base=FaceIDTask, name="faceid.worker.tasks.worker_info")
def worker_info(self: Task, hold_seconds: float = 0.0) -> dict[str, Any]:
    """What a worker process runs with: pid, torch, inference device, and its database (a real query).

    `hold_seconds` keeps the worker slot busy that long first (capped at MAX_HOLD_SECONDS): it lets
    an operator check routing, concurrency and the time limits of a deployment end to end, e.g.
    `celery -A config call faceid.worker.tasks.worker_info --kwargs '{"hold_seconds": 5}'`.
    """
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
        "device": process.inference_device(),
        "warmed_up": process.warmed_up(),
        "database": {"name": database, "server_version": server_version, "pgvector": pgvector},
    }


@shared_task(bind=True, base=FaceIDTask, name="faceid.worker.tasks.decode_probe")
def decode_probe(self: Task, image_b64: str) -> dict[str, int]:
    """Decode a base64 image in the worker as the pipeline would; return its height, width, channels.

    Bytes that are not a usable image raise TaskInputError with the decoder's reason code.
    """
    try:
        data, _ = decode_image_text(image_b64)
        pixels = decode_image(data, max_pixels=settings.MAX_IMAGE_PIXELS, formats=settings.IMAGE_FORMATS)
    except ContractError as exc:
        raise TaskInputError(exc.reason, exc.message) from None
    except ImageDecodeError as exc:
        raise TaskInputError(exc.reason, exc.message) from None
    height, width, channels = pixels.shape
    return {"height": height, "width": width, "channels": channels}
