"""Reads for faceid. Every function takes the organization; nothing reads across tenants."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from django.contrib.auth.base_user import AbstractBaseUser
from django.db import connection, transaction
from django.db.backends.utils import CursorWrapper
from django.db.models import Count, F, Q, QuerySet, Value
from django.db.models.functions import Cast
from pgvector import Vector
from pgvector.django import CosineDistance, VectorField

from faceid import lockout
from faceid.lockout import LockoutStatus
from faceid.models import (
    FaceTemplate,
    Person,
    StoredImage,
    TemplateVariant,
    VerificationAttempt,
)
from inference.embedders import EmbedderSpec, embedder_spec
from inference.variants import probe_variant
from tenants.models import ApiKey, Organization, OrganizationPolicy
from tenants.selectors import policy_for

_DIGITS = re.compile(r"^[0-9]{1,18}$")

# 1:N search: the index returns this many templates per wanted person before grouping by person
# (a person has several templates: photos x variants), within pgvector's ef_search bounds.
_CANDIDATES_PER_RESULT = 10
_MIN_CANDIDATES = 40
_MAX_CANDIDATES = 1000


# --- persons -----------------------------------------------------------------------------------------


def persons_for(
    organization: Organization,
    *,
    search: str | None = None,
    active: bool | None = None,
    include_erased: bool = False,
) -> QuerySet[Person]:
    qs = Person.objects.filter(organization=organization)
    if not include_erased:
        qs = qs.filter(erased_at__isnull=True)
    if active is not None:
        qs = qs.filter(active=active)
    if search:
        search = search.strip()
        qs = qs.filter(Q(external_id__icontains=search) | Q(display_name__icontains=search))
    return qs.order_by("external_id", "id")


ID_PREFIX = "id:"


def person_by_id_or_external_id(
    organization: Organization, ident: str | int | None, *, include_erased: bool = False
) -> Person | None:
    """The person a claim names; None if nobody. The one rule for the API, the console and the
    audit filter:

    * ``id:<n>`` is the person's id, and only that (an int is the same);
    * anything else is an external id; a live person wins over erased tombstones that carried it;
    * a bare number that is nobody's external id, live or erased, is still taken as an id (what
      clients sent before ``id:`` existed).

    So an external id that looks like a number always names the person who carries it, and a
    person created later with external id "123" can never take over claims meant for id 123 that
    are written ``id:123``.
    """
    if ident is None:
        return None
    qs = persons_for(organization, include_erased=include_erased)
    if isinstance(ident, int) and not isinstance(ident, bool):
        return qs.filter(pk=ident).first()
    ident = str(ident).strip()
    if not ident:
        return None
    if ident.startswith(ID_PREFIX):
        number = ident[len(ID_PREFIX) :].strip()
        return qs.filter(pk=int(number)).first() if _DIGITS.match(number) else None
    person = qs.filter(external_id=ident).order_by(F("erased_at").desc(nulls_first=True), "-id").first()
    if person is None and _DIGITS.match(ident):
        carried = persons_for(organization, include_erased=True).filter(external_id=ident).exists()
        person = None if carried else qs.filter(pk=int(ident)).first()
    return person


# --- templates and vector search ---------------------------------------------------------------------


@dataclass(frozen=True)
class TemplateMatch:
    person: Person
    similarity: float  # cosine similarity, 1 - cosine distance
    template_id: int
    variant: str


def probe_variants(policy: OrganizationPolicy, *, masked: bool) -> list[str]:
    """Which template variants a probe is matched against: a masked probe is compared with the
    mask-aware templates of the policy's strategy, an unmasked one with full-face templates."""
    return [probe_variant(policy.mask_strategy, masked=masked)]


