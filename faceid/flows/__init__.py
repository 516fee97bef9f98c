"""The enroll, verify (1:1) and identify (1:N) flows, shared by the REST API and the console.

Each flow is a service with two halves around one pipeline task (``faceid.worker.tasks``):
``prepare_*`` (web process: resolve the person within the caller's organization, check the
lockout and the images, build the PipelineRequest) and ``finish_*`` (match, decide, store, audit:
one audit row per verify/identify call). ``runner.run_sync`` joins them for a synchronous call,
``faceid.jobs`` for an asynchronous one. Refusals raise FlowError; results are typed
(faceid.flows.results). The flows never touch torch; the pipeline never touches the database.
"""

from faceid.flows.common import Caller, FlowError, ImageInput, PreparedCall
from faceid.flows.enroll import prepare_enroll
from faceid.flows.identify import prepare_identify
from faceid.flows.runner import finish, run_sync
from faceid.flows.verify import prepare_verify

__all__ = [
    "Caller",
    "FlowError",
    "ImageInput",
    "PreparedCall",
    "finish",
    "prepare_enroll",
    "prepare_identify",
    "prepare_verify",
    "run_sync",
]
