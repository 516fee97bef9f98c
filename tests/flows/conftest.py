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
    """The organization's audit rows, oldest first."""
    from faceid.selectors import attempts_for

    return lambda: list(attempts_for(organization).order_by("seq"))
