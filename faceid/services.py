"""Writes for faceid: persons, templates, kept images and the audit log.

Every service takes the organization first and refuses objects of another organization
(tenants.exceptions.ObjectNotInOrganization, a 404 to API callers). Invalid input raises Django's
ValidationError.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from faceid import job_records
from faceid.audit import append_attempt, clean_client_ip, clean_text
from faceid.events import Action, Actor, record_event
from faceid.models import (
    AttemptMode,
    DecisionChoices,
    FaceTemplate,
    ImagePurpose,
    Person,
    StoredImage,
    TemplateVariant,
    VerificationAttempt,
)
from inference.embedders import UnknownEmbedderError, embedder_spec
from tenants.exceptions import ensure_same_organization
from tenants.models import ApiKey, Organization, OrganizationPolicy
from tenants.selectors import policy_for

# The ValidationError code of an external id that a live person of the organization already has.
DUPLICATE_EXTERNAL_ID = "duplicate_external_id"
_SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
_MAX_REASON = 2000


# --- persons -----------------------------------------------------------------------------------------


def _clean_external_id(external_id: str) -> str:
    external_id = (external_id or "").strip()
    if not external_id:
        raise ValidationError({"external_id": "external_id is required"})
    if len(external_id) > Person._meta.get_field("external_id").max_length:
        raise ValidationError({"external_id": "external_id is too long"})
    return external_id


def _duplicate_external_id(external_id: str) -> ValidationError:
    return ValidationError(
        {
            "external_id": ValidationError(
                "A person with external id %(external_id)r exists.",
                code=DUPLICATE_EXTERNAL_ID,
                params={"external_id": external_id},
            )
        }
    )


def _ensure_external_id_free(
    organization: Organization, external_id: str, *, person: Person | None = None
) -> None:
    """External ids are unique among the organization's live persons (an erased one's can be reused)."""
    others = Person.objects.filter(organization=organization, external_id=external_id, erased_at__isnull=True)
    if person is not None:
        others = others.exclude(pk=person.pk)
    if others.exists():
        raise _duplicate_external_id(external_id)


def _save_person(person: Person, update_fields: list[str] | None = None) -> Person:
    person.full_clean()
    try:
        with transaction.atomic():
            person.save(update_fields=update_fields)
    except IntegrityError as exc:  # a concurrent create with the same external_id
        raise _duplicate_external_id(person.external_id) from exc
    return person


def create_person(organization: Organization, *, external_id: str, display_name: str = "") -> Person:
    """ValidationError with code DUPLICATE_EXTERNAL_ID on ``external_id`` when a live person has it."""
    external_id = _clean_external_id(external_id)
    _ensure_external_id_free(organization, external_id)
    person = Person(
        organization=organization,
        external_id=external_id,
        display_name=(display_name or "").strip(),
    )
    return _save_person(person)


def update_person(
    organization: Organization,
    person: Person,
    *,
    external_id: str | None = None,
    display_name: str | None = None,
    active: bool | None = None,
    actor: Actor | None = None,
) -> Person:
    """Change a person; an external-id change and an (de)activation are audited with the actor."""
    ensure_same_organization(organization.id, person)
    if person.is_erased:
        raise ValidationError("an erased person cannot be changed")
    old_external_id, was_active = person.external_id, person.active
    if external_id is not None:
        external_id = _clean_external_id(external_id)
        if external_id != person.external_id:
            _ensure_external_id_free(organization, external_id, person=person)
        person.external_id = external_id
    if display_name is not None:
        person.display_name = display_name.strip()
    if active is not None:
        person.active = active
    # The change and its audit rows commit together: no change without its trace.
    with transaction.atomic():
        _save_person(person, update_fields=["external_id", "display_name", "active", "updated_at"])
        if person.external_id != old_external_id:
            record_event(
                organization,
                action=Action.EXTERNAL_ID_CHANGE,
                actor=actor,
                person=person,
                details={"old": old_external_id, "new": person.external_id},
            )
        if person.active != was_active:
            _record_activation(organization, person, actor)
    return person


def _record_activation(organization: Organization, person: Person, actor: Actor | None) -> None:
    action = Action.PERSON_ACTIVATE if person.active else Action.PERSON_DEACTIVATE
    record_event(organization, action=action, actor=actor, person=person)


@transaction.atomic
def deactivate_person(organization: Organization, person: Person, *, actor: Actor | None = None) -> Person:
    ensure_same_organization(organization.id, person)
    if person.active:
        person.active = False
        person.save(update_fields=["active", "updated_at"])
        _record_activation(organization, person, actor)
    return person


@transaction.atomic
def erase_person(organization: Organization, person: Person, *, actor: Actor | None = None) -> Person:
    """Delete the person's biometric data (templates, kept images) and personal details.

    The row stays as a tombstone (external_id kept, display name blanked, inactive, erased_at set)
    so that audit rows, which hold no biometric data, still resolve and stay untouched. The erasure
    is audited (person_erase, with how many templates and images went) in the same transaction.
    """
    ensure_same_organization(organization.id, person)
    # Lock the row so an enrollment running concurrently cannot add templates after the delete.
    locked = Person.objects.select_for_update().get(pk=person.pk, organization=organization)
    templates, _ = FaceTemplate.objects.filter(organization=organization, person=locked).delete()
    images = _delete_images(
        StoredImage.objects.filter(organization=organization).filter(
            Q(person=locked) | Q(attempt__claimed_person=locked) | Q(attempt__matched_person=locked)
        )
    )
    record_event(
        organization,
        action=Action.PERSON_ERASE,
        actor=actor,
        person=locked,
        details={
            "templates_deleted": templates,
            "images_deleted": images,
            "already_erased": locked.is_erased,
        },
    )

    transaction.on_commit(lambda: job_records.forget_person(organization.pk, locked.pk))
    locked.display_name = ""
    locked.active = False
    if locked.erased_at is None:
        locked.erased_at = timezone.now()
    locked.save(update_fields=["display_name", "active", "erased_at", "updated_at"])
    for field in ("display_name", "active", "erased_at", "updated_at"):
        setattr(person, field, getattr(locked, field))
    return person


# --- templates ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TemplateData:
    """One embedding produced by the pipeline for one enrollment photo."""

    model_name: str
    model_version: str
    variant: str
    embedding: Sequence[float] | np.ndarray
    source_sha256: str
    quality: float | None = None
    mask_probability: float | None = None


def _validated_vector(data: TemplateData) -> tuple[np.ndarray, int]:
    try:
        spec = embedder_spec(data.model_name)
    except UnknownEmbedderError as exc:
        raise ValidationError({"model_name": str(exc)}) from exc
    vector = np.asarray(data.embedding, dtype=np.float32)
    if vector.shape != (spec.dim,):
        raise ValidationError(
            {"embedding": f"{data.model_name} embeddings have {spec.dim} dimensions, got {vector.shape}"}
        )
    if not np.all(np.isfinite(vector)) or not np.any(vector):
        raise ValidationError(
            {"embedding": "embedding must be finite and non-zero (cosine is undefined otherwise)"}
        )
    return vector, spec.dim


def _optional_float(
    value: Any, *, field: str, low: float | None = None, high: float | None = None
) -> float | None:
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value) or (low is not None and value < low) or (high is not None and value > high):
        raise ValidationError({field: f"{field} out of range: {value}"})
    return value


@transaction.atomic
def store_templates(
    organization: Organization, person: Person, templates: Sequence[TemplateData]
) -> list[FaceTemplate]:
    """Store the pipeline's templates for a person; a template of the same photo, model, version and
    variant is replaced rather than duplicated."""
    ensure_same_organization(organization.id, person)
    # Lock the person: erase_person holds the same lock, so templates never outlive an erasure.
    locked = Person.objects.select_for_update().get(pk=person.pk, organization=organization)
    if locked.is_erased or not locked.active:
        raise ValidationError("templates can only be stored for an active person")
    stored: list[FaceTemplate] = []
    for data in templates:
        vector, dim = _validated_vector(data)
        if data.variant not in TemplateVariant.values:
            raise ValidationError({"variant": f"unknown template variant {data.variant!r}"})
        if not data.model_version:
            raise ValidationError({"model_version": "model_version is required"})
        if not _SHA256_HEX.match(data.source_sha256 or ""):
            raise ValidationError({"source_sha256": "source_sha256 must be 64 lowercase hex characters"})
        template, _ = FaceTemplate.objects.update_or_create(
            person=locked,
            model_name=data.model_name,
            model_version=data.model_version[:64],
            variant=data.variant,
            source_sha256=data.source_sha256,
            defaults={
                "organization": organization,
                "embedding": vector,
                "dim": dim,
                "quality": _optional_float(data.quality, field="quality"),
                "mask_probability": _optional_float(
                    data.mask_probability, field="mask_probability", low=0.0, high=1.0
                ),
            },
        )
        stored.append(template)
    return stored


@transaction.atomic
def delete_templates(
    organization: Organization,
    person: Person,
    *,
    model_name: str | None = None,
    actor: Actor | None = None,
) -> int:
    """Remove a person's templates (all, or one model's), e.g. before a fresh enrollment; audited
    (template_delete, with the model and the count) whenever a template goes."""
    ensure_same_organization(organization.id, person)
    qs = FaceTemplate.objects.filter(organization=organization, person=person)
    if model_name is not None:
        qs = qs.filter(model_name=model_name)
    sources = sorted(set(qs.values_list("source_sha256", flat=True)))
    deleted, _ = qs.delete()
    if deleted:
        record_event(
            organization,
            action=Action.TEMPLATE_DELETE,
            actor=actor,
            person=person,
            details={"model_name": model_name, "deleted": deleted, "photos": sources},
        )
    return deleted


# --- audit log ---------------------------------------------------------------------------------------


_text = clean_text


def _finite_or_none(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


_client_ip = clean_client_ip


def record_attempt(
    organization: Organization,
    *,
    mode: str,
    decision: str,
    reason: str = "",
    api_key: ApiKey | None = None,
    user: AbstractBaseUser | None = None,
    claimed_person: Person | None = None,
    claimed_external_id: str | None = None,
    similarity: float | None = None,
    threshold: float | None = None,
    matched_person: Person | None = None,
    masked: bool | None = None,
    mask_probability: float | None = None,
    model_name: str = "",
    model_version: str = "",
    latency_ms: float | None = None,
    client_ip: str | None = None,
) -> VerificationAttempt:
    """Append one row to the organization's audit log: the only way to write it.

    Call it outside long-running transactions (see faceid.audit.append_attempt), and after any
    work that may roll back, so refused and failed attempts are recorded too.
    """
    if mode not in AttemptMode.values:
        raise ValueError(f"unknown mode {mode!r}")
    if decision not in DecisionChoices.values:
        raise ValueError(f"unknown decision {decision!r}")
    ensure_same_organization(organization.id, api_key, claimed_person, matched_person)
    if claimed_external_id is None:
        claimed_external_id = claimed_person.external_id if claimed_person is not None else ""
    attempt = VerificationAttempt(
        organization=organization,
        api_key=api_key,
        user=user,
        mode=mode,
        claimed_person=claimed_person,
        claimed_external_id=_text(claimed_external_id, 128),
        decision=decision,
        reason=_text(reason, _MAX_REASON),
        similarity=_finite_or_none(similarity),
        threshold=_finite_or_none(threshold),
        matched_person=matched_person,
        masked=None if masked is None else bool(masked),
        mask_probability=_finite_or_none(mask_probability),
        model_name=_text(model_name, 48),
        model_version=_text(model_version, 64),
        latency_ms=_finite_or_none(latency_ms),
        client_ip=_client_ip(client_ip),
    )
    return append_attempt(attempt)


# --- kept images -------------------------------------------------------------------------------------


def keep_image(
    organization: Organization,
    *,
    data: bytes,
    purpose: str,
    filename: str = "image",
    content_type: str = "",
    person: Person | None = None,
    attempt: VerificationAttempt | None = None,
    policy: OrganizationPolicy | None = None,
) -> StoredImage | None:
    """Keep a raw image if, and only if, the organization's policy says so; None otherwise.

    A probe image is linked to the attempt's claimed (or matched) person so that erasing that
    person removes it too.
    """
    ensure_same_organization(organization.id, person, attempt)
    if policy is None:
        policy = policy_for(organization)
    ensure_same_organization(organization.id, policy)
    if not policy.keep_images:
        return None
    if purpose not in ImagePurpose.values:
        raise ValueError(f"unknown purpose {purpose!r}")
    if person is None and attempt is not None:
        person = attempt.claimed_person or attempt.matched_person
    now = timezone.now()
    image = StoredImage(
        organization=organization,
        person=person,
        attempt=attempt,
        purpose=purpose,
        content_type=_text(content_type, 64),
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        created_at=now,
        expires_at=now + timedelta(days=policy.image_retention_days),
    )
    image.file.save(filename, ContentFile(data), save=False)
    try:
        image.save()
    except Exception:
        default_storage.delete(image.file.name)
        raise
    return image


def _delete_images(images: QuerySet[StoredImage]) -> int:
    names = list(images.values_list("file", flat=True))
    deleted, _ = images.delete()

    # Files go only once the rows are gone for good; a rolled-back erasure keeps both.
    def remove_files() -> None:
        for name in names:
            if name:
                default_storage.delete(name)

    transaction.on_commit(remove_files)
    return deleted


@transaction.atomic
def purge_expired_images(*, now: datetime | None = None, organization: Organization | None = None) -> int:
    """Delete kept images past their expiry (all organizations, or one). Returns how many."""
    qs = StoredImage.objects.filter(expires_at__lte=now or timezone.now())
    if organization is not None:
        qs = qs.filter(organization=organization)
    return _delete_images(qs)
