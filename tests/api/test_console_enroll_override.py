"""The console's enroll page offers the face-match override to owners and admins only."""

from __future__ import annotations

import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from PIL import Image

from faceid import selectors, services
from tenants.models import Role

pytestmark = pytest.mark.django_db

PASSWORD = "Str0ng-pass-phrase!"


def _login(tenant, role: str) -> Client:
    email = f"{role}@example.com"
    tenant.user(email, role=role, password=PASSWORD)
    client = Client()
    assert client.login(username=email, password=PASSWORD)
    return client


def _photo() -> SimpleUploadedFile:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), (90, 120, 150)).save(buffer, format="JPEG")
    return SimpleUploadedFile("photo.jpg", buffer.getvalue(), content_type="image/jpeg")


@pytest.mark.parametrize(("role", "offered"), [(Role.ADMIN, True), (Role.OPERATOR, False)])
def test_the_override_box_is_shown_to_managers_only(tenant, role, offered):
    person = services.create_person(tenant.organization, external_id="zoe")
    page = _login(tenant, role).get(f"/console/persons/{person.pk}/enroll/").content.decode()
    assert ('name="override"' in page) is offered


def test_an_operator_cannot_override_even_by_posting_the_field(tenant):
    person = services.create_person(tenant.organization, external_id="zoe")
    client = _login(tenant, Role.OPERATOR)
    response = client.post(
        f"/console/persons/{person.pk}/enroll/", {"image": _photo(), "override": "on"}, follow=True
    )
    assert response.status_code == 200
    assert any("override" in str(m).lower() for m in response.context["messages"])
    assert not selectors.templates_for_person(tenant.organization, person).exists()
