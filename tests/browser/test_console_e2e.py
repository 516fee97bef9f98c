"""End to end in a real browser: log in, enroll a person from the (fake) webcam, verify the same
person (accepted) and another person (rejected), and find both attempts on the audit page."""

from __future__ import annotations

import re

import numpy as np
import pytest

from faceid import services
from faceid.models import FaceTemplate, Person, VerificationAttempt
from tenants import services as tenant_services
from tenants.models import Role
from tests.portraits import TEST_THRESHOLDS

EMAIL, PASSWORD = "admin@acme.example", "Str0ng-pass-phrase!"
ENROLL_PHOTO = "img1.jpg"  # id00
SAME_PERSON_PHOTO = "img10.jpg"  # id00, another photo
OTHER_PERSON_PHOTO = "img3.jpg"  # id01
TIMEOUT_MS = 120_000

# Each test starts Chromium several times and takes seconds (the webcam one runs the pipeline too).
pytestmark = pytest.mark.slow


@pytest.fixture
def organization(transactional_db):
    organization = tenant_services.create_organization(slug="acme", name="Acme Corp", **TEST_THRESHOLDS)
    user, _ = tenant_services.get_or_create_user(email=EMAIL, password=PASSWORD)
    tenant_services.set_membership(organization=organization, user=user, role=Role.ADMIN)
    second = tenant_services.create_organization(slug="initech", name="Initech")
    tenant_services.set_membership(organization=second, user=user, role=Role.AUDITOR)
    return organization


def log_in(page, base_url: str) -> None:
    page.goto(f"{base_url}/console/login/")
    page.fill("#id_username", EMAIL)
    page.fill("#id_password", PASSWORD)
    page.click("#login-submit")
    page.wait_for_url(re.compile(r".*/console/$"))


def camera_ready(page) -> None:
    page.click("#camera-start")
    page.wait_for_selector("[data-camera][data-ready=true]", timeout=30_000)
    # the page waited for 0.2 s of played video; check the picture is not black
    played = page.evaluate("document.getElementById('camera').currentTime")
    assert played >= 0.2


def test_enroll_by_webcam_then_verify_accept_and_reject(
    organization, live_server, console_settings, pipeline_worker, launch, artifacts
):
    base = live_server.url
    assert base.startswith("http://127.0.0.1:")

    # 1. enroll from the webcam (the fake camera plays a portrait of id00)
    browser = launch(ENROLL_PHOTO)
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    log_in(page, base)
    page.goto(f"{base}/console/persons/")
    page.fill("#id_external_id", "E-1001")
    page.fill("#id_display_name", "Alice Example")
    page.click("#person-create button[type=submit]")
    page.wait_for_url(re.compile(r".*/console/persons/\d+/enroll/$"))
    assert page.evaluate("!!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia)")
    camera_ready(page)
    page.select_option("#frame-count", "3")
    page.click("#camera-capture")
    summary = page.wait_for_selector(".camera-summary", timeout=TIMEOUT_MS)
    stored = int(summary.get_attribute("data-stored"))
    assert stored >= 1, page.inner_text("#camera-results")
    assert page.locator(".frame.ok").count() == stored
    assert "Stored" in page.inner_text("#camera-results") and "quality" in page.inner_text("#camera-results")
    page.screenshot(path=str(artifacts / "05-enroll-webcam.png"), full_page=True)
    person = Person.objects.get(external_id="E-1001")
    assert FaceTemplate.objects.filter(person=person, variant="full").exists()
    state = context.storage_state()
    browser.close()

    # 2. the same person, another photo, in front of the camera: accepted
    browser = launch(SAME_PERSON_PHOTO)
    page = browser.new_context(viewport={"width": 1280, "height": 900}, storage_state=state).new_page()
    page.goto(f"{base}/console/verify/")
    page.fill("#verify-person", "E-1001")
    camera_ready(page)
    page.click("#camera-capture")
    decision = page.wait_for_selector("#decision", timeout=TIMEOUT_MS)
    assert decision.get_attribute("data-decision") == "accept", page.inner_text("#verify-result")
    text = page.inner_text("#verify-result")
    assert "ACCEPTED" in text and "against threshold" in text and "Masked: no" in text
    page.screenshot(path=str(artifacts / "06-verify-accepted.png"), full_page=True)
    browser.close()

    # 3. another person claims to be E-1001: rejected
    browser = launch(OTHER_PERSON_PHOTO)
    page = browser.new_context(viewport={"width": 1280, "height": 900}, storage_state=state).new_page()
    page.goto(f"{base}/console/verify/")
    page.fill("#verify-person", "E-1001")
    camera_ready(page)
    page.click("#camera-capture")
    decision = page.wait_for_selector("#decision", timeout=TIMEOUT_MS)
    assert decision.get_attribute("data-decision") == "reject", page.inner_text("#verify-result")
    page.screenshot(path=str(artifacts / "07-verify-rejected.png"), full_page=True)

    # 4. both attempts are on the audit page, and the chain is intact
    page.goto(f"{base}/console/audit/")
    rows = page.locator("table.attempts tbody tr[data-attempt]")
    assert rows.count() == 2
    assert "reject" in rows.nth(0).inner_text() and "accept" in rows.nth(1).inner_text()
    assert "intact" in page.inner_text("#chain-status")
    page.screenshot(path=str(artifacts / "11-audit.png"), full_page=True)
    attempts = (
        VerificationAttempt.objects.filter(organization=organization).exclude(mode="event").order_by("seq")
    )
    assert [a.decision for a in attempts] == ["accept", "reject"]
    assert all(a.user is not None and a.user.get_username() == EMAIL for a in attempts)
    browser.close()


