"""Fixtures of the model-switch tests that run a real worker."""

from __future__ import annotations

import pytest

from inference.embedders import deployable_embedders
from tests.plugins.factories import TEST_MODEL


@pytest.fixture
def photo(portrait_jpeg):
    return portrait_jpeg


@pytest.fixture
def new_model() -> str:
    others = [name for name in deployable_embedders() if name != TEST_MODEL]
    if not others:
        pytest.skip("a switch between two models needs a second deployable model")
    return next((name for name in ("sface", "intel_0095") if name in others), others[0])
