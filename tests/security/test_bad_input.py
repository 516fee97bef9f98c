"""Bad-input corpus: hostile or broken requests each get a 4xx with a reason (or, for the odd but
valid portraits, the right answer), never a 5xx, and leave the database as it was except the audit
rows that must be there (one per verify call; the lockout's own ledger may note the attempt).

The files are generated here (PIL, numpy) from the real portraits of ../shared/data/portraits where
a face is needed. Image cases go through the real worker (slow); the rest are refused before it.
"""

from __future__ import annotations

import base64
import io
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from django.apps import apps
from PIL import Image
from rest_framework.test import APIClient

from faceid import services
from faceid.models import FaceTemplate, Person, VerificationAttempt
from tests.api.helpers import Tenant, make_tenant, post_multipart, store_random_template
from tests.portraits import ALICE, BOB, CAROL, STRANGER

pytestmark = pytest.mark.django_db

AUDIT_MODELS = {VerificationAttempt._meta.label}
# The lockout's ledger records attempts as they are reserved and decided: bookkeeping of the same
# attempts the audit rows record, not data the request created.
LEDGER_MODELS = {"faceid.LockoutEntry"}


# --- generated files --------------------------------------------------------------------------


def portrait(portraits_dir: Path, name: str, max_side: int = 640) -> Image.Image:
    image = Image.open(portraits_dir / name).convert("RGB")
    image.thumbnail((max_side, max_side))
    return image


