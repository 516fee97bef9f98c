"""The server-rendered console: login, role-based menus, organization switcher, and every page."""

from __future__ import annotations

import csv
import io
import re

import numpy as np
import pytest
from django.test import Client

from faceid import services
from faceid.models import AttemptMode, DecisionChoices, Person, VerificationAttempt
from tenants import services as tenant_services
from tenants.models import ApiKey, Role
from tenants.selectors import policy_for

pytestmark = pytest.mark.django_db
PASSWORD = "Str0ng-pass-phrase!"


def login(tenant, role=Role.ADMIN, email=None) -> Client:
    email = email or f"{role}@example.com"
    tenant.user(email, role)
    client = Client()
    assert client.login(username=email, password=PASSWORD)
    return client


def menu(response) -> list[str]:
    nav = re.search(r'<nav aria-label="Main">(.*?)</nav>', response.content.decode(), re.S).group(1)
    return re.findall(r">([^<]+)</a>", nav)


def test_anonymous_is_sent_to_login_and_can_log_in(tenant):
    tenant.user("admin@example.com", Role.ADMIN)
    client = Client()
    response = client.get("/console/persons/")
    assert response.status_code == 302 and response["Location"].startswith("/console/login/")
    assert client.get("/console/login/").status_code == 200
    response = client.post(
        "/console/login/?next=/console/persons/",
        {"username": "admin@example.com", "password": PASSWORD, "next": "/console/persons/"},
    )
    assert response.status_code == 302 and response["Location"] == "/console/persons/"
    assert client.get("/").status_code == 302
    assert client.post("/console/logout/").status_code == 302
    assert client.get("/console/").status_code == 302


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        (Role.OWNER, ["Overview", "Persons", "Verify", "Policy", "API keys", "Audit"]),
        (Role.ADMIN, ["Overview", "Persons", "Verify", "Policy", "API keys", "Audit"]),
        (Role.OPERATOR, ["Overview", "Persons", "Verify", "Audit"]),
        (Role.AUDITOR, ["Audit"]),
    ],
)
def test_menus_follow_the_role(tenant, role, expected):
    client = login(tenant, role)
    response = client.get("/console/audit/")
    assert response.status_code == 200
    assert menu(response) == expected


def test_auditor_sees_only_the_audit_trail(tenant):
    client = login(tenant, Role.AUDITOR)
    assert client.get("/console/")["Location"] == "/console/audit/"
    for url in [
        "/console/persons/",
        "/console/verify/",
        "/console/policy/",
        "/console/api-keys/",
        "/console/policy/calibration/",
    ]:
        assert client.get(url).status_code == 403, url
    assert client.post("/console/verify/frames/", {"person": "x"}).status_code == 403


def test_operator_cannot_manage(tenant):
    client = login(tenant, Role.OPERATOR)
    assert client.get("/console/persons/").status_code == 200
    assert client.get("/console/policy/").status_code == 403
    assert client.get("/console/api-keys/").status_code == 403


def test_organization_switcher(tenant, other_tenant):
    user = tenant.user("both@example.com", Role.ADMIN)
    from tenants import services as tenant_services

    tenant_services.set_membership(organization=other_tenant.organization, user=user, role=Role.AUDITOR)
    services.create_person(tenant.organization, external_id="acme-person")
    client = Client()
    client.login(username="both@example.com", password=PASSWORD)
    page = client.get("/console/persons/").content.decode()
    assert 'id="org-select"' in page and "acme-person" in page
    response = client.post("/console/organization/", {"organization": "globex"})
    assert response.status_code == 302 and response["Location"] == "/console/"
    # in globex the user is an auditor: persons are off limits, the audit page shows globex
    assert client.get("/console/persons/").status_code == 403
    assert "Org globex" in client.get("/console/audit/").content.decode()
    # not a member: refused, stays in globex
    client.post("/console/organization/", {"organization": "initech"})
    assert "Org globex" in client.get("/console/audit/").content.decode()
    # an off-site next URL is ignored
    response = client.post(
        "/console/organization/", {"organization": "acme", "next": "https://evil.example/"}
    )
    assert response["Location"] == "/console/"


