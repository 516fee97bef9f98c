"""What verify (1:1) and identify (1:N) share: the probe request, unusable frames, kept probe images."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict

from django.core.exceptions import ValidationError
from django.db import DatabaseError

from faceid import services
from faceid.contracts import FrameResult, PipelineFailure, PipelineOutput, PipelineRequest, encode_image
from faceid.flows.common import (
    FlowCall,
    FlowError,
    ImageInput,
    PolicySnapshot,
    failure_answer,
    refusal_message,
    refuse,
)
from faceid.flows.results import frame_summaries
from faceid.models import DecisionChoices, ImagePurpose, Person, VerificationAttempt

logger = logging.getLogger(__name__)

# Retry-After of a 503/504 answer: a worker or Redis coming back takes seconds.
RETRY_AFTER_SECONDS = 5
# Probe refusals mapped onto the audit log's decisions; any other refusal is a quality problem.
_REFUSAL_DECISIONS = {"no_face": DecisionChoices.NO_FACE}


def probe_request(
    policy: PolicySnapshot, images: Sequence[ImageInput], *, mask_aware: bool = False
) -> PipelineRequest:
    """The worker call that embeds verify and identify frames with the organization's policy.

    mask_aware: the frames will meet photos that exist only in the mask-aware space
    (faceid.flows.scoring.needs_mask_aware): unmasked frames then carry that vector too.
    """
    return PipelineRequest(
        kind="probe",
        images_b64=tuple(encode_image(image.data) for image in images),
        embedder=policy.embedding_model,
        mask_threshold=policy.mask_threshold,
        strategy=policy.mask_strategy,
        mask_aware=mask_aware,
    )


def refuse_failure(
    call: FlowCall, failure: PipelineFailure, *, claimed_person: Person | None = None
) -> FlowError:
    """The audited answer to a pipeline task that gave no output (raise it)."""
    status, reason, detail, decision = failure_answer(failure)
    return refuse(
        call.caller,
        started=call.started,
        mode=call.kind,
        decision=decision,
        status=status,
        reason=reason,
        detail=detail,
        audit_reason=f"{reason}: {detail}",
        model_name=call.policy.embedding_model,
        claimed_person=claimed_person,
        # 503/504 are our fault, not the caller's: say when to try again (Retry-After; tests/faults).
        extra={"retry_after": RETRY_AFTER_SECONDS} if status >= 500 else None,
    )


def usable_frames(
    call: FlowCall, output: PipelineOutput, *, claimed_person: Person | None = None
) -> list[tuple[int, FrameResult]]:
    """(index, frame) of the frames that can be matched; raises the audited 400/422 when none can."""
    common = {
        "started": call.started,
        "mode": call.kind,
        "model_name": call.policy.embedding_model,
        "model_version": output.model_version,
        "claimed_person": claimed_person,
    }
    undecodable = [(i, f) for i, f in enumerate(output.results) if f.decode_error is not None]
    if undecodable:
        images = [
            {"index": i, "reason": f.decode_error.reason, "detail": f.decode_error.message}
            for i, f in undecodable
        ]
        first = images[0]
        raise refuse(
            call.caller,
            **common,
            decision=DecisionChoices.BAD_IMAGE,
            status=400,
            reason="bad_image",
            detail=first["detail"],
            audit_reason=f"image {first['index']}: {first['detail']}",
            extra={"image_reason": first["reason"], "images": images},
        )
    usable = [(i, frame) for i, frame in enumerate(output.results) if frame.usable]
    if usable:
        return usable
    code = next((f.refusal for f in output.results if f.refusal), None) or "no_face"
    raise refuse(
        call.caller,
        **common,
        decision=_REFUSAL_DECISIONS.get(code, DecisionChoices.LOW_QUALITY),
        status=422,
        reason=code,
        detail=refusal_message(code),
        audit_reason=f"{code}: {refusal_message(code)}",
        extra={"frames": [asdict(summary) for summary in frame_summaries(output)]},
    )


def keep_probe_images(call: FlowCall, attempt: VerificationAttempt) -> None:
    """Keep the probe's raw images with its audit row, where the policy keeps images."""
    for image in call.images:
        kept = image.kept_data()
        if kept is None:
            continue
        try:
            services.keep_image(
                call.caller.organization,
                data=kept,
                purpose=ImagePurpose.PROBE,
                filename=image.name or "probe",
                content_type=image.content_type,
                attempt=attempt,
            )
        except (OSError, ValidationError, DatabaseError):  # the decision stands even if keeping fails
            logger.exception("could not keep a probe image of attempt %s", attempt.pk)