def save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def png_declaring(width: int, height: int) -> bytes:
    """A valid PNG header declaring width x height pixels, with one tiny compressed row."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def multi_frame(fmt: str, frames: list[Image.Image]) -> bytes:
    return save(frames[0], fmt, save_all=True, append_images=frames[1:])


def six_faces(portraits_dir: Path) -> bytes:
    names = [ALICE[1][0], BOB[1][0], CAROL[1][0], STRANGER[1][0], BOB[1][1], CAROL[1][1]]
    tiles = [portrait(portraits_dir, name, 320).resize((320, 400)) for name in names]
    canvas = Image.new("RGB", (960, 800), (200, 200, 200))
    for index, tile in enumerate(tiles):
        canvas.paste(tile, ((index % 3) * 320, (index // 3) * 400))
    return save(canvas, "JPEG", quality=92)


def tiny_face(portraits_dir: Path) -> bytes:
    """A portrait shrunk so the face is about 20 px wide, on a 640 x 480 wall."""
    small = portrait(portraits_dir, ALICE[1][1], 800)
    small = small.resize((max(1, small.width * 40 // small.height), 40))
    canvas = Image.new("RGB", (640, 480), (90, 110, 90))
    canvas.paste(small, (300, 220))
    return save(canvas, "JPEG", quality=95)


def no_face() -> bytes:
    y, x = np.mgrid[0:480, 0:640]
    rgb = np.stack([(x * 255 / 640), (y * 255 / 480), np.full_like(x, 120)], axis=-1).astype("uint8")
    return save(Image.fromarray(rgb), "JPEG")


# Each entry: name -> (builder of the image bytes, expected status, accepted reasons). The pipeline
# decides these in the worker.
def image_corpus(portraits_dir: Path) -> dict[str, tuple[Callable[[], bytes], int, set[str]]]:
    face = lambda: portrait(portraits_dir, ALICE[1][1])  # noqa: E731
    jpeg = lambda: save(face(), "JPEG", quality=90)  # noqa: E731
    bad = {"bad_image"}
    return {
        "zero_bytes": (lambda: b"", 400, bad | {"no_image"}),
        "text_as_image": (lambda: b"Hello, I am certainly a JPEG.\n" * 20, 400, bad),
        "truncated_jpeg": (lambda: jpeg()[: len(jpeg()) // 3], 400, bad),
        "truncated_png": (lambda: save(face(), "PNG")[:4000], 400, bad),
        "png_50000x50000": (lambda: png_declaring(50_000, 50_000), 400, bad),
        "multi_frame_gif": (lambda: multi_frame("GIF", [face(), face().rotate(10)]), 400, bad),
        "multi_frame_tiff": (lambda: multi_frame("TIFF", [face(), face().rotate(10)]), 400, bad),
        "no_face": (no_face, 422, {"no_face"}),
        "six_faces": (lambda: six_faces(portraits_dir), 422, {"several_faces"}),
        "face_20px": (lambda: tiny_face(portraits_dir), 422, {"face_too_small", "no_face"}),
    }


IMAGE_CASES = [
    "zero_bytes",
    "text_as_image",
    "truncated_jpeg",
    "truncated_png",
    "png_50000x50000",
    "multi_frame_gif",
    "multi_frame_tiff",
    "no_face",
    "face_20px",
]
# Six faces: a verify probe is compared by its most prominent face (a kiosk photo may show people
# behind the subject), so "several faces" is an enrollment refusal (strict), tested below.


# --- fixtures and checks --------------------------------------------------------------------------


@pytest.fixture
def org(db, generous_rate_limits) -> Tenant:
    return make_tenant("corpus")


@pytest.fixture
def person(org: Tenant) -> Person:
    """A person with a stored template (a random vector: the refusals come before any comparison)."""
    person = services.create_person(org.organization, external_id="P-1", display_name="Pat")
    store_random_template(org.organization, person, seed=1, source_sha256="b" * 64)
    return person


@pytest.fixture
def client(org: Tenant) -> APIClient:
    return org.client("enroll", "verify", "identify", "audit:read")


def row_counts() -> dict[str, int]:
    return {m._meta.label: m.objects.count() for m in apps.get_models() if m._meta.managed}


def assert_only_audit_rows_added(before: dict[str, int], *, audit_rows: int) -> None:
    after = row_counts()
    changed = {k: (before[k], after[k]) for k in after if before.get(k) != after[k]}
    for label in LEDGER_MODELS:
        changed.pop(label, None)
    audit = {label: changed.pop(label) for label in list(changed) if label in AUDIT_MODELS}
    assert not changed, f"rows other than audit rows changed: {changed}"
    added = sum(new - old for old, new in audit.values())
    assert added == audit_rows, f"expected {audit_rows} new audit row(s), got {added}"


def assert_refused(response, status: int | set[int], reasons: set[str] | None = None) -> dict:
    statuses = {status} if isinstance(status, int) else status
    assert response.status_code in statuses, (response.status_code, response.content[:500])
    body = response.json()
    assert body.get("reason") and body.get("detail"), body
    if reasons is not None:
        assert body["reason"] in reasons or body.get("image_reason") in reasons, body
    return body


# --- images through the worker ----------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("case", IMAGE_CASES)
def test_hostile_image_is_refused_with_a_reason(
    case, client, person, pipeline_worker, portraits_dir, settings
):
    settings.PIPELINE_WAIT_SECONDS = 120
    build, status, reasons = image_corpus(portraits_dir)[case]
    data = build()
    before = row_counts()
    response = post_multipart(
        client, "/api/v1/verify/", [("image", ("probe.bin", data, "image/jpeg"))], {"person": "P-1"}
    )
    body = assert_refused(response, status)
    frames = body.get("frames") or []
    seen = {body["reason"], body.get("image_reason")} | {
        f.get("refusal") for f in frames if isinstance(f, dict)
    }
    assert seen & reasons, (case, body)
    assert_only_audit_rows_added(before, audit_rows=1)


@pytest.mark.slow
def test_enrolling_refused_photos_stores_nothing(client, person, pipeline_worker, portraits_dir, settings):
    settings.PIPELINE_WAIT_SECONDS = 120
    corpus = image_corpus(portraits_dir)
    before = row_counts()
    files = [(f"{case}.jpg", corpus[case][0](), "image/jpeg") for case in ("no_face", "six_faces")]
    response = post_multipart(client, f"/api/v1/persons/{person.pk}/faces/", [("image", f) for f in files])
    assert response.status_code == 422, response.content
    assert [photo["reason"] for photo in response.json()["photos"]] == ["no_face", "several_faces"]
    assert FaceTemplate.objects.filter(person=person).count() == 1
    after = row_counts()
    assert after[FaceTemplate._meta.label] == before[FaceTemplate._meta.label]
    assert after["faceid.StoredImage"] == before["faceid.StoredImage"]


@pytest.mark.slow
def test_odd_but_valid_portraits_of_an_enrolled_person_verify(
    client, org, pipeline_worker, portraits_dir, settings
):
    """EXIF-rotated, CMYK, 16-bit and grayscale photos of an enrolled person: the right answer."""
    settings.PIPELINE_WAIT_SECONDS = 120
    person = client.post("/api/v1/persons/", {"external_id": "alice"}, format="json").json()["id"]
    enrolled = post_multipart(
        client,
        f"/api/v1/persons/{person}/faces/",
        [
            (
                "image",
                ("a.jpg", save(portrait(portraits_dir, ALICE[1][0], 800), "JPEG", quality=92), "image/jpeg"),
            )
        ],
    )
    assert enrolled.status_code == 201, enrolled.content
    probe = portrait(portraits_dir, ALICE[1][1], 800)
    # Stored on its side with an EXIF orientation (6: rotate 90 degrees clockwise to display).
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = save(probe.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=92, exif=exif.tobytes())
    gray16 = Image.fromarray(np.asarray(probe.convert("L"), dtype=np.uint16) * 257)
    assert gray16.mode.startswith("I;16")
    odd = {
        "exif_rotated": rotated,
        "cmyk": save(probe.convert("CMYK"), "JPEG", quality=92),
        "sixteen_bit": save(gray16, "PNG"),
        "grayscale": save(probe.convert("L"), "JPEG", quality=92),
    }
    for name, data in odd.items():
        before = row_counts()
        response = post_multipart(
            client, "/api/v1/verify/", [("image", (f"{name}.img", data, "image/jpeg"))], {"person": "alice"}
        )
        assert response.status_code == 200, (name, response.content[:500])
        assert response.json()["match"] is True, (name, response.json())
        assert_only_audit_rows_added(before, audit_rows=1)


# --- refused before the worker (fast) --------------------------------------------------------------


def test_an_upload_of_40_mb_is_413(client, person):
    before = row_counts()
    data = b"\xff\xd8\xff\xe0" + bytes(40 * 1024 * 1024)
    response = post_multipart(
        client, "/api/v1/verify/", [("image", ("big.jpg", data, "image/jpeg"))], {"person": "P-1"}
    )
    assert_refused(response, 413, {"too_large"})
    assert_only_audit_rows_added(before, audit_rows=1)


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/xml", "image/jpeg", "application/x-www-form-urlencoded; charset=utf-7"],
)
def test_a_wrong_content_type_is_refused(client, person, content_type):
    before = row_counts()
    response = client.generic(
        "POST", "/api/v1/verify/", b"\xff\xd8\xff" + b"x" * 100, content_type=content_type
    )
    assert_refused(response, {400, 415})
    assert_only_audit_rows_added(before, audit_rows=1)


@pytest.mark.parametrize(
    "image", ["@@@ not base64 @@@", "data:image/png;base64,!!!!", 12345, {"a": 1}, [None]]
)
def test_bad_base64_is_400_bad_image(client, person, image):
    before = row_counts()
    response = client.post("/api/v1/verify/", {"person": "P-1", "image": image}, format="json")
    assert_refused(response, 400, {"bad_image"})
    assert_only_audit_rows_added(before, audit_rows=1)


def test_deeply_nested_json_is_400(client, person):
    before = row_counts()
    deep = "[" * 100_000 + "]" * 100_000
    response = client.generic(
        "POST", "/api/v1/verify/", '{"person": "P-1", "image": ' + deep + "}", content_type="application/json"
    )
    assert_refused(response, 400)
    assert_only_audit_rows_added(before, audit_rows=1)
    response = client.generic(
        "POST", "/api/v1/persons/", '{"external_id": ' + deep + "}", content_type="application/json"
    )
    assert_refused(response, 400)


def test_unknown_fields_are_ignored_never_assigned(client, org, person):
    """Mass assignment: fields a client may not set (organization, id, erased_at, templates) are
    ignored; the person lands in the caller's organization with a fresh id."""
    other = make_tenant("elsewhere")
    before = row_counts()
    response = client.post(
        "/api/v1/persons/",
        {
            "external_id": "X-1",
            "organization": other.organization.pk,
            "id": person.pk,
            "erased_at": "2020-01-01T00:00:00Z",
            "templates": 99,
            "bogus": {"deep": [1, 2]},
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    created = Person.objects.get(pk=response.json()["id"])
    assert (
        created.pk != person.pk
        and created.organization_id == org.organization.pk
        and created.erased_at is None
    )
    assert response.json()["templates"] == 0
    patched = client.patch(
        f"/api/v1/persons/{person.pk}/", {"organization": other.organization.pk, "unknown": 1}, format="json"
    )
    assert (
        patched.status_code == 200 and Person.objects.get(pk=person.pk).organization_id == org.organization.pk
    )
    after = row_counts()
    assert after["faceid.Person"] == before["faceid.Person"] + 1


@pytest.mark.parametrize(
    "method, url, payload, statuses",
    [
        ("get", "/api/v1/persons/abc/", None, {404}),
        ("get", "/api/v1/persons/1e3/", None, {404}),
        ("get", "/api/v1/persons/-1/", None, {404}),
        ("get", "/api/v1/persons/99999999999999999999999/", None, {404}),
        ("delete", "/api/v1/persons/abc/", None, {404}),
        ("post", "/api/v1/persons/abc/faces/", None, {404}),
        ("get", "/api/v1/jobs/not-a-uuid/", None, {404}),
        ("get", "/api/v1/jobs/%00/", None, {404}),
        ("get", "/api/v1/persons/?page=abc", None, {404}),
        ("get", "/api/v1/persons/?page=99999", None, {404}),
        ("get", "/api/v1/persons/?active=maybe", None, {400}),
        ("get", "/api/v1/attempts/?since=yesterday", None, {400}),
        ("get", "/api/v1/attempts/?masked=perhaps", None, {400}),
        ("post", "/api/v1/verify/", {"person": {"id": 1}, "image": "aGk="}, {400, 404}),
        ("post", "/api/v1/verify/", {"person": ["P-1"], "image": "aGk="}, {400, 404}),
        ("post", "/api/v1/identify/", {"top_k": "many", "image": "aGk="}, {400}),
        ("post", "/api/v1/identify/", {"top_k": 10**30, "image": "aGk="}, {400}),
        ("post", "/api/v1/persons/", {"external_id": ["a", "b"]}, {400}),
        ("post", "/api/v1/persons/", {"external_id": "x" * 10_000}, {400}),
        ("post", "/api/v1/persons/", ["not", "an", "object"], {400}),
        ("patch", "/api/v1/persons/{person}/", {"active": "maybe"}, {400}),
        ("patch", "/api/v1/persons/{person}/", {"external_id": None}, {400}),
    ],
)
def test_ids_and_fields_of_the_wrong_type_are_4xx_json(client, person, method, url, payload, statuses):
    before = row_counts()
    url = url.format(person=person.pk)
    kwargs = {"format": "json", "data": payload} if payload is not None else {}
    response = getattr(client, method)(url, **kwargs)
    assert_refused(response, statuses)
    audited = 1 if url.startswith(("/api/v1/verify/", "/api/v1/identify/")) else 0
    assert_only_audit_rows_added(before, audit_rows=audited)


@pytest.mark.parametrize("declared", ["5", str(11 * 1024 * 1024), str(10**15), "-1", "abc"])
def test_a_lying_content_length_is_4xx_never_500(client, person, declared):
    """A Content-Length that lies about the body (shorter, over the limit, absurd, negative, not a
    number): a clear 4xx, or for a header that is simply wrong the body is read as declared."""
    before = row_counts()
    body = b'{"person": "P-1", "image": "' + base64.b64encode(b"x" * 300) + b'"}'
    response = client.generic(
        "POST", "/api/v1/verify/", body, content_type="application/json", CONTENT_LENGTH=declared
    )
    assert 400 <= response.status_code < 500, (declared, response.status_code, response.content[:300])
    assert response.json().get("reason"), response.content
    assert_only_audit_rows_added(before, audit_rows=1)


# --- the console's webcam endpoints (JSON) ---------------------------------------------------------


@pytest.mark.parametrize(
    "frames, status, reason",
    [
        (["not base64 at all ***"], 400, "bad_image"),
        (["data:image/png;base64,@@@"], 400, "bad_image"),
        ([], 400, None),
        (["aGVsbG8="] * 17, 400, None),  # over MAX_IMAGES: refused before the worker
    ],
)
def test_console_frames_refuse_bad_input_with_json(org, person, frames, status, reason):
    from django.test import Client

    user = org.user("operator@corpus.example")
    client = Client()
    client.force_login(user)
    before = row_counts()
    for url, data in (
        ("/console/verify/frames/", {"person": "P-1", "frame": frames}),
        (f"/console/persons/{person.pk}/enroll/frames/", {"frame": frames}),
    ):
        response = client.post(url, data)
        assert response.status_code == status, (url, response.content[:300])
        body = response.json()
        assert body.get("reason") and body.get("detail"), body
        if reason:
            assert body["reason"] == reason, body
    assert row_counts()[FaceTemplate._meta.label] == before[FaceTemplate._meta.label]
    assert row_counts()["faceid.Person"] == before["faceid.Person"]