def test_persons_create_search_detail(tenant, other_tenant):
    client = login(tenant)
    response = client.post("/console/persons/", {"external_id": "E-7", "display_name": "Grace"})
    person = Person.objects.get(external_id="E-7")
    assert response["Location"] == f"/console/persons/{person.pk}/enroll/"
    again = client.post("/console/persons/", {"external_id": "E-7"})
    assert "exists" in again.content.decode()
    services.create_person(tenant.organization, external_id="E-8", display_name="Alan")
    listing = client.get("/console/persons/?q=grace").content.decode()
    assert "E-7" in listing and "E-8" not in listing
    services.store_templates(
        tenant.organization,
        person,
        [
            services.TemplateData(
                model_name="dlib_resnet_v1",
                model_version="v",
                variant=v,
                embedding=np.ones(128),
                source_sha256="b" * 64,
                quality=0.9,
                mask_probability=0.01,
            )
            for v in ("full", "masked_synthetic", "masked_cutout")
        ],
    )
    detail = client.get(f"/console/persons/{person.pk}/").content.decode()
    assert "Full face" in detail and "Lower face blanked" in detail and "0.90" in detail
    theirs = services.create_person(other_tenant.organization, external_id="THEIRS")
    assert client.get(f"/console/persons/{theirs.pk}/").status_code == 404
    assert client.get(f"/console/persons/{theirs.pk}/enroll/").status_code == 404
    assert client.post(f"/console/persons/{theirs.pk}/erase/", {"confirm": "THEIRS"}).status_code == 404


def test_deactivate_and_erase_with_confirmation(tenant):
    client = login(tenant)
    person = services.create_person(tenant.organization, external_id="E-9")
    client.post(f"/console/persons/{person.pk}/", {"action": "deactivate"})
    person.refresh_from_db()
    assert not person.active
    page = client.get(f"/console/persons/{person.pk}/erase/").content.decode()
    assert "cannot be undone" in page
    wrong = client.post(f"/console/persons/{person.pk}/erase/", {"confirm": "E-1"})
    assert wrong.status_code == 200 and "not the person" in wrong.content.decode()
    person.refresh_from_db()
    assert not person.is_erased
    client.post(f"/console/persons/{person.pk}/erase/", {"confirm": "E-9"})
    person.refresh_from_db()
    assert person.is_erased


def test_policy_page_saves_and_validates(tenant):
    client = login(tenant)
    page = client.get("/console/policy/").content.decode()
    assert "threshold_masked" in page and "lockout_failures" in page and "keep_images" in page
    data = {
        "embedding_model": "dlib_resnet_v1",
        "threshold_unmasked": "0.93",
        "threshold_masked": "0.97",
        "target_far": "0.001",
        "mask_threshold": "0.5",
        "mask_strategy": "cutout",
        "require_unmasked_enrollment": "on",
        "lockout_failures": "3",
        "lockout_window_seconds": "60",
        "lockout_seconds": "120",
        "image_retention_days": "7",
        "identify_fpir": "0.01",
    }
    assert client.post("/console/policy/", data).status_code == 302
    policy = policy_for(tenant.organization)
    assert (policy.threshold_masked, policy.mask_strategy, policy.lockout_failures) == (0.97, "cutout", 3)
    bad = client.post("/console/policy/", {**data, "threshold_masked": "7"})
    assert bad.status_code == 200 and "errorlist" in bad.content.decode()


def test_policy_page_sets_identify_fpir_and_shows_the_gallery_it_is_chosen_for(tenant):
    client = login(tenant)
    for n in range(2):
        person = services.create_person(tenant.organization, external_id=f"idf-{n}")
        vector = np.random.default_rng(n).normal(size=128)
        services.store_templates(
            tenant.organization,
            person,
            [
                services.TemplateData(
                    "dlib_resnet_v1", "v", "full", (vector / np.linalg.norm(vector)).tolist(), f"{n:064x}"
                )
            ],
        )
    page = client.get("/console/policy/").content.decode()
    assert 'id="identify-fpir"' in page and "Now 2 person(s) are searched" in page
    form = _policy_form_values(tenant)
    assert client.post("/console/policy/", {**form, "identify_fpir": "0.001"}).status_code == 302
    assert policy_for(tenant.organization).identify_fpir == 0.001
    bad = client.post("/console/policy/", {**form, "identify_fpir": "0.9"})
    assert bad.status_code == 200 and "errorlist" in bad.content.decode()
    assert policy_for(tenant.organization).identify_fpir == 0.001


def _policy_form_values(tenant) -> dict[str, str]:
    policy = policy_for(tenant.organization)
    values = {}
    for name in tenant_services.POLICY_FIELDS:
        value = getattr(policy, name)
        if isinstance(value, bool):
            if value:
                values[name] = "on"
        else:
            values[name] = str(value)
    return values


def _synthetic_templates(tenant, persons=6, photos=3, seed=0):
    rng = np.random.default_rng(seed)
    for p in range(persons):
        person = services.create_person(tenant.organization, external_id=f"cal-{p}")
        centre = rng.normal(size=128)
        for k in range(photos):
            data = []
            for variant, noise in (("full", 0.35), ("masked_synthetic", 0.6), ("masked_cutout", 0.6)):
                vector = centre + noise * rng.normal(size=128)
                data.append(
                    services.TemplateData(
                        model_name="dlib_resnet_v1",
                        model_version="v",
                        variant=variant,
                        embedding=vector / np.linalg.norm(vector),
                        source_sha256=f"{p:02d}{k:02d}".ljust(64, "0"),
                    )
                )
            services.store_templates(tenant.organization, person, data)


