"""Fixtures of the security tests."""

from __future__ import annotations

import uuid

import pytest

from tests.api.helpers import Tenant, make_tenant


@pytest.fixture
def acme(db) -> Tenant:
    """An organization of its own, with a name no earlier run used (cache keys outlive databases)."""
    return make_tenant(f"fix-{uuid.uuid4().hex[:8]}")
