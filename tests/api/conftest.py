"""Fixtures for the REST API and console tests.

Pipeline calls go through a REAL Celery worker (`celery_worker` / `pipeline_worker` from
tests/plugins/celery_worker.py, prefork, on the test database) with real photos from
../shared/data. The worker runs the pipeline only, so tests that just call the API in-process can
keep the fast `db` fixture; tests whose worker task touches the database (async jobs) use
`transactional_db`.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.api.helpers import Tenant, make_tenant


@pytest.fixture(autouse=True)
def _rate_limits(generous_rate_limits) -> None:
    pass


@pytest.fixture(scope="session")
def photo(portraits_dir: Path):
    """Bytes of a portrait, downscaled to at most 800 px (as a camera would send)."""
    cache: dict[str, bytes] = {}

    def read(name: str, max_side: int = 800) -> bytes:
        if name not in cache:
            image = Image.open(portraits_dir / name).convert("RGB")
            image.thumbnail((max_side, max_side))
            cache[name] = _jpeg(image, quality=92)
        return cache[name]

    return read


def _jpeg(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def no_face_jpeg() -> bytes:
    """A real photo without any face: a smooth gradient 'wall'."""
    y, x = np.mgrid[0:480, 0:640]
    rgb = np.stack([(x * 255 / 640), (y * 255 / 480), np.full_like(x, 120)], axis=-1).astype("uint8")
    return _jpeg(Image.fromarray(rgb))


@pytest.fixture
def tenant(db) -> Tenant:
    return make_tenant("acme")


@pytest.fixture
def other_tenant(db) -> Tenant:
    return make_tenant("globex")


@pytest.fixture
def all_scopes() -> tuple[str, ...]:
    return ("enroll", "verify", "identify", "audit:read")
