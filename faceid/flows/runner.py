"""Running a prepared flow: send its request to the pipeline worker, then finish it.

The same ``finish`` serves a synchronous call (here, in the web process, after a bounded wait)
and an asynchronous one (``faceid.jobs.finish_job``, after the pipeline task of the chain).
"""

from __future__ import annotations

import logging

from faceid.contracts import ContractError, PipelineFailure, PipelineOutput
from faceid.flows.common import FlowCall, PreparedCall
from faceid.flows.enroll import finish_enroll
from faceid.flows.identify import finish_identify
from faceid.flows.results import FlowResult
from faceid.flows.verify import finish_verify
from faceid.task_results import TaskFailed, TaskTimedOut, run_task

logger = logging.getLogger(__name__)

# The worker's task, sent by name: its module imports torch, which the web process never loads.
PIPELINE_TASK = "faceid.worker.tasks.run_pipeline"

_FINISHERS = {"verify": finish_verify, "identify": finish_identify, "enroll": finish_enroll}


def finish(
    call: FlowCall, output: PipelineOutput | None = None, failure: PipelineFailure | None = None
) -> FlowResult:
    """The flow's decision on the pipeline's output or failure. Refusals raise FlowError."""
    return _FINISHERS[call.kind](call, output, failure)


def run_sync(prepared: PreparedCall) -> FlowResult:
    """Run the pipeline task with the bounded wait (settings.PIPELINE_WAIT_SECONDS), then finish."""
    call = prepared.call
    try:
        raw = run_task(PIPELINE_TASK, prepared.request.to_json())
        output = PipelineOutput.from_json(raw)
    except TaskTimedOut as exc:
        return finish(call, failure=PipelineFailure("timeout", exc.reason, exc.message))
    except TaskFailed as exc:
        if exc.input_error:
            return finish(call, failure=PipelineFailure("input", exc.reason, exc.message))
        # The worker's exception text can name files and hosts: it goes to the logs; the client
        # (and the audit row) get the task id to quote.
        logger.error("pipeline task %s failed: %s: %s", exc.task_id, exc.exc_type, exc.message)
        reference = f"internal error, reference {exc.task_id}"
        return finish(call, failure=PipelineFailure("failed", exc.reason, reference))
    except ContractError as exc:
        logger.error("the pipeline answered outside the contract: %s", exc)
        return finish(call, failure=PipelineFailure("failed", exc.reason, exc.message))
    except Exception as exc:  # broker unreachable, ...: audited as an error, answered 503
        logger.exception("pipeline call for %s could not be made", call.kind)
        return finish(call, failure=PipelineFailure("failed", "error", type(exc).__name__))
    return finish(call, output)