def templates_for_person(
    organization: Organization,
    person: Person,
    *,
    model_name: str | None = None,
    variants: Iterable[str] | None = None,
) -> QuerySet[FaceTemplate]:
    """A person's templates, embeddings deferred (load them explicitly when needed)."""
    qs = FaceTemplate.objects.filter(organization=organization, person=person).defer("embedding")
    if model_name is not None:
        qs = qs.filter(model_name=model_name)
    if variants is not None:
        qs = qs.filter(variant__in=list(variants))
    return qs.order_by("model_name", "variant", "created_at", "id")


def template_vectors_for_calibration(
    organization: Organization, model_name: str, variant: str, *, max_persons: int | None = None
) -> list[tuple[int, str, np.ndarray]]:
    """(person id, source sha256, embedding) of the organization's templates of one model and variant,
    active persons only, for faceid.calibration's genuine (same person, different photos) and impostor
    score distributions. With ``max_persons``, only that many persons are read: those with the most
    templates first (they give genuine pairs), then by id, so the choice is deterministic."""
    qs = FaceTemplate.objects.filter(
        organization=organization,
        model_name=model_name,
        variant=variant,
        person__active=True,
        person__erased_at__isnull=True,
    )
    if max_persons is not None:
        person_ids = list(
            qs.values("person_id")
            .annotate(n=Count("id"))
            .order_by("-n", "person_id")
            .values_list("person_id", flat=True)[:max_persons]
        )
        qs = qs.filter(person_id__in=person_ids)
    rows = qs.order_by("person_id", "id").values_list("person_id", "source_sha256", "embedding")
    return [(person_id, source, np.asarray(vector, dtype=np.float32)) for person_id, source, vector in rows]


