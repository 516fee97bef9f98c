"""enroll / verify / identify / async jobs through a REAL Celery worker with real photos.

Every verify and identify must leave exactly one audit row, refusals included: `audited` checks it.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import time
import zlib

import pytest
from PIL import Image

from faceid import services
from faceid.audit import verify_chain
from faceid.contracts import PipelineOutput, PipelineRequest
from faceid.flows.common import Caller, ImageInput
from faceid.flows.enroll import finish_enroll, prepare_enroll
from faceid.flows.runner import PIPELINE_TASK
from faceid.models import FaceTemplate, Person, StoredImage, VerificationAttempt
from faceid.task_results import run_task
from tenants import services as tenant_services
from tests.api.helpers import create_person, enroll, post_multipart
from tests.portraits import ALICE, BOB, CAROL, STRANGER

# Every test here runs the pipeline over real photos in the worker (the tier markers come from
# the fixtures, see tests/conftest.py).
pytestmark = [pytest.mark.django_db, pytest.mark.slow]


def files(*images: bytes) -> list:
    return [("image", (f"frame{i}.jpg", data, "image/jpeg")) for i, data in enumerate(images)]


def verify(client, person, *images: bytes, query: str = ""):
    return post_multipart(client, f"/api/v1/verify/{query}", files(*images), {"person": str(person)})


def identify(client, *images: bytes, top_k: int | None = None):
    fields = {"top_k": str(top_k)} if top_k is not None else {}
    return post_multipart(client, "/api/v1/identify/", files(*images), fields)


class Audited:
    """Asserts that a call wrote exactly one audit row, and returns it."""

    def __init__(self, organization):
        self.organization = organization

    def __call__(self, response, decision: str) -> VerificationAttempt:
        body = response.json()
        # Decisions only: event rows (policy changes, enrollments: faceid.events) are not calls.
        rows = VerificationAttempt.objects.filter(organization=self.organization, pk__gt=self.last).exclude(
            mode="event"
        )
        assert rows.count() == 1, [(r.decision, r.reason) for r in rows]
        row = rows.get()
        assert body["attempt_id"] == row.pk
        assert row.decision == decision, (row.decision, row.reason)
        self.last = row.pk
        return row

    @property
    def last(self) -> int:
        return getattr(self, "_last", 0)

    @last.setter
    def last(self, value: int) -> None:
        self._last = value


@pytest.fixture
def audited(tenant):
    return Audited(tenant.organization)


@pytest.fixture(scope="module")
def enrollment_output(pipeline_worker):
    """The worker's answer to an enrollment request, computed once per module and request.

    Every test of this module enrolls the same photos into a fresh organization: the pipeline's
    output for them does not change, so the real worker computes it once and the enroll flow then
    stores it in each test's own transaction (the tests stay independent of one another's order).
    """
    outputs: dict[str, PipelineOutput] = {}

    def output(request: PipelineRequest) -> PipelineOutput:
        key = json.dumps(request.to_json(), sort_keys=True)
        if key not in outputs:
            outputs[key] = PipelineOutput.from_json(run_task(PIPELINE_TASK, request.to_json(), timeout=120))
        return outputs[key]

    return output


@pytest.fixture
def people(tenant, enrollment_output, photo):
    """alice (2 photos), bob (1), carol (1): persons created through the API, enrolled by the flow."""
    client = tenant.client("enroll", "verify", "identify", "audit:read")
    caller = Caller(organization=tenant.organization)
    ids = {}
    for external_id, (_, photos), count in (("alice", ALICE, 2), ("bob", BOB, 1), ("carol", CAROL, 1)):
        ids[external_id] = create_person(client, external_id, external_id.title())
        images = [ImageInput(photo(name), name=name) for name in photos[:count]]
        prepared = prepare_enroll(caller, person=Person.objects.get(pk=ids[external_id]), images=images)
        assert finish_enroll(prepared.call, enrollment_output(prepared.request)).stored == count
    client.ids = ids
    return client


def masked_version(jpeg: bytes) -> bytes:
    """The photo with a synthetic mask drawn on the face (the product's own renderer)."""
    import numpy as np

    from inference.decode import decode_image
    from inference.detect import get_face_detector
    from inference.mask.render import render_synthetic_mask

    rgb = decode_image(jpeg)
    face = get_face_detector().detect(rgb)[0]
    masked = render_synthetic_mask(rgb, face, rng=np.random.default_rng(7))
    buffer = io.BytesIO()
    Image.fromarray(masked).save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def png_bomb(width: int = 60_000, height: int = 60_000) -> bytes:
    """A tiny PNG whose header declares width x height pixels."""
    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    ihdr = data[12:29]  # b"IHDR" + 13 bytes
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


# --- enroll ---------------------------------------------------------------------------------------


def test_enroll_stores_full_and_mask_aware_templates(tenant, pipeline_worker, photo):
    client = tenant.client("enroll")
    person_id = create_person(client, "alice")
    response = enroll(client, person_id, photo("img1.jpg"), photo("img2.jpg"))
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["stored"] == 2 and body["person"] == {"id": person_id, "external_id": "alice"}
    for entry in body["photos"]:
        assert entry["stored"] is True and entry["reason"] is None and entry["masked"] is False
        assert entry["quality"]["score"] > 0
        assert {t["variant"] for t in entry["templates"]} == {"full", "masked_synthetic", "masked_cutout"}
    templates = client.get(f"/api/v1/persons/{person_id}/faces/").json()
    assert len(templates) == 6 and {t["model_name"] for t in templates} == {"dlib_resnet_v1"}
    assert client.get(f"/api/v1/persons/{person_id}/").json()["templates"] == 6
    # the same photo again replaces its templates instead of adding weight
    assert enroll(client, person_id, photo("img1.jpg")).status_code == 201
    assert FaceTemplate.objects.filter(person_id=person_id).count() == 6


def test_enroll_reports_each_photo(tenant, pipeline_worker, photo, no_face_jpeg):
    client = tenant.client("enroll")
    person_id = create_person(client, "alice")
    response = enroll(client, person_id, photo("img1.jpg"), no_face_jpeg)
    assert response.status_code == 201
    good, bad = response.json()["photos"]
    assert good["stored"] and not bad["stored"]
    assert bad["reason"] == "no_face" and bad["detail"] == "No face found." and bad["templates"] == []
    only_bad = enroll(client, person_id, no_face_jpeg)
    assert only_bad.status_code == 422
    assert only_bad.json()["reason"] == "no_face" and only_bad.json()["stored"] == 0


def test_enroll_small_face_is_refused(tenant, pipeline_worker, photo):
    client = tenant.client("enroll")
    person_id = create_person(client, "alice")
    small = Image.open(io.BytesIO(photo("img10.jpg")))
    canvas = Image.new("RGB", (1600, 1200), (90, 110, 90))
    canvas.paste(small.resize((small.width // 8, small.height // 8)), (700, 500))
    buffer = io.BytesIO()
    canvas.save(buffer, format="JPEG", quality=95)
    response = enroll(client, person_id, buffer.getvalue())
    assert response.status_code == 422, response.content
    assert response.json()["photos"][0]["reason"] in {"face_too_small", "no_face"}


def test_enroll_accepts_base64_json(tenant, pipeline_worker, photo):
    client = tenant.client("enroll")
    person_id = create_person(client, "alice")
    payload = {"images": ["data:image/jpeg;base64," + base64.b64encode(photo("img1.jpg")).decode()]}
    response = client.post(f"/api/v1/persons/{person_id}/faces/", payload, format="json")
    assert response.status_code == 201, response.content
    assert response.json()["photos"][0]["stored"]


def test_masked_enrollment_photo_is_refused_by_policy(tenant, pipeline_worker, photo):
    client = tenant.client("enroll")
    person_id = create_person(client, "alice")
    masked = masked_version(photo("img1.jpg"))
    response = enroll(client, person_id, masked)
    assert response.status_code == 422, response.content
    entry = response.json()["photos"][0]
    assert entry["reason"] == "masked" and entry["detail"] == "Mask on: please enroll without a mask."
    assert entry["mask_probability"] > tenant.policy.mask_threshold
    tenant_services.update_policy(organization=tenant.organization, require_unmasked_enrollment=False)
    allowed = enroll(client, person_id, masked)
    assert allowed.status_code == 201
    assert {t["variant"] for t in allowed.json()["photos"][0]["templates"]} == {
        "masked_synthetic",
        "masked_cutout",
    }


@pytest.mark.parametrize(
    ("make", "image_reason"),
    [
        # A GIF header: a format uploads may not use (issue 10), refused before any parser runs.
        (lambda photo: b"GIF89a but not really" * 20, "unsupported_format"),
        (lambda photo: b"%PDF-1.4\n" + b"0" * 500, "not_an_image"),
        (lambda photo: photo("img1.jpg")[:4000], "truncated"),
        (lambda photo: png_bomb(), "too_many_pixels"),
    ],
)
def test_enroll_refuses_non_images_with_400(tenant, pipeline_worker, photo, make, image_reason):
    client = tenant.client("enroll")
    person_id = create_person(client, "alice")
    response = enroll(client, person_id, photo("img1.jpg"), make(photo))
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["reason"] == "bad_image" and body["image_reason"] == image_reason
    assert body["images"][0]["index"] == 1
    assert not FaceTemplate.objects.filter(person_id=person_id).exists()  # nothing half-stored


def test_enroll_inactive_person_is_409(tenant, pipeline_worker, photo):
    client = tenant.client("enroll")
    person_id = create_person(client, "alice")
    client.patch(f"/api/v1/persons/{person_id}/", {"active": False}, format="json")
    response = enroll(client, person_id, photo("img1.jpg"))
    assert response.status_code == 409 and response.json()["reason"] == "person_inactive"


# --- verify ---------------------------------------------------------------------------------------


def test_verify_same_person_is_accepted(tenant, people, photo, audited):
    response = verify(people, "alice", photo(ALICE[1][2]))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["match"] is True and body["decision"] == "accept"
    assert body["similarity"] >= body["threshold"] == tenant.policy.threshold_unmasked
    assert body["masked"] is False and 0 <= body["mask_probability"] < tenant.policy.mask_threshold
    assert body["latency_ms"] > 0 and body["person"] == {"id": people.ids["alice"], "external_id": "alice"}
    row = audited(response, "accept")
    assert (
        row.similarity == pytest.approx(body["similarity"], abs=1e-5) and row.threshold == body["threshold"]
    )
    assert row.claimed_person_id == row.matched_person_id == people.ids["alice"]
    assert row.api_key_id is not None and row.model_name == "dlib_resnet_v1" and row.model_version
    assert row.masked is False and row.latency_ms == body["latency_ms"]


def test_verify_different_person_is_rejected(tenant, people, photo, audited):
    response = verify(people, "alice", photo(BOB[1][1]))
    assert response.status_code == 200
    body = response.json()
    # By default a reject does not say how close the probe came; the audit row keeps the score.
    assert body["match"] is False and body["decision"] == "reject" and body["similarity"] is None
    row = audited(response, "reject")
    assert row.matched_person_id is None and row.similarity < row.threshold == body["threshold"]


def test_a_reject_reveals_its_similarity_only_where_the_policy_says_so(tenant, people, photo, audited):
    tenant_services.update_policy(tenant.organization, reveal_scores_on_reject=True)
    response = verify(people, "alice", photo(BOB[1][1]))
    body = response.json()
    row = audited(response, "reject")
    assert (
        body["similarity"] == pytest.approx(row.similarity, abs=1e-5)
        and body["similarity"] < body["threshold"]
    )


def test_verify_by_id_as_well_as_external_id(people, photo, audited):
    response = verify(people, people.ids["carol"], photo(CAROL[1][1]))
    assert response.status_code == 200 and response.json()["person"]["external_id"] == "carol"
    audited(response, response.json()["decision"])


def test_masked_probe_uses_the_masked_threshold_and_templates(tenant, people, photo, audited):
    masked_probe = masked_version(photo(ALICE[1][2]))
    genuine = verify(people, "alice", masked_probe)
    assert genuine.status_code == 200, genuine.content
    body = genuine.json()
    assert body["masked"] is True and body["mask_probability"] > tenant.policy.mask_threshold
    assert body["threshold"] == tenant.policy.threshold_masked != tenant.policy.threshold_unmasked
    row = audited(genuine, "accept" if body["match"] else "reject")
    assert row.masked is True and row.threshold == tenant.policy.threshold_masked
    assert row.mask_probability == pytest.approx(body["mask_probability"])
    impostor = verify(people, "bob", masked_probe)
    assert (
        impostor.json()["masked"] is True and impostor.json()["threshold"] == tenant.policy.threshold_masked
    )
    impostor_row = audited(impostor, "accept" if impostor.json()["match"] else "reject")
    # the mask-aware templates still tell the claimed person from another one behind the mask
    assert body["similarity"] > impostor_row.similarity
    assert body["match"] is True


def test_a_burst_of_frames_uses_the_frames_with_a_face(people, photo, no_face_jpeg, audited):
    response = verify(people, "alice", no_face_jpeg, photo(ALICE[1][2]))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["match"] is True and body["frame"] == 1
    assert body["frames"][0]["refusal"] == "no_face" and body["frames"][1]["refusal"] is None
    audited(response, "accept")


def test_verify_refusals_are_answered_and_audited(tenant, other_tenant, people, photo, no_face_jpeg, audited):
    # no face
    response = verify(people, "alice", no_face_jpeg)
    assert response.status_code == 422 and response.json()["reason"] == "no_face"
    audited(response, "no_face")
    # not an image / truncated
    response = verify(people, "alice", b"definitely not a picture" * 10)
    assert response.status_code == 400 and response.json()["image_reason"] == "not_an_image"
    audited(response, "bad_image")
    response = verify(people, "alice", photo("img1.jpg")[:3000])
    assert response.status_code == 400 and response.json()["image_reason"] == "truncated"
    audited(response, "bad_image")
    # nobody of that name
    response = verify(people, "nobody", photo("img1.jpg"))
    assert response.status_code == 404 and response.json()["reason"] == "unknown_person"
    assert audited(response, "unknown_person").claimed_external_id == "nobody"
    # another organization's person: as unknown, audited in the CALLER's organization only
    theirs = services.create_person(other_tenant.organization, external_id="theirs")
    for ref in ("theirs", theirs.pk):
        response = verify(people, ref, photo("img1.jpg"))
        assert response.status_code == 404
        audited(response, "unknown_person")
    theirs_rows = VerificationAttempt.objects.filter(organization=other_tenant.organization)
    assert not theirs_rows.exclude(mode="event").exists()  # its own set-up events only
    # no templates
    create_person(people, "newcomer")
    response = verify(people, "newcomer", photo("img1.jpg"))
    assert response.status_code == 409 and response.json()["reason"] == "no_templates"
    audited(response, "no_templates")
    # inactive and erased persons
    people.patch(f"/api/v1/persons/{people.ids['bob']}/", {"active": False}, format="json")
    response = verify(people, "bob", photo(BOB[1][1]))
    assert response.status_code == 404
    audited(response, "inactive_person")
    assert people.delete(f"/api/v1/persons/{people.ids['carol']}/").status_code == 204
    response = verify(people, "carol", photo(CAROL[1][1]))
    assert response.status_code == 404
    audited(response, "inactive_person")
    # no image at all
    response = people.post("/api/v1/verify/", {"person": "alice"}, format="multipart")
    assert response.status_code == 400 and response.json()["reason"] == "no_image"
    audited(response, "bad_image")


def test_lockout_after_failures_is_423_and_audited(tenant, people, photo, audited):
    tenant_services.update_policy(
        organization=tenant.organization, lockout_failures=2, lockout_window_seconds=600, lockout_seconds=600
    )
    first = verify(people, "alice", photo(BOB[1][1]))
    assert first.json()["match"] is False and "locked_out" not in first.json()
    audited(first, "reject")
    second = verify(people, "alice", photo(BOB[1][0]))
    assert second.json()["match"] is False and second.json()["locked_out"] is True
    assert "lockout triggered" in audited(second, "reject").reason
    # now even the genuine person is refused until the lockout ends, and each refusal is audited
    for _ in range(2):
        locked = verify(people, "alice", photo(ALICE[1][2]))
        assert locked.status_code == 423, locked.content
        body = locked.json()
        assert body["reason"] == "locked_out" and body["retry_after"] > 500 and body["locked_until"]
        assert int(locked["Retry-After"]) == body["retry_after"]
        assert "locked out until" in audited(locked, "locked_out").reason
    # other persons are not affected
    assert verify(people, "carol", photo(CAROL[1][1])).status_code == 200


def test_erased_person_loses_templates_but_keeps_audit_rows(tenant, people, photo, audited):
    audited(verify(people, "alice", photo(ALICE[1][2])), "accept")
    assert people.delete(f"/api/v1/persons/{people.ids['alice']}/").status_code == 204
    assert not FaceTemplate.objects.filter(person_id=people.ids["alice"]).exists()
    kept = VerificationAttempt.objects.filter(claimed_person_id=people.ids["alice"])
    assert kept.filter(mode="verify").count() == 1 and kept.filter(action="person_erase").exists()
    listing = people.get("/api/v1/attempts/?person=alice").json()
    assert listing["count"] == 1 and listing["results"][0]["claimed_external_id"] == "alice"
    # the erased person is no longer found by identify
    found = identify(people, photo(ALICE[1][2])).json()["matches"]
    assert people.ids["alice"] not in [m["person"] for m in found]


def test_kept_images_follow_the_policy_and_erasure(tenant, people, photo, settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path)
    assert not StoredImage.objects.exists()  # not kept by default
    tenant_services.update_policy(organization=tenant.organization, keep_images=True, image_retention_days=3)
    assert enroll(people, people.ids["alice"], photo(ALICE[1][3])).status_code == 201
    assert verify(people, "alice", photo(ALICE[1][2])).status_code == 200
    kept = StoredImage.objects.filter(person_id=people.ids["alice"])
    assert sorted(kept.values_list("purpose", flat=True)) == ["enrollment", "probe"]
    people.delete(f"/api/v1/persons/{people.ids['alice']}/")
    assert not StoredImage.objects.filter(person_id=people.ids["alice"]).exists()


# --- identify -------------------------------------------------------------------------------------


def test_identify_finds_the_person(people, photo, audited):
    response = identify(people, photo(ALICE[1][2]))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["matches"][0]["person"] == people.ids["alice"]
    assert body["matches"][0]["external_id"] == "alice"
    assert all(m["similarity"] >= body["threshold"] for m in body["matches"])
    assert body["decision"] == "accept" and body["masked"] is False
    row = audited(response, "accept")
    assert row.matched_person_id == people.ids["alice"] and row.mode == "identify"


def test_identify_unknown_face_is_no_match(people, photo, audited):
    for name in STRANGER[1]:
        response = identify(people, photo(name))
        assert response.status_code == 200
        body = response.json()
        assert body["matches"] == [] and body["decision"] == "no_match"
        row = audited(response, "no_match")
        assert row.matched_person_id is None and row.similarity < row.threshold


def test_identify_top_k_and_refusals(people, photo, no_face_jpeg, audited):
    response = identify(people, photo(ALICE[1][2]), top_k=1)
    assert len(response.json()["matches"]) == 1
    audited(response, "accept")
    response = identify(people, no_face_jpeg)
    assert response.status_code == 422 and response.json()["reason"] == "no_face"
    audited(response, "no_face")
    response = identify(people, b"garbage" * 50)
    assert response.status_code == 400
    audited(response, "bad_image")
    response = identify(people, photo(ALICE[1][2]), top_k=0)
    assert response.status_code == 400 and response.json()["reason"] == "invalid"
    audited(response, "bad_image")


def test_identify_never_returns_another_organizations_person(other_tenant, people, photo):
    client = other_tenant.client("identify", "enroll")
    response = identify(client, photo(ALICE[1][2]))
    assert response.status_code == 200 and response.json()["matches"] == []


# --- bounded wait and async jobs ------------------------------------------------------------------


def test_pipeline_time_out_is_504_and_audited(people, photo, settings, audited):
    settings.PIPELINE_WAIT_SECONDS = 0.001
    response = verify(people, "alice", photo(ALICE[1][2]))
    assert response.status_code == 504, response.content
    assert response.json()["reason"] == "pipeline_timeout"
    audited(response, "timeout")


@pytest.mark.django_db(transaction=True)
def test_async_verify_returns_a_job_to_poll(tenant, pipeline_worker, photo):
    # transactional: the worker's finishing task reads the person and writes the audit row itself
    client = tenant.client("enroll", "verify", "identify")
    person_id = create_person(client, "alice")
    assert enroll(client, person_id, photo("img1.jpg")).status_code == 201
    response = verify(client, "alice", photo(ALICE[1][2]), query="?async=true")
    assert response.status_code == 202, response.content
    job = response.json()
    assert job["status"] in {"pending", "running"} and response["Location"] == job["url"]
    assert job["url"].endswith(f"/api/v1/jobs/{job['id']}/")
    deadline = time.monotonic() + 90
    while True:
        polled = client.get(f"/api/v1/jobs/{job['id']}/").json()
        if polled["status"] in {"done", "failed"} or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert polled["status"] == "done", polled
    assert polled["http_status"] == 200 and polled["result"]["match"] is True
    # consumed: the answer (and the pipeline's output) is deleted once handed over
    assert client.get(f"/api/v1/jobs/{job['id']}/").status_code == 404
    attempts = VerificationAttempt.objects.filter(organization=tenant.organization, mode="verify")
    assert attempts.count() == 1 and attempts.get().pk == polled["result"]["attempt_id"]
    # the worker chained its row with the same key as the web process (events included)
    assert verify_chain(tenant.organization).ok
    # another organization cannot see the job
    stranger = tenant_services.create_organization(slug="stranger", name="Stranger")
    _, key = tenant_services.create_api_key(organization=stranger, name="k", scopes=["verify"])
    from rest_framework.test import APIClient

    other = APIClient()
    other.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert other.get(f"/api/v1/jobs/{job['id']}/").status_code == 404


@pytest.mark.django_db(transaction=True)
def test_async_enroll_and_a_failed_job(tenant, pipeline_worker, photo):
    client = tenant.client("enroll", "identify")
    person_id = create_person(client, "alice")
    job = post_multipart(client, f"/api/v1/persons/{person_id}/faces/?async=1", files(photo("img1.jpg")))
    assert job.status_code == 202, job.content
    bad = post_multipart(client, "/api/v1/identify/?async=true", files(b"not an image" * 30))
    assert bad.status_code == 202
    results = {}
    deadline = time.monotonic() + 90
    while len(results) < 2 and time.monotonic() < deadline:
        for name, answer in (("enroll", job), ("identify", bad)):
            if name in results:
                continue  # a finished job is handed over once, then deleted
            polled = client.get(f"/api/v1/jobs/{answer.json()['id']}/").json()
            if polled["status"] in {"done", "failed"}:
                results[name] = polled
        time.sleep(0.3)
    assert results["enroll"]["status"] == "done" and results["enroll"]["http_status"] == 201
    assert FaceTemplate.objects.filter(person_id=person_id).count() == 3
    assert results["identify"]["status"] == "failed" and results["identify"]["http_status"] == 400
    assert results["identify"]["result"]["reason"] == "bad_image"
    assert VerificationAttempt.objects.exclude(mode="event").get().decision == "bad_image"
    assert Person.objects.count() == 1


# --- the console's pipeline pages ----------------------------------------------------------------


def test_console_upload_enrollment_and_webcam_frames(tenant, pipeline_worker, photo, no_face_jpeg):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.test import Client

    from tenants.models import Role

    tenant.user("op@example.com", Role.OPERATOR)
    client = Client()
    client.login(username="op@example.com", password="Str0ng-pass-phrase!")
    person = services.create_person(tenant.organization, external_id="alice")
    page = client.post(
        f"/console/persons/{person.pk}/enroll/",
        {
            "image": [
                SimpleUploadedFile("a.jpg", photo(ALICE[1][0]), "image/jpeg"),
                SimpleUploadedFile("wall.jpg", no_face_jpeg, "image/jpeg"),
            ]
        },
    )
    html = page.content.decode()
    assert page.status_code == 200 and "1 photo(s) enrolled" in html and "No face found." in html
    assert FaceTemplate.objects.filter(person=person).count() == 3
    # the webcam page posts frames to a JSON endpoint: per-frame feedback
    answer = client.post(
        f"/console/persons/{person.pk}/enroll/frames/",
        {
            "image": [
                SimpleUploadedFile("f0.jpg", no_face_jpeg, "image/jpeg"),
                SimpleUploadedFile("f1.jpg", photo(ALICE[1][1]), "image/jpeg"),
            ]
        },
    )
    assert answer.status_code == 201
    frames = answer.json()["photos"]
    assert (
        frames[0]["reason"] == "no_face" and frames[1]["stored"] is True and frames[1]["quality"]["score"] > 0
    )
    masked = client.post(
        f"/console/persons/{person.pk}/enroll/frames/",
        {"image": [SimpleUploadedFile("f.jpg", masked_version(photo(ALICE[1][3])), "image/jpeg")]},
    )
    assert (
        masked.status_code == 422
        and masked.json()["photos"][0]["detail"] == "Mask on: please enroll without a mask."
    )
    verified = client.post(
        "/console/verify/frames/",
        {"person": "alice", "image": [SimpleUploadedFile("v.jpg", photo(ALICE[1][2]), "image/jpeg")]},
    )
    assert verified.status_code == 200 and verified.json()["match"] is True
    attempt = VerificationAttempt.objects.get(pk=verified.json()["attempt_id"])
    assert attempt.user.get_username() == "op@example.com" and attempt.api_key is None
