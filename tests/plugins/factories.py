"""Factories (as fixtures) for tests in any folder: organizations, users, keys, persons, templates,
audit rows, a settable clock. Everything runs on the real PostgreSQL+pgvector."""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pytest
from django.db import connection, transaction
from django.utils import timezone

from faceid import services
from faceid.audit import AUDIT_TABLE, AUDIT_TRIGGER
from faceid.models import FaceTemplate, Person, VerificationAttempt
from inference.embedders import embedder_spec
from tenants import services as tenant_services
from tenants.models import ApiKey, Organization, OrganizationPolicy, Role

# The model these tests were written around (its thresholds appear in them).
TEST_MODEL = "dlib_resnet_v1"

_counter = itertools.count(1)


def unit(vector: np.ndarray) -> np.ndarray:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def sha(label: object) -> str:
    return hashlib.sha256(str(label).encode()).hexdigest()


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240601)


@pytest.fixture
def random_vector(rng: np.random.Generator) -> Callable[..., np.ndarray]:
    def make(model_name: str = "dlib_resnet_v1") -> np.ndarray:
        return unit(rng.standard_normal(embedder_spec(model_name).dim))

    return make


@pytest.fixture
def make_org(db: None) -> Callable[..., Organization]:
    """Organizations on TEST_MODEL (dlib_resnet_v1, whose thresholds these tests were written
    around) unless `embedding_model` says otherwise; tests of the product default ask for it."""

    def make(slug: str | None = None, name: str | None = None, **policy: Any) -> Organization:
        n = next(_counter)
        organization = tenant_services.create_organization(
            slug=slug or f"org-{n}", name=name or f"Organization {n}"
        )
        model = policy.pop("embedding_model", TEST_MODEL)
        spec = embedder_spec(model)
        # Set as the organization's starting point, not changed through the service: a change
        # would be an audited model switch, which is not what these fixtures are about.
        OrganizationPolicy.objects.filter(organization=organization).update(
            embedding_model=model,
            threshold_unmasked=spec.default_threshold_unmasked,
            threshold_masked=spec.default_threshold_masked,
        )
        if policy:
            tenant_services.update_policy(organization, **policy)
        return organization

    return make


@pytest.fixture
def org(make_org: Callable[..., Organization]) -> Organization:
    return make_org("acme", "Acme")


@pytest.fixture
def other_org(make_org: Callable[..., Organization]) -> Organization:
    return make_org("globex", "Globex")


@pytest.fixture
def make_user(db: None, django_user_model: Any) -> Callable[..., Any]:
    def make(org: Organization | None = None, role: str = Role.OPERATOR, email: str | None = None) -> Any:
        user = django_user_model.objects.create_user(
            username=email or f"user{next(_counter)}@example.com", password="x-Very-long-pass-123"
        )
        if org is not None:
            tenant_services.set_membership(org, user=user, role=role)
        return user

    return make


@pytest.fixture
def make_api_key(db: None) -> Callable[..., tuple[ApiKey, str]]:
    def make(org: Organization, scopes: tuple[str, ...] = ("verify", "enroll", "identify", "audit:read")):
        return tenant_services.create_api_key(org, name=f"key {next(_counter)}", scopes=scopes)

    return make


@pytest.fixture
def make_person(db: None) -> Callable[..., Person]:
    def make(org: Organization, external_id: str | None = None, display_name: str = "Jane Doe") -> Person:
        return services.create_person(
            org, external_id=external_id or f"E{next(_counter):05d}", display_name=display_name
        )

    return make


@pytest.fixture
def make_template(random_vector: Callable[..., np.ndarray]) -> Callable[..., FaceTemplate]:
    def make(
        org: Organization,
        person: Person,
        *,
        model_name: str = "dlib_resnet_v1",
        variant: str = "full",
        vector: np.ndarray | None = None,
        source: object | None = None,
        mask_probability: float | None = 0.01,
    ) -> FaceTemplate:
        data = services.TemplateData(
            model_name=model_name,
            model_version=f"{model_name}-test",
            variant=variant,
            embedding=random_vector(model_name) if vector is None else vector,
            source_sha256=sha(source if source is not None else next(_counter)),
            quality=0.9,
            mask_probability=mask_probability,
        )
        return services.store_templates(org, person, [data])[0]

    return make


@pytest.fixture
def record(db: None) -> Callable[..., VerificationAttempt]:
    """record_attempt with defaults: a rejected 1:1 verification."""

    def make(org: Organization, **fields: Any) -> VerificationAttempt:
        values: dict[str, Any] = {
            "mode": "verify",
            "decision": "reject",
            "similarity": 0.41,
            "threshold": 0.82,
        }
        values.update(fields)
        return services.record_attempt(org, **values)

    return make


class Clock:
    """A settable django.utils.timezone.now, for rows whose times the test must control."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **kwargs: float) -> datetime:
        self.now += timedelta(**kwargs)
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[Clock]:
    fake = Clock(timezone.now().replace(microsecond=0) + timedelta(days=1))
    monkeypatch.setattr(timezone, "now", fake)
    yield fake


@pytest.fixture
def media_root(settings: Any, tmp_path: Any) -> Any:
    settings.MEDIA_ROOT = str(tmp_path / "media")
    return tmp_path / "media"


def tamper(sql: str, params: list) -> None:
    """Change audit rows behind the application's back, as the table's owner or a superuser could."""
    with transaction.atomic(), connection.cursor() as cursor:
        # Django's foreign keys are deferred; ALTER TABLE refuses to run while their checks are pending.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"ALTER TABLE {AUDIT_TABLE} DISABLE TRIGGER {AUDIT_TRIGGER}")
        cursor.execute(sql, params)
        cursor.execute(f"ALTER TABLE {AUDIT_TABLE} ENABLE TRIGGER {AUDIT_TRIGGER}")
