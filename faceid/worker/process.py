"""Per worker process: the inference device, torch threads, and loading the models after the fork."""

from __future__ import annotations

import logging
import os
import time
from typing import Any

from celery.signals import worker_process_init
from django.conf import settings

from inference.device import configure_threads, resolve_device
from inference.pipeline import get_pipeline

logger = logging.getLogger(__name__)

_warmed_up = False


def inference_device() -> str:
    """The device this process runs the networks on: settings.INFERENCE_DEVICE, "auto" resolved."""
    return str(resolve_device(settings.INFERENCE_DEVICE))


def warmed_up() -> bool:
    return _warmed_up


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
        configure_threads(settings.INFERENCE_THREADS)
    if not settings.INFERENCE_WARMUP:
        return
    started = time.monotonic()
    try:
        get_pipeline(device=inference_device())
    except Exception:
        logger.exception("pipeline warm-up failed in pid %s; tasks will report the error", os.getpid())
        return
    _warmed_up = True
    logger.info("pipeline warmed up in pid %s in %.1f s", os.getpid(), time.monotonic() - started)
