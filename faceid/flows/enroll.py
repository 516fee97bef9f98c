"""Enroll: store face templates of a person from one or several photos.

Each photo goes through the pipeline (enrollment rules: one clear face, quality enforced, no mask
unless the policy allows it); a usable photo becomes its templates (full face and mask-aware
variants), a refused one says why. The call answers 201 when at least one photo was stored, 422
when none was. Enrollment is not a verify/identify attempt: it writes no row to the audit log.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.core.exceptions import ValidationError
from django.db import DatabaseError

from faceid import services
from faceid.contracts import FrameResult, PipelineFailure, PipelineOutput, PipelineRequest, encode_image
from faceid.flows.common import (
    Caller,
    FlowCall,
    FlowError,
    ImageInput,
    ImageMeta,
    PolicySnapshot,
    PreparedCall,
    check_images,
    failure_answer,
    image_metas,
    refusal_message,
)
from faceid.flows.results import EnrollResult, ModelRef, PersonRef, PhotoResult, StoredTemplate
from faceid.models import ImagePurpose, Person
from tenants.selectors import policy_for

logger = logging.getLogger(__name__)


def prepare_enroll(
    caller: Caller, *, person: Person, images: Sequence[ImageInput], started: float | None = None
) -> PreparedCall:
    """Enrollment photos of a person of the caller's organization (looked up by the caller)."""
    organization = caller.organization
    if person.organization_id != organization.pk or person.is_erased:
        raise FlowError(404, "not_found", "No such person.")
    if not person.active:
        raise FlowError(409, "person_inactive", "This person is inactive: reactivate them before enrolling.")
    check_images(images)
    policy = policy_for(organization)
    call = FlowCall(
        kind="enroll",
        caller=caller,
        policy=PolicySnapshot.of(policy),
        images=image_metas(images, keep=policy.keep_images),
        person_id=person.pk,
    )
    if started is not None:
        call.started = started
    request = PipelineRequest(
        kind="enroll",
        images_b64=tuple(encode_image(image.data) for image in images),
        embedder=policy.embedding_model,
        mask_threshold=policy.mask_threshold,
        allow_masked=not policy.require_unmasked_enrollment,
    )
    return PreparedCall(call, request)


def finish_enroll(
    call: FlowCall, output: PipelineOutput | None = None, failure: PipelineFailure | None = None
) -> EnrollResult:
    """Store the templates of every usable photo. Refusals of the whole call raise FlowError."""
    organization = call.caller.organization
    if failure is not None or output is None:
        status, reason, detail, _ = failure_answer(failure or PipelineFailure("failed", "error", "no output"))
        raise FlowError(status, reason, detail)
    undecodable = [
        {"index": i, "reason": f.decode_error.reason, "detail": f.decode_error.message}
        for i, f in enumerate(output.results)
        if f.decode_error is not None
    ]
    if undecodable:
        first = undecodable[0]
        raise FlowError(
            400,
            "bad_image",
            f"Photo {first['index']}: {first['detail']}",
            image_reason=first["reason"],
            images=undecodable,
            stored=0,
        )
    person = Person.objects.filter(organization=organization, pk=call.person_id).first()
    if person is None or person.is_erased:
        raise FlowError(404, "not_found", "No such person (erased meanwhile).")

    photos = tuple(
        _enroll_photo(call, person, output.model_version, index, meta, frame)
        for index, (meta, frame) in enumerate(zip(call.images, output.results, strict=True))
    )
    stored = sum(1 for photo in photos if photo.stored)
    first_refusal = next((p for p in photos if p.reason), None)
    return EnrollResult(
        person=PersonRef(person.pk, person.external_id),
        stored=stored,
        photos=photos,
        latency_ms=call.latency_ms(),
        model=ModelRef(call.policy.embedding_model, output.model_version),
        reason=None if stored else (first_refusal.reason if first_refusal else "refused"),
        detail=None
        if stored
        else "No photo could be enrolled: " + (first_refusal.detail if first_refusal else ""),
    )


def _enroll_photo(
    call: FlowCall, person: Person, model_version: str, index: int, meta: ImageMeta, frame: FrameResult
) -> PhotoResult:
    """Store one photo's templates (and the photo, where the policy keeps images), or say why not."""
    described = {
        "index": index,
        "filename": meta.name,
        "sha256": meta.sha256,
        "face_found": frame.face_found,
        "masked": frame.masked,
        "mask_probability": frame.mask_probability,
        "quality": frame.quality,
    }
    if frame.refusal:
        return PhotoResult(
            **described, stored=False, reason=frame.refusal, detail=refusal_message(frame.refusal)
        )
    data = [
        services.TemplateData(
            model_name=call.policy.embedding_model,
            model_version=model_version,
            variant=variant,
            embedding=vector,
            source_sha256=meta.sha256,
            quality=frame.quality_score,
            mask_probability=frame.mask_probability,
        )
        for variant, vector in frame.vectors()
    ]
    organization = call.caller.organization
    try:
        templates = services.store_templates(organization, person, data)
    except ValidationError as exc:
        return PhotoResult(**described, stored=False, reason="not_stored", detail="; ".join(exc.messages))
    kept = meta.kept_data()
    if kept is not None:
        try:
            services.keep_image(
                organization,
                data=kept,
                purpose=ImagePurpose.ENROLLMENT,
                filename=meta.name or "photo",
                content_type=meta.content_type,
                person=person,
            )
        except (OSError, ValidationError, DatabaseError):
            logger.exception("could not keep an enrollment photo of person %s", person.pk)
    return PhotoResult(
        **described,
        stored=True,
        reason=None,
        detail="",
        templates=tuple(
            StoredTemplate(t.pk, t.variant, t.quality, t.model_name, t.model_version) for t in templates
        ),
    )
