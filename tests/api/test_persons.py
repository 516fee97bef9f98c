"""Persons: create, list/search, show, update, deactivate, erase; and tenant isolation."""

from __future__ import annotations

import pytest

from faceid import services
from faceid.models import FaceTemplate, Person
from tests.api.helpers import create_person

pytestmark = pytest.mark.django_db


def test_create_returns_201_with_id(tenant):
    client = tenant.client("enroll")
    response = client.post("/api/v1/persons/", {"external_id": "E-001", "display_name": "Ada"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["id"] == Person.objects.get(external_id="E-001").pk
    assert body["external_id"] == "E-001" and body["display_name"] == "Ada" and body["active"] is True
    assert body["templates"] == 0


def test_create_refuses_duplicates_and_bad_input(tenant):
    client = tenant.client("enroll")
    create_person(client, "E-001")
    duplicate = client.post("/api/v1/persons/", {"external_id": "E-001"}, format="json")
    assert duplicate.status_code == 409 and duplicate.json()["reason"] == "duplicate_external_id"
    missing = client.post("/api/v1/persons/", {"display_name": "nobody"}, format="json")
    assert missing.status_code == 400
    assert missing.json()["reason"] == "invalid" and "external_id" in missing.json()["errors"]
    blank = client.post("/api/v1/persons/", {"external_id": "   "}, format="json")
    assert blank.status_code == 400
    malformed = client.post("/api/v1/persons/", b"{not json", content_type="application/json")
    assert malformed.status_code == 400 and malformed.json()["reason"] == "malformed_request"


def test_same_external_id_in_two_organizations_is_fine(tenant, other_tenant):
    create_person(tenant.client("enroll"), "E-001")
    create_person(other_tenant.client("enroll"), "E-001")


def test_list_is_paginated_and_searchable(tenant):
    client = tenant.client("enroll")
    for i in range(7):
        create_person(client, f"E-{i:03d}", "Grace Hopper" if i == 3 else f"Person {i}")
    page = client.get("/api/v1/persons/?page_size=5").json()
    assert page["count"] == 7 and len(page["results"]) == 5 and page["next"]
    assert [p["external_id"] for p in client.get("/api/v1/persons/?search=hopper").json()["results"]] == [
        "E-003"
    ]
    assert [p["external_id"] for p in client.get("/api/v1/persons/?search=E-006").json()["results"]] == [
        "E-006"
    ]


def test_show_update_deactivate(tenant):
    client = tenant.client("enroll")
    person_id = create_person(client, "E-001", "Ada")
    assert client.get(f"/api/v1/persons/{person_id}/").json()["display_name"] == "Ada"
    response = client.patch(f"/api/v1/persons/{person_id}/", {"display_name": "Ada L."}, format="json")
    assert response.status_code == 200 and response.json()["display_name"] == "Ada L."
    response = client.patch(f"/api/v1/persons/{person_id}/", {"active": False}, format="json")
    assert response.json()["active"] is False
    assert client.get("/api/v1/persons/?active=false").json()["count"] == 1
    assert client.get("/api/v1/persons/?active=true").json()["count"] == 0
    create_person(client, "E-002")
    clash = client.patch(f"/api/v1/persons/{person_id}/", {"external_id": "E-002"}, format="json")
    assert clash.status_code == 409


def test_erase_removes_templates_and_the_person_answers_404(tenant):
    client = tenant.client("enroll")
    person_id = create_person(client, "E-001", "Ada")
    person = Person.objects.get(pk=person_id)
    services.store_templates(
        tenant.organization,
        person,
        [
            services.TemplateData(
                model_name="dlib_resnet_v1",
                model_version="t",
                variant="full",
                embedding=[0.1] * 128,
                source_sha256="a" * 64,
            )
        ],
    )
    assert client.get(f"/api/v1/persons/{person_id}/faces/").json()[0]["variant"] == "full"
    response = client.delete(f"/api/v1/persons/{person_id}/")
    assert response.status_code == 204
    assert not FaceTemplate.objects.filter(person_id=person_id).exists()
    person.refresh_from_db()
    assert person.is_erased and person.display_name == ""
    assert client.get(f"/api/v1/persons/{person_id}/").status_code == 404
    assert client.delete(f"/api/v1/persons/{person_id}/").status_code == 404
    # the external id can be enrolled again after an erasure
    create_person(client, "E-001")


def test_other_organizations_persons_are_invisible(tenant, other_tenant):
    theirs = create_person(other_tenant.client("enroll"), "THEIRS", "Secret")
    client = tenant.client("enroll")
    assert client.get("/api/v1/persons/").json()["count"] == 0
    for method, url, data in [
        ("get", f"/api/v1/persons/{theirs}/", None),
        ("patch", f"/api/v1/persons/{theirs}/", {"display_name": "hacked"}),
        ("delete", f"/api/v1/persons/{theirs}/", None),
        ("get", f"/api/v1/persons/{theirs}/faces/", None),
        ("post", f"/api/v1/persons/{theirs}/faces/", {"image": "aGVsbG8="}),
    ]:
        response = getattr(client, method)(url, data, format="json")
        assert response.status_code == 404, (method, url, response.content)
        assert response.json()["reason"] == "not_found"
    person = Person.objects.get(pk=theirs)
    assert person.display_name == "Secret" and not person.is_erased


def test_a_duplicate_external_id_is_409_with_the_services_detail_on_create_and_update(tenant):
    client = tenant.client("enroll")
    create_person(client, "E-001")
    other = create_person(client, "E-002")
    for response in (
        client.post("/api/v1/persons/", {"external_id": " E-001 "}, format="json"),
        client.patch(f"/api/v1/persons/{other}/", {"external_id": "E-001"}, format="json"),
    ):
        assert response.status_code == 409
        assert response.json() == {
            "reason": "duplicate_external_id",
            "detail": "A person with external id 'E-001' exists.",
        }
    assert client.get(f"/api/v1/persons/{other}/").json()["external_id"] == "E-002"


def test_the_list_filters_are_parsed_and_bad_ones_are_400(tenant):
    client = tenant.client("enroll")
    create_person(client, "E-001")
    assert client.get("/api/v1/persons/?active=&search=").json()["count"] == 1
    assert client.get("/api/v1/persons/?active=yes").json()["count"] == 1
    response = client.get("/api/v1/persons/?active=maybe")
    assert response.status_code == 400 and "active" in response.json()["errors"]
