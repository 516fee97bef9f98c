"""The steps of a model switch's background job (faceid.model_switch; the Celery tasks that run
them are in faceid.jobs): plan one pipeline call per pending person from their kept enrollment
photos, then store what the worker computed, or list the person for re-enrollment."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from faceid import services
from faceid.contracts import MAX_IMAGES, PipelineOutput, PipelineRequest, encode_image
from faceid.model_switch import maybe_complete
from faceid.models import (
    ImagePurpose,
    ModelSwitch,
    ModelSwitchPerson,
    Person,
    StoredImage,
    SwitchPersonState,
)
from tenants.models import Organization
from tenants.selectors import policy_for

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ReembedRequest:
    """One person's pipeline call: their kept enrollment photos, embedded with the new model."""

    person_id: int
    request: PipelineRequest
    sources: tuple[str, ...]  # sha256 of each photo, in the request's order


def kept_enrollment_images(organization: Organization, person: Person) -> QuerySet[StoredImage]:
    """The person's kept enrollment photos not yet past their retention, newest first."""
    return StoredImage.objects.filter(
        organization=organization,
        person=person,
        purpose=ImagePurpose.ENROLLMENT,
        expires_at__gt=timezone.now(),
    ).order_by("-created_at", "-id")


def plan(switch_id: int) -> list[ReembedRequest]:
    """The pipeline calls for the switch's pending persons; a person with no readable kept photo is
    listed for re-enrollment here. Completes the switch when nobody is left to re-embed."""
    switch = ModelSwitch.objects.select_related("organization").get(pk=switch_id)
    organization = switch.organization
    policy = policy_for(organization)
    requests = []
    pending = ModelSwitchPerson.objects.filter(switch=switch, state=SwitchPersonState.PENDING)
    for row in pending.select_related("person"):
        photos = _readable(kept_enrollment_images(organization, row.person)[:MAX_IMAGES])
        if not photos:
            reason = "no kept enrollment photo" if policy.keep_images else "the policy keeps no images"
            _settle(row, SwitchPersonState.NEEDS_ENROLLMENT, reason)
            continue
        request = PipelineRequest(
            kind="enroll",
            images_b64=tuple(encode_image(data) for _, data in photos),
            embedder=switch.new_model_name,
            mask_threshold=policy.mask_threshold,
            allow_masked=not policy.require_unmasked_enrollment,
        )
        requests.append(ReembedRequest(row.person_id, request, tuple(sha for sha, _ in photos)))
    maybe_complete(switch_id)
    return requests


def _readable(images: Sequence[StoredImage]) -> list[tuple[str, bytes]]:
    photos = []
    for image in images:
        try:
            with image.file.open("rb") as handle:
                photos.append((image.sha256, handle.read()))
        except OSError:
            logger.warning("kept image %s of person %s cannot be read", image.pk, image.person_id)
    return photos


def _settle(row: ModelSwitchPerson, state: str, reason: str = "") -> None:
    row.state, row.reason = state, reason[:200]
    row.save(update_fields=["state", "reason", "updated_at"])


def store_reembedded(
    switch_id: int, person_id: int, sources: Sequence[str], output: dict[str, Any] | None, *, error: str = ""
) -> str:
    """Store the new model's templates of one person from the pipeline's output (or list the person
    for re-enrollment when no photo was usable or the pipeline failed); their old templates go.
    Returns the person's state. A redelivered message finds the person settled and does nothing."""
    switch = ModelSwitch.objects.select_related("organization").get(pk=switch_id)
    organization = switch.organization
    with transaction.atomic():
        row = (
            ModelSwitchPerson.objects.select_for_update()
            .select_related("person")
            .filter(switch=switch, person_id=person_id)
            .first()
        )
        if row is None or row.state != SwitchPersonState.PENDING:
            return row.state if row is not None else "unknown"
        data, refusals = _templates(switch, sources, output)
        if not data:
            reason = error or "no usable kept photo: " + ", ".join(sorted(set(refusals)) or ["no face"])
            _settle(row, SwitchPersonState.NEEDS_ENROLLMENT, reason)
        else:
            try:
                services.store_templates(organization, row.person, data)
            except ValidationError as exc:
                _settle(row, SwitchPersonState.NEEDS_ENROLLMENT, "; ".join(exc.messages))
            else:
                services.delete_templates(organization, row.person, model_name=switch.old_model_name)
                _settle(row, SwitchPersonState.REEMBEDDED, f"{len(data)} templates from kept photos")
    maybe_complete(switch_id)
    return row.state


def _templates(
    switch: ModelSwitch, sources: Sequence[str], output: dict[str, Any] | None
) -> tuple[list[services.TemplateData], list[str]]:
    if output is None:
        return [], []
    parsed = PipelineOutput.from_json(output)
    data, refusals = [], []
    for sha, frame in zip(sources, parsed.results, strict=False):
        if frame.refusal or not frame.usable:
            refusals.append(frame.refusal or "not usable")
            continue
        data.extend(
            services.TemplateData(
                model_name=switch.new_model_name,
                model_version=parsed.model_version,
                variant=variant,
                embedding=vector,
                source_sha256=sha,
                quality=frame.quality_score,
                mask_probability=frame.mask_probability,
            )
            for variant, vector in frame.vectors()
        )
    return data, refusals