def _calibration_templates(organization, persons: int = 8, photos: int = 3) -> None:
    rng = np.random.default_rng(0)
    for p in range(persons):
        person = services.create_person(organization, external_id=f"E-{2000 + p}", display_name=f"Person {p}")
        centre = rng.normal(size=128)
        for k in range(photos):
            data = []
            for variant, noise in (("full", 0.3), ("masked_synthetic", 0.55), ("masked_cutout", 0.55)):
                vector = centre + noise * rng.normal(size=128)
                data.append(
                    services.TemplateData(
                        model_name="dlib_resnet_v1",
                        model_version="demo",
                        variant=variant,
                        embedding=vector / np.linalg.norm(vector),
                        source_sha256=f"{p:03d}{k:03d}".ljust(64, "0"),
                        quality=0.8 + 0.05 * k,
                        mask_probability=0.02,
                    )
                )
            services.store_templates(organization, person, data)


def test_every_console_page_renders_in_the_browser(
    organization, live_server, console_settings, launch, artifacts
):
    """One screenshot per console page, with role-based menus and the organization switcher."""
    _calibration_templates(organization)
    base = live_server.url
    browser = launch(None)
    page = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    page.goto(f"{base}/console/login/")
    page.screenshot(path=str(artifacts / "01-login.png"))
    log_in(page, base)
    assert [a.strip() for a in page.locator("header nav a").all_inner_texts()] == [
        "Overview",
        "Persons",
        "Verify",
        "Policy",
        "API keys",
        "Audit",
    ]
    page.screenshot(path=str(artifacts / "02-home.png"), full_page=True)

    page.goto(f"{base}/console/persons/")
    assert page.locator("#persons-table tbody tr").count() == 8
    page.fill("#q", "E-2003")
    page.click("form[role=search] button")
    assert page.locator("#persons-table tbody tr").count() == 1
    page.goto(f"{base}/console/persons/")
    page.screenshot(path=str(artifacts / "03-persons.png"), full_page=True)

    person = Person.objects.get(external_id="E-2003")
    page.goto(f"{base}/console/persons/{person.pk}/")
    assert page.locator("#templates-table tbody tr").count() == 9
    page.screenshot(path=str(artifacts / "04-person-detail.png"), full_page=True)

    page.goto(f"{base}/console/policy/")
    page.fill("#id_lockout_failures", "4")
    page.click("#policy-form button[type=submit]")
    page.wait_for_selector(".messages li.success")
    page.screenshot(path=str(artifacts / "08-policy.png"), full_page=True)

    page.goto(f"{base}/console/policy/calibration/")
    for plot in ("#histogram", "#roc"):
        assert page.evaluate(f"document.querySelector('{plot}').naturalWidth") > 300
    page.screenshot(path=str(artifacts / "09-calibration.png"), full_page=True)

    page.goto(f"{base}/console/api-keys/")
    page.fill("#id_name", "Door 3 kiosk")
    page.check("input[name=scopes][value=verify]")
    page.check("input[name=scopes][value=identify]")
    page.click("#key-create button[type=submit]")
    key = page.inner_text("#new-key-value")
    assert key.startswith("fid_")
    page.screenshot(path=str(artifacts / "10-api-keys.png"), full_page=True)
    page.goto(f"{base}/console/api-keys/")
    assert key not in page.content()
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#keys-table button.danger")
    page.wait_for_selector("text=revoked")

    page.goto(f"{base}/console/persons/{person.pk}/erase/")
    page.screenshot(path=str(artifacts / "12-erase-confirm.png"), full_page=True)
    page.fill("#id_confirm", "E-2003")
    page.click("#erase-form button[type=submit]")
    page.wait_for_url(re.compile(r".*/console/persons/$"))
    assert not FaceTemplate.objects.filter(person=person).exists()

    # the organization switcher: in Initech this user is an auditor and sees only the audit trail
    page.select_option("#org-select", "initech")
    page.wait_for_url(re.compile(r".*/console/audit/$"))
    assert [a.strip() for a in page.locator("header nav a").all_inner_texts()] == ["Audit"]
    page.screenshot(path=str(artifacts / "13-auditor-view.png"), full_page=True)
    assert errors == [], errors
