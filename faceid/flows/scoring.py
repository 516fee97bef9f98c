"""Verify and identify scoring in the product: a probe frame against persons' enrolled photos.

The rule itself is inference.comparison (pure, shared with the evaluation CLI); this module
feeds it from the database: a person's templates grouped by the photo they came from (their
``source_sha256``), each photo with its own mask decision, and a frame's vectors and its mask
decision. A photo without a full-face template was enrolled with a mask on: an unmasked probe
meets it in the mask-aware space, which is why the web side asks the worker for the probe's
mask-aware vector when such photos exist (``needs_mask_aware``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.db.models import Exists, OuterRef, Q

from faceid.contracts import FrameResult
from faceid.models import FaceTemplate, Person
from inference.comparison import Decision, EnrolledPhoto, ProbeSide, Thresholds, decide
from inference.variants import VARIANT_FULL, is_unsure, unsure_band
from tenants.models import Organization


def policy_thresholds(policy: Any) -> Thresholds:
    """The policy's (or a PolicySnapshot's) thresholds per comparison space."""
    return Thresholds(unmasked=float(policy.threshold_unmasked), masked=float(policy.threshold_masked))


def probe_side(frame: FrameResult, *, mask_threshold: float) -> ProbeSide:
    """A frame as the rule sees it. Its unsure flag is the worker's, else recomputed here."""
    unsure = frame.mask_unsure
    if unsure is None:
        unsure = is_unsure(frame.mask_probability, mask_threshold)
    return ProbeSide(vectors=frame.embeddings, masked=bool(frame.masked), unsure=bool(unsure))


def person_photos(
    organization: Organization, model_name: str, person_ids: Iterable[int], *, mask_threshold: float
) -> dict[int, list[EnrolledPhoto]]:
    """person id -> their enrolled photos of this model (templates grouped by source photo)."""
    ids = list(dict.fromkeys(person_ids))
    if not ids:
        return {}
    rows = FaceTemplate.objects.filter(
        organization=organization, model_name=model_name, person_id__in=ids
    ).values_list("person_id", "source_sha256", "variant", "embedding", "mask_probability")
    grouped: dict[tuple[int, str], dict[str, list]] = {}
    probability: dict[tuple[int, str], float | None] = {}
    for person_id, source, variant, embedding, mask_probability in rows:
        key = (person_id, source)
        grouped.setdefault(key, {}).setdefault(variant, []).append(embedding)
        if mask_probability is not None:
            probability[key] = max(mask_probability, probability.get(key) or 0.0)
    photos: dict[int, list[EnrolledPhoto]] = {person_id: [] for person_id in ids}
    for (person_id, source), templates in sorted(grouped.items()):
        unsure = is_unsure(probability.get((person_id, source)), mask_threshold)
        photos[person_id].append(EnrolledPhoto(key=source, templates=templates, unsure=unsure))
    return photos


def score_frame(
    frame: FrameResult,
    photos: Iterable[EnrolledPhoto],
    *,
    strategy: str,
    thresholds: Thresholds,
    mask_threshold: float,
) -> Decision | None:
    """One frame against one person's photos (None: nothing could be compared)."""
    probe = probe_side(frame, mask_threshold=mask_threshold)
    return decide(probe, photos, strategy=strategy, thresholds=thresholds)


def score_persons(
    organization: Organization,
    frame: FrameResult,
    person_ids: Iterable[int],
    *,
    model_name: str,
    strategy: str,
    thresholds: Thresholds,
    mask_threshold: float,
) -> dict[int, Decision]:
    """Identify's re-ranking: the frame against each candidate person (HNSW found them by any
    variant), decided by the same rule as verify. Persons nothing could be compared with are
    left out."""
    photos = person_photos(organization, model_name, person_ids, mask_threshold=mask_threshold)
    decisions: dict[int, Decision] = {}
    for person_id, photos_of in photos.items():
        decision = score_frame(
            frame, photos_of, strategy=strategy, thresholds=thresholds, mask_threshold=mask_threshold
        )
        if decision is not None:
            decisions[person_id] = decision
    return decisions


def _mask_only_or_unsure(templates: Any, mask_threshold: float) -> Any:
    """Templates of photos that an unmasked probe can only meet (also) in the mask-aware space:
    photos without a full-face template, and photos whose mask decision was unsure."""
    full_of_same_photo = FaceTemplate.objects.filter(
        person_id=OuterRef("person_id"),
        model_name=OuterRef("model_name"),
        source_sha256=OuterRef("source_sha256"),
        variant=VARIANT_FULL,
    )
    low, high = unsure_band(mask_threshold)
    unsure = Q(mask_probability__gte=low, mask_probability__lt=high)
    return templates.filter(~Exists(full_of_same_photo) | unsure)


def needs_mask_aware(
    organization: Organization, model_name: str, *, mask_threshold: float, person: Person | None = None
) -> bool:
    """Whether unmasked probe frames should carry their mask-aware vector too: verify asks about
    the claimed person, identify (person=None) about the organization's active gallery."""
    templates = FaceTemplate.objects.filter(organization=organization, model_name=model_name)
    if person is not None:
        templates = templates.filter(person=person)
    else:
        templates = templates.filter(person__active=True, person__erased_at__isnull=True)
    return _mask_only_or_unsure(templates, mask_threshold).exists()
