"""Enroll: store face templates of a person from one or several photos.

Each photo goes through the pipeline (enrollment rules: one clear face, quality enforced, no mask
unless the policy allows it); a usable photo becomes its templates (full face and mask-aware
variants), a refused one says why. The call answers 201 when at least one photo was stored, 422
when none was.

Adding a face to a person who already has templates of the policy's model requires the photo's
full-face template to match them (best similarity at the policy's unmasked threshold, as verify
decides): otherwise an enroll key could add an attacker's face to someone else's record and then
verify as them. A photo that does not match is refused (``face_mismatch``) unless an admin (a
console user whose role may manage the organization) overrides it. Every enrollment is an
``enroll`` event in the audit log (which photos, what was stored), every override an
``enroll_override`` event, in the same transaction as the templates.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.core.exceptions import ValidationError
from django.db import DatabaseError

from faceid import lockout, model_switch, selectors, services
from faceid.contracts import FrameResult, PipelineFailure, PipelineOutput, PipelineRequest, encode_image
from faceid.events import Action, record_event
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
from inference.variants import VARIANT_FULL
from tenants.roles import can_manage
from tenants.selectors import policy_for, role_for

logger = logging.getLogger(__name__)


def may_override(caller: Caller) -> bool:
    """Only a console user who may manage the organization overrides the face match: API keys
    have scopes, not an admin role, and an enroll scope is exactly what the check guards against."""
    return (
        caller.user is not None
        and caller.api_key is None
        and can_manage(role_for(caller.user, caller.organization))
    )


def prepare_enroll(
    caller: Caller,
    *,
    person: Person,
    images: Sequence[ImageInput],
    started: float | None = None,
    override: bool = False,
) -> PreparedCall:
    """Enrollment photos of a person of the caller's organization (looked up by the caller).
    ``override``: store photos that do not match the person's existing templates (admins only)."""
    organization = caller.organization
    if person.organization_id != organization.pk or person.is_erased:
        raise FlowError(404, "not_found", "No such person.")
    if override and not may_override(caller):
        raise FlowError(
            403,
            "override_forbidden",
            "Only an organization owner or admin, signed in to the console, may override the face match.",
        )
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
        override=bool(override),
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

    # The person's lock: two enrollments of one person cannot both find no templates and skip the
    # face match; the templates and their audit events are written in this one transaction.
    policy = policy_for(organization)
    with lockout.holding(organization, lockout.Subject.person(person, call.caller.lockout_key), policy):
        checks = _face_checks(call, person, output)
        photos = tuple(
            _enroll_photo(call, person, output.model_version, index, meta, frame, checks.get(index))
            for index, (meta, frame) in enumerate(zip(call.images, output.results, strict=True))
        )
        _audit(call, person, photos, checks)
        if any(photo.stored for photo in photos):
            # Enrolled with the policy's model after a switch: the old model's templates retire.
            model_switch.retire_old_templates(organization, person, actor=call.caller.actor)
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


def _face_checks(
    call: FlowCall, person: Person, output: PipelineOutput
) -> dict[int, tuple[float | None, bool]]:
    """{photo index: (best similarity to the person's existing full-face templates, matches)} for
    every usable photo; empty when the person has no template of the model yet (first enrollment).
    Computed before anything is stored, so photos of this call never vouch for each other."""
    model_name = call.policy.embedding_model
    threshold = call.policy.threshold_unmasked
    if not selectors.templates_for_person(
        call.caller.organization, person, model_name=model_name, variants=[VARIANT_FULL]
    ).exists():
        serving = model_switch.serving_model(call.caller.organization, person, call.policy)
        if serving.model_name == model_name:
            return {}  # a first enrollment
        # Still matched with a model switch's old model, whose templates cannot vouch for a photo
        # embedded with the new one: only an admin's override enrolls this person (as a mismatch).
        usable = [i for i, frame in enumerate(output.results) if frame.usable and not frame.refusal]
        return {i: (None, False) for i in usable}
    checks: dict[int, tuple[float | None, bool]] = {}
    for index, frame in enumerate(output.results):
        if frame.refusal or not frame.usable:
            continue
        vectors = frame.embeddings.get(VARIANT_FULL) or []
        match = (
            selectors.best_match_for_person(
                call.caller.organization, person, model_name, vectors[0], variants=[VARIANT_FULL]
            )
            if vectors
            else None
        )
        similarity = match.similarity if match is not None else None
        checks[index] = (similarity, similarity is not None and similarity >= threshold)
    return checks


def _audit(
    call: FlowCall,
    person: Person,
    photos: tuple[PhotoResult, ...],
    checks: dict[int, tuple[float | None, bool]],
) -> None:
    """The enroll event (which photos, what was stored) and, when the face match was overridden,
    the enroll_override event naming the photos stored although they did not match."""
    organization = call.caller.organization
    record_event(
        organization,
        action=Action.ENROLL,
        actor=call.caller.actor,
        person=person,
        details={
            "model": call.policy.embedding_model,
            "override": call.override,
            "face_match_required": bool(checks),
            "stored": sum(1 for photo in photos if photo.stored),
            "photos": [
                {
                    "index": photo.index,
                    "sha256": photo.sha256,
                    "stored": photo.stored,
                    "reason": photo.reason,
                    "templates": [t.id for t in photo.templates],
                }
                for photo in photos
            ],
        },
    )
    overridden = [
        {
            "index": index,
            "sha256": photos[index].sha256,
            "similarity": None if similarity is None else round(similarity, 4),
            "threshold": call.policy.threshold_unmasked,
            "stored": photos[index].stored,
        }
        for index, (similarity, matches) in sorted(checks.items())
        if not matches
    ]
    if call.override and checks:
        record_event(
            organization,
            action=Action.ENROLL_OVERRIDE,
            actor=call.caller.actor,
            person=person,
            details={"model": call.policy.embedding_model, "mismatched": overridden},
        )


def _enroll_photo(
    call: FlowCall,
    person: Person,
    model_version: str,
    index: int,
    meta: ImageMeta,
    frame: FrameResult,
    check: tuple[float | None, bool] | None = None,
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
    if check is not None and not check[1] and not call.override:
        return PhotoResult(
            **described,
            stored=False,
            reason="face_mismatch",
            detail="This face does not match the person's enrolled face; an admin can override.",
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