def _vector_text(spec: EmbedderSpec, vector: Sequence[float] | np.ndarray) -> str:
    array = np.asarray(vector, dtype=np.float32)
    if array.shape != (spec.dim,):
        raise ValueError(f"{spec.name} probes have {spec.dim} dimensions, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise ValueError("probe embedding is not finite")
    return Vector(array).to_text()


def _variant_list(variants: Iterable[str] | None) -> list[str]:
    values = list(variants) if variants is not None else [TemplateVariant.FULL]
    unknown = [v for v in values if v not in TemplateVariant.values]
    if unknown or not values:
        raise ValueError(f"bad template variants: {values!r}")
    return values


def _nearest_sql(
    organization: Organization, spec: EmbedderSpec, vector_text: str, variants: list[str], limit: int
) -> tuple[str, list[object], int]:
    """SQL for the 1:N search, its parameters, and the candidate count (for ef_search).

    The cast ``embedding::vector(dim)`` and the literal model name match the partial HNSW index of
    this model exactly (migration 0002): the planner uses a partial index only when it can prove the
    index predicate from the query, which a bound parameter does not allow under generic plans, so
    the model name is inlined (it comes from the registry, whose names are checked SQL-safe). The
    inner query takes the nearest templates from the index; the outer ones keep each person's best.
    """
    candidates = min(max(limit * _CANDIDATES_PER_RESULT, _MIN_CANDIDATES), _MAX_CANDIDATES)
    template_table = FaceTemplate._meta.db_table
    person_table = Person._meta.db_table
    cast = f"t.embedding::vector({spec.dim})"
    probe = f"%s::vector({spec.dim})"
    sql = f"""
        SELECT best.person_id, best.template_id, best.variant, 1 - best.distance AS similarity
        FROM (
            SELECT DISTINCT ON (c.person_id) c.person_id, c.template_id, c.variant, c.distance
            FROM (
                SELECT t.person_id, t.id AS template_id, t.variant, {cast} <=> {probe} AS distance
                FROM {template_table} t
                JOIN {person_table} p ON p.id = t.person_id AND p.organization_id = t.organization_id
                WHERE t.model_name = '{spec.name}'
                  AND t.organization_id = %s
                  AND t.variant = ANY(%s)
                  AND p.active
                ORDER BY {cast} <=> {probe}
                LIMIT %s
            ) c
            ORDER BY c.person_id, c.distance
        ) best
        ORDER BY best.distance, best.person_id
        LIMIT %s
    """
    params: list[object] = [vector_text, organization.pk, variants, vector_text, candidates, limit]
    return sql, params, candidates


def _set_search_settings(cursor: CursorWrapper, candidates: int) -> None:
    # set_config(..., true) is SET LOCAL: it ends with the surrounding transaction. ef_search must be
    # at least the candidate LIMIT or the index returns fewer rows; iterative scans (pgvector >= 0.8)
    # keep scanning when the organization/variant/active filters discard rows, which otherwise
    # starves small organizations that share a model with large ones.
    cursor.execute("SELECT set_config('hnsw.ef_search', %s, true)", [str(max(candidates, _MIN_CANDIDATES))])
    cursor.execute("SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true)")


def nearest_templates(
    organization: Organization,
    model_name: str,
    vector: Sequence[float] | np.ndarray,
    *,
    variants: Iterable[str] | None = None,
    limit: int = 5,
    min_similarity: float | None = None,
) -> list[TemplateMatch]:
    """1:N search: the ``limit`` active persons of the organization whose best template of this model
    and these variants is most similar to ``vector``, best first (approximate, via HNSW)."""
    spec = embedder_spec(model_name)
    if limit < 1:
        return []
    sql, params, candidates = _nearest_sql(
        organization, spec, _vector_text(spec, vector), _variant_list(variants), limit
    )
    with transaction.atomic(), connection.cursor() as cursor:
        _set_search_settings(cursor, candidates)
        cursor.execute(sql, params)
        rows = cursor.fetchall()
    persons = Person.objects.filter(organization=organization).in_bulk([row[0] for row in rows])
    matches = [
        TemplateMatch(
            person=persons[person_id], similarity=float(similarity), template_id=template_id, variant=variant
        )
        for person_id, template_id, variant, similarity in rows
        if person_id in persons
    ]
    if min_similarity is not None:
        matches = [m for m in matches if m.similarity >= min_similarity]
    return matches


def explain_nearest_templates(
    organization: Organization,
    model_name: str,
    vector: Sequence[float] | np.ndarray,
    *,
    variants: Iterable[str] | None = None,
    limit: int = 5,
    analyze: bool = False,
) -> str:
    """EXPLAIN of exactly the query nearest_templates runs (tests and operators check index use)."""
    spec = embedder_spec(model_name)
    sql, params, candidates = _nearest_sql(
        organization, spec, _vector_text(spec, vector), _variant_list(variants), limit
    )
    with transaction.atomic(), connection.cursor() as cursor:
        _set_search_settings(cursor, candidates)
        cursor.execute(("EXPLAIN (ANALYZE, BUFFERS) " if analyze else "EXPLAIN ") + sql, params)
        return "\n".join(row[0] for row in cursor.fetchall())


def best_match_for_person(
    organization: Organization,
    person: Person,
    model_name: str,
    vector: Sequence[float] | np.ndarray,
    *,
    variants: Iterable[str] | None = None,
) -> TemplateMatch | None:
    """1:1: the person's template most similar to ``vector`` (exact), or None without templates."""
    spec = embedder_spec(model_name)
    probe = Value(_vector_text(spec, vector))
    # Ordered by similarity DESC, an expression the HNSW index cannot serve: a person has a handful
    # of templates, found through the (organization, person, model) b-tree, and must not send the
    # planner through the whole organization's graph.
    similarity = 1 - CosineDistance(Cast("embedding", VectorField(dimensions=spec.dim)), probe)
    row = (
        FaceTemplate.objects.filter(
            organization=organization,
            person=person,
            model_name=spec.name,
            variant__in=_variant_list(variants),
        )
        .annotate(similarity=similarity)
        .order_by("-similarity", "id")
        .values("id", "variant", "similarity")
        .first()
    )
    if row is None:
        return None
    return TemplateMatch(
        person=person, similarity=float(row["similarity"]), template_id=row["id"], variant=row["variant"]
    )


# --- audit log ---------------------------------------------------------------------------------------


def attempts_for(
    organization: Organization,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    person: Person | None = None,
    external_id: str | None = None,
    decision: str | Iterable[str] | None = None,
    mode: str | Iterable[str] | None = None,
    masked: bool | None = None,
    api_key: ApiKey | int | None = None,
    user: AbstractBaseUser | None = None,
    action: str | None = None,
) -> QuerySet[VerificationAttempt]:
    """The organization's audit rows (attempts and events), newest first. ``person`` matches claimed
    or matched person; ``mode`` one mode or several; ``action`` an event's action."""
    qs = VerificationAttempt.objects.filter(organization=organization).select_related(
        "api_key", "user", "claimed_person", "matched_person"
    )
    if since is not None:
        qs = qs.filter(created_at__gte=since)
    if until is not None:
        qs = qs.filter(created_at__lt=until)
    if person is not None:
        qs = qs.filter(Q(claimed_person=person) | Q(matched_person=person))
    if external_id:
        qs = qs.filter(claimed_external_id=external_id)
    if decision:
        qs = (
            qs.filter(decision=decision)
            if isinstance(decision, str)
            else qs.filter(decision__in=list(decision))
        )
    if mode:
        qs = qs.filter(mode=mode) if isinstance(mode, str) else qs.filter(mode__in=list(mode))
    if action:
        qs = qs.filter(action=action)
    if masked is not None:
        qs = qs.filter(masked=masked)
    if api_key is not None:
        qs = qs.filter(api_key=api_key)
    if user is not None:
        qs = qs.filter(user=user)
    return qs.order_by("-created_at", "-id")


def attempt_by_id(organization: Organization, attempt_id: int | str) -> VerificationAttempt | None:
    try:
        pk = int(attempt_id)
    except (TypeError, ValueError):
        return None
    return attempts_for(organization).filter(pk=pk).first()


# --- lockout -----------------------------------------------------------------------------------------
# The ledger and its rules live in faceid.lockout; these are the reads the console and the API use.


def failed_attempts_in_window(
    organization: Organization, person: Person, *, window_seconds: int, now: datetime | None = None
) -> int:
    """Frames of ``person`` counted as failed verifications within the last ``window_seconds``."""
    policy = policy_for(organization)
    window = _WindowPolicy(policy.lockout_failures, window_seconds, policy.lockout_seconds)
    return lockout.status(organization, _person_subject(person), window, now=now).failures_in_window


def lockout_status(
    organization: Organization,
    person: Person,
    policy: OrganizationPolicy | None = None,
    *,
    now: datetime | None = None,
) -> LockoutStatus:
    """Is ``person`` locked out (verify, shared by every caller)? See faceid.lockout."""
    policy = policy or policy_for(organization)
    return lockout.status(organization, _person_subject(person), policy, now=now)


def caller_lockout_status(
    organization: Organization,
    caller_key: str,
    policy: OrganizationPolicy | None = None,
    *,
    now: datetime | None = None,
) -> LockoutStatus:
    """Is this caller (``faceid.lockout.caller_key``) locked out of identify?"""
    policy = policy or policy_for(organization)
    return lockout.status(organization, lockout.Subject.caller(caller_key), policy, now=now)


def _person_subject(person: Person) -> lockout.Subject:
    return lockout.Subject.person(person, caller_key="")


@dataclass(frozen=True)
class _WindowPolicy:
    lockout_failures: int
    lockout_window_seconds: int
    lockout_seconds: int


# --- kept images -------------------------------------------------------------------------------------


def stored_images_for(organization: Organization, *, person: Person | None = None) -> QuerySet[StoredImage]:
    qs = StoredImage.objects.filter(organization=organization)
    if person is not None:
        qs = qs.filter(person=person)
    return qs.order_by("-created_at")