def test_calibration_page_plots_and_proposes(tenant):
    _synthetic_templates(tenant)
    client = login(tenant)
    response = client.get("/console/policy/calibration/")
    assert response.status_code == 200
    page = response.content.decode()
    assert page.count('src="data:image/png;base64,iVBORw0KGgo') == 2  # two PNGs
    assert 'data-distribution="unmasked"' in page and 'data-distribution="masked"' in page
    assert "impostor pairs" in page
    before = policy_for(tenant.organization)
    response = client.post("/console/policy/calibration/", {"apply": "1", "apply_unmasked": "1"})
    assert response.status_code == 302
    # 6 persons x 3 photos alone cannot support FAR 1e-3; pooled with dlib's shipped reference
    # impostor statistics they can: the unmasked proposal is applied, never below the floor, and
    # the masked threshold, not asked for, stays (tests/api/test_calibration.py refuses a model
    # without a reference).
    policy = policy_for(tenant.organization)
    assert policy.threshold_unmasked != before.threshold_unmasked
    assert policy.threshold_unmasked >= policy.floor_for(masked=False)
    assert policy.threshold_masked == before.threshold_masked


def test_calibration_page_without_templates(tenant):
    response = login(tenant).get("/console/policy/calibration/")
    assert response.status_code == 200 and "Apply" in response.content.decode()


def test_api_key_is_shown_once_and_can_be_revoked(tenant):
    client = login(tenant)
    response = client.post("/console/api-keys/", {"name": "door 3", "scopes": ["verify", "audit:read"]})
    page = response.content.decode()
    plaintext = re.search(r'id="new-key-value">(fid_[^<]+)<', page).group(1)
    assert response["Cache-Control"] == "no-store"
    key = ApiKey.objects.get(name="door 3")
    assert sorted(key.scopes) == ["audit:read", "verify"]
    listing = client.get("/console/api-keys/").content.decode()
    assert plaintext not in listing and key.prefix in listing and "never" in listing
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    assert api.get("/api/v1/attempts/").status_code == 200
    assert client.post(f"/console/api-keys/{key.pk}/revoke/").status_code == 302
    assert api.get("/api/v1/attempts/").status_code == 401
    assert "revoked" in client.get("/console/api-keys/").content.decode()
    assert client.post("/console/api-keys/", {"name": "none", "scopes": []}).status_code == 200


def test_audit_page_filters_exports_and_checks_the_chain(tenant):
    org = tenant.organization
    alice = services.create_person(org, external_id="alice")
    services.record_attempt(
        org,
        mode=AttemptMode.VERIFY,
        decision=DecisionChoices.ACCEPT,
        claimed_person=alice,
        similarity=0.91,
        threshold=0.82,
        masked=False,
    )
    services.record_attempt(
        org,
        mode=AttemptMode.VERIFY,
        decision=DecisionChoices.REJECT,
        claimed_person=alice,
        similarity=0.31,
        threshold=0.78,
        masked=True,
        mask_probability=0.99,
    )
    client = login(tenant, Role.AUDITOR)
    page = client.get("/console/audit/").content.decode()
    # The chain also holds the organization's audited events (policy set-up, the auditor's login).
    chained = VerificationAttempt.objects.filter(organization=org).count()
    assert chained > 2 and "intact" in page and f"{chained} rows verified" in page
    assert page.count("data-attempt=") == 2
    masked = client.get("/console/audit/?masked=true").content.decode()
    assert masked.count("data-attempt=") == 1 and "reject" in masked
    export = client.get("/console/audit.csv?decision=accept")
    rows = list(csv.reader(io.StringIO(b"".join(export.streaming_content).decode())))
    assert len(rows) == 2 and rows[1][3] == "accept"
    assert client.post("/console/audit/", {"check_chain": "1"}).status_code == 302


def test_console_json_endpoints_need_csrf(tenant):
    tenant.user("admin@example.com", Role.ADMIN)
    person = services.create_person(tenant.organization, external_id="p")
    client = Client(enforce_csrf_checks=True)
    client.login(username="admin@example.com", password=PASSWORD)
    assert client.post(f"/console/persons/{person.pk}/enroll/frames/", {}).status_code == 403
    assert client.post("/console/verify/frames/", {"person": "p"}).status_code == 403


def test_console_frames_over_the_limit_are_413(tenant, settings):
    settings.MAX_UPLOAD_BYTES = 10_000
    client = login(tenant)
    person = services.create_person(tenant.organization, external_id="p")
    from django.core.files.uploadedfile import SimpleUploadedFile

    response = client.post(
        f"/console/persons/{person.pk}/enroll/frames/",
        {"image": SimpleUploadedFile("f.jpg", b"\xff" * 20_000, "image/jpeg")},
    )
    assert response.status_code == 413 and response.json()["reason"] == "too_large"
