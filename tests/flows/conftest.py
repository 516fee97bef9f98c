"""Flows decided on constructed pipeline outputs: a real database, no worker, no photos."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest

from faceid.flows import Caller
from tenants import services as tenant_services
from tenants.models import Organization
from tests.flows.builders import THRESHOLDS, Gallery

_serial = itertools.count(1)


@pytest.fixture
def organization(db) -> Organization:
    return tenant_services.create_organization(
        slug=f"flows-{next(_serial)}", name="Flows", mask_strategy="cutout", lockout_failures=3, **THRESHOLDS
    )


@pytest.fixture
def caller(organization: Organization) -> Caller:
    key, _ = tenant_services.create_api_key(
        organization, name="kiosk", scopes=["verify", "identify", "enroll"]
    )
    return Caller(organization=organization, api_key=key, client_ip="192.0.2.7")


@pytest.fixture
def gallery(organization: Organization) -> Gallery:
    return Gallery(organization, np.random.default_rng(7))


@pytest.fixture
def attempts(organization: Organization) -> Callable[[], list]:
    """The organization's verify/identify audit rows, oldest first (events left out)."""
    from faceid.selectors import attempts_for

    return lambda: list(attempts_for(organization).filter(mode__in=["verify", "identify"]).order_by("seq"))


@pytest.fixture
def make_console_caller(organization: Organization, django_user_model) -> Callable[[str], Caller]:
    """A console user of the organization with the given role, as a flow caller."""

    def make(role: str) -> Caller:
        user = django_user_model.objects.create_user(
            username=f"user{next(_serial)}@example.com", password="x-Very-long-pass-123"
        )
        tenant_services.set_membership(organization, user=user, role=role)
        return Caller(organization=organization, user=user, client_ip="192.0.2.8")

    return make
