"""Calls the API tests make as kiosks do: persons by JSON, photos as multipart file fields."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from tenants import services as tenant_services
from tenants.models import Role
from tenants.selectors import policy_for
from tests.portraits import TEST_THRESHOLDS


def enroll(client: APIClient, person_id: int, *images: bytes, **extra):
    files = [("image", (f"photo{i}.jpg", data, "image/jpeg")) for i, data in enumerate(images)]
    return post_multipart(client, f"/api/v1/persons/{person_id}/faces/", files, **extra)


def post_multipart(client: APIClient, url: str, files: list, fields: dict | None = None, **extra):
    """multipart/form-data with repeated `image` file fields, as kiosks send them."""
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


def make_tenant(slug: str) -> Tenant:
    organization = tenant_services.create_organization(slug=slug, name=f"Org {slug}", **TEST_THRESHOLDS)
    return Tenant(organization, policy_for(organization))


def store_random_template(organization, person, *, seed: int, source_sha256: str) -> None:
    """A full-face template of a random unit vector, for tests that refuse before any comparison."""
    from faceid import services

    vector = np.random.default_rng(seed).standard_normal(128)
    services.store_templates(
        organization,
        person,
        [
            services.TemplateData(
                model_name="dlib_resnet_v1",
                model_version="dlib_resnet_v1-test",
                variant="full",
                embedding=vector / np.linalg.norm(vector),
                source_sha256=source_sha256,
                quality=0.9,
                mask_probability=0.01,
            )
        ],
    )
