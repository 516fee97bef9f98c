"""Waiting for a Celery task with a bound, and turning what went wrong into one clear exception.

The web process never waits forever: `run_task` either returns the task's result or raises
`TaskFailed` (the task raised in the worker) or `TaskTimedOut` (no result in time, or the worker
stopped the task at its time limit). Tasks that refuse their input raise `TaskInputError`, which
crosses the result backend intact, so the caller can tell a bad upload (400) from a fault (500).
"""

from __future__ import annotations

from typing import Any

from celery import Task, current_app
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from celery.exceptions import TimeoutError as CeleryTimeoutError
from django.conf import settings


class TaskInputError(Exception):
    """Raised inside a task whose input cannot be processed (e.g. bytes that are not an image).

    Its args are exactly (reason, message), so the result backend rebuilds it in the caller.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(reason, message)
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


class TaskError(Exception):
    """Base of what `run_task` raises."""

    def __init__(self, task_name: str, task_id: str | None, reason: str, message: str) -> None:
        super().__init__(f"task {task_name} [{task_id}] {reason}: {message}")
        self.task_name = task_name
        self.task_id = task_id
        self.reason = reason
        self.message = message


class TaskFailed(TaskError):
    """The task raised in the worker.

    `reason` is the task's machine code when it refused its input (`input_error` is True then),
    otherwise "error"; `exc_type` names the exception the worker raised.
    """

    def __init__(
        self,
        task_name: str,
        task_id: str | None,
        reason: str,
        message: str,
        *,
        exc_type: str,
        input_error: bool = False,
    ) -> None:
        super().__init__(task_name, task_id, reason, message)
        self.exc_type = exc_type
        self.input_error = input_error


class TaskTimedOut(TaskError):
    """No result in time.

    `reason` is "wait_timeout" when the caller's bound ran out (worker down, busy or not consuming
    the queue: the task is revoked so it will not run later for nobody), or "time_limit" when the
    worker stopped the task at its soft or hard time limit.
    """


def run_task(
    task: Task | str,
    *args: Any,
    timeout: float | None = None,
    options: dict[str, Any] | None = None,
    **kwargs: Any,
) -> Any:
    """Send `task` (a task, or a task's name) with args/kwargs, wait at most `timeout` seconds,
    return its result or raise.

    The web process names the worker's tasks instead of importing them: their module loads torch.
    `timeout` defaults to settings.PIPELINE_WAIT_SECONDS; `options` go to `apply_async`
    (queue, soft_time_limit, time_limit, ...).
    """
    wait = settings.PIPELINE_WAIT_SECONDS if timeout is None else timeout
    name = task if isinstance(task, str) else task.name
    signature = current_app.signature(name, args=args, kwargs=kwargs)
    result = signature.apply_async(**(options or {}))
    try:
        # Celery drains result events for up to `interval` before it checks the timeout: a wait
        # shorter than its 0.5 s default would otherwise be rounded up to it.
        interval = min(0.5, wait) if wait else 0.5
        return result.get(timeout=wait, interval=interval, propagate=True, disable_sync_subtasks=True)
    except CeleryTimeoutError:
        result.revoke()
        raise TaskTimedOut(name, result.id, "wait_timeout", f"no result within {wait:g} s") from None
    except (SoftTimeLimitExceeded, TimeLimitExceeded) as exc:
        raise TaskTimedOut(
            name, result.id, "time_limit", f"stopped by the worker's time limit ({exc})"
        ) from exc
    except TaskInputError as exc:
        raise TaskFailed(
            name, result.id, exc.reason, exc.message, exc_type=type(exc).__name__, input_error=True
        ) from exc
    except Exception as exc:
        raise TaskFailed(
            name, result.id, "error", str(exc) or repr(exc), exc_type=type(exc).__name__
        ) from exc
    finally:
        # The result is consumed (or abandoned): do not leave it in the backend until it expires.
        result.forget()
