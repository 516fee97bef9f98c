"""Fixtures of the fault tests: a tenant with a key for every scope, portraits as a kiosk sends them."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from rest_framework.test import APIClient

from tenants import services as tenant_services
from tests.portraits import TEST_THRESHOLDS


@pytest.fixture(autouse=True)
def _rate_limits(generous_rate_limits) -> None:
    pass


@pytest.fixture(scope="session")
def portrait(portrait_jpeg) -> Callable[[str], bytes]:
    return portrait_jpeg


@pytest.fixture
def org_client(transactional_db):
    """(organization, API client with every scope): committed rows, so a worker thread sees them."""
    organization = tenant_services.create_organization(slug="faults", name="Faults", **TEST_THRESHOLDS)
    _, plaintext = tenant_services.create_api_key(
        organization=organization, name="faults", scopes=["enroll", "verify", "identify", "audit:read"]
    )
    client = APIClient(raise_request_exception=False)
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    client.api_key_plaintext = plaintext  # for the tests that call a web server over HTTP
    return organization, client
