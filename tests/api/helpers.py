"""Calls the API tests make as kiosks do: persons by JSON, photos as multipart file fields."""

from __future__ import annotations

from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient


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
