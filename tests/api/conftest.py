"""Fixtures for the REST API and console tests.

Pipeline calls go through a REAL Celery worker (tests/integration/conftest.py's `celery_worker`,
prefork, on the test database) with real photos from ../shared/data. The worker runs the pipeline
only, so tests that just call the API in-process can keep the fast `db` fixture; tests whose worker
task touches the database (async jobs) use `transactional_db`.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image
from rest_framework.test import APIClient

from faceid.task_results import run_task
from tenants import services as tenant_services
from tenants.models import Role
from tests.integration.conftest import celery_worker  # noqa: F401  (a session fixture, shared)

# Persons of ../shared/data/portraits/identities.txt used below: (identity, photos); the tests
# enroll the first photo(s) and probe with the later ones.
ALICE = ("id00", ["img1.jpg", "img7.jpg", "img10.jpg", "img6.jpg"])
BOB = ("id01", ["img3.jpg", "img12.jpg"])
CAROL = ("id03", ["img16.jpg", "img17.jpg"])
STRANGER = ("id05", ["img20.jpg", "img21.jpg"])  # never enrolled: the "unknown face"

# The thresholds the tests run with, measured on these portraits with the default dlib embedder
# (cosine of L2-normalised descriptors): genuine pairs >= 0.93, impostor pairs <= 0.92 unmasked;
# with a synthetic mask on the probe, genuine >= 0.945 and impostors up to ~0.96. They are set
# explicitly so the tests check the API's decisions, not the calibration of the defaults.
TEST_THRESHOLDS = {"threshold_unmasked": 0.92, "threshold_masked": 0.95}


@pytest.fixture(autouse=True)
def _generous_rate_limits(settings):
    settings.FACEID_THROTTLE_RATES = {"api": "10000/minute", "pipeline": "10000/minute"}


@pytest.fixture(scope="session")
def identities(portraits_dir: Path) -> dict[str, list[str]]:
    out = {}
    for line in (portraits_dir / "identities.txt").read_text().splitlines():
        parts = line.split()
        if parts:
            out[parts[0]] = parts[1:]
    return out


@pytest.fixture(scope="session")
def photo(portraits_dir: Path):
    """Bytes of a portrait, downscaled to at most 800 px (as a camera would send)."""
    cache: dict[str, bytes] = {}

    def read(name: str, max_side: int = 800) -> bytes:
        if name not in cache:
            image = Image.open(portraits_dir / name).convert("RGB")
            image.thumbnail((max_side, max_side))
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=92)
            cache[name] = buffer.getvalue()
        return cache[name]

    return read


def jpeg_bytes(image: Image.Image, quality: int = 90) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def no_face_jpeg() -> bytes:
    """A real photo without any face: a smooth gradient 'wall'."""
    import numpy as np

    y, x = np.mgrid[0:480, 0:640]
    rgb = np.stack([(x * 255 / 640), (y * 255 / 480), np.full_like(x, 120)], axis=-1).astype("uint8")
    return jpeg_bytes(Image.fromarray(rgb))


@pytest.fixture(scope="session")
def pipeline_worker(celery_worker):  # noqa: F811
    """The worker with its models loaded (the first pipeline call of a process loads them)."""
    from faceid.tasks import probe_faces

    image = Image.new("RGB", (64, 64), (120, 120, 120))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    run_task(
        probe_faces,
        [base64.b64encode(buffer.getvalue()).decode()],
        "dlib_resnet_v1",
        0.5,
        "synthetic",
        timeout=300,
    )
    return celery_worker


@dataclass
class Tenant:
    organization: object
    policy: object

    def key(self, *scopes: str, name: str = "test key") -> tuple[object, str]:
        return tenant_services.create_api_key(organization=self.organization, name=name, scopes=list(scopes))

    def client(self, *scopes: str) -> APIClient:
        _, plaintext = self.key(*scopes)
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
        client.api_key_plaintext = plaintext
        return client

    def user(self, email: str, role: str = Role.ADMIN, password: str = "Str0ng-pass-phrase!"):
        user, _ = tenant_services.get_or_create_user(email=email, password=password)
        tenant_services.set_membership(organization=self.organization, user=user, role=role)
        return user


def _tenant(slug: str) -> Tenant:
    organization = tenant_services.create_organization(slug=slug, name=f"Org {slug}", **TEST_THRESHOLDS)
    from tenants.selectors import policy_for

    return Tenant(organization, policy_for(organization))


@pytest.fixture
def tenant(db) -> Tenant:
    return _tenant("acme")


@pytest.fixture
def other_tenant(db) -> Tenant:
    return _tenant("globex")


@pytest.fixture
def all_scopes() -> tuple[str, ...]:
    return ("enroll", "verify", "identify", "audit:read")


def enroll(client: APIClient, person_id: int, *images: bytes, **extra):
    files = [("image", (f"photo{i}.jpg", data, "image/jpeg")) for i, data in enumerate(images)]
    return post_multipart(client, f"/api/v1/persons/{person_id}/faces/", files, **extra)


def post_multipart(client: APIClient, url: str, files: list, fields: dict | None = None, **extra):
    """multipart/form-data with repeated `image` file fields, as kiosks send them."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    data: dict = dict(fields or {})
    uploads = [SimpleUploadedFile(name, content, content_type=ctype) for _, (name, content, ctype) in files]
    if uploads:
        data["image"] = uploads
    return client.post(url, data, format="multipart", **extra)


def create_person(client: APIClient, external_id: str, name: str = "") -> int:
    response = client.post(
        "/api/v1/persons/", {"external_id": external_id, "display_name": name}, format="json"
    )
    assert response.status_code == 201, response.content
    return response.json()["id"]
