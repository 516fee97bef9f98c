"""Verify (1:1) decides on the pipeline's output: thresholds, best frame, lockout, one audit row."""

from __future__ import annotations

import pytest

from faceid.contracts import FrameResult, PipelineFailure
from faceid.flows import FlowError, prepare_verify
from faceid.flows.verify import finish_verify
from inference.variants import VARIANT_CUTOUT, VARIANT_FULL
from tests.flows.builders import frame, images, output

pytestmark = pytest.mark.django_db


def verify(caller, claim: str, *frames: FrameResult):
    prepared = prepare_verify(caller, person_ref=claim, images=images(len(frames)))
    return finish_verify(prepared.call, output(*frames))


def test_the_most_similar_frame_decides_and_one_row_is_audited(caller, gallery, attempts):
    gallery.enroll("alice")
    weak = frame({VARIANT_FULL: [gallery.probe("alice", 0.85)]})
    strong = frame({VARIANT_FULL: [gallery.probe("alice", 0.95)]})

    result = verify(caller, "alice", frame(refusal="no_face"), weak, strong)

    assert result.match is True and result.decision == "accept"
    assert result.frame == 2 and result.similarity == pytest.approx(0.95, abs=1e-4)
    assert result.threshold == 0.92 and result.masked is False
    assert [f.refusal for f in result.frames] == ["no_face", None, None]
    rows = attempts()
    assert len(rows) == 1
    assert rows[0].decision == "accept" and rows[0].matched_person_id == result.person.id
    assert rows[0].pk == result.attempt_id and rows[0].api_key_id == caller.api_key.pk


def test_a_probe_below_the_unmasked_threshold_is_rejected(caller, gallery, attempts):
    gallery.enroll("alice")
    result = verify(caller, "alice", frame({VARIANT_FULL: [gallery.probe("alice", 0.88)]}))
    assert result.match is False and result.decision == "reject" and result.locked_out is None
    assert [row.decision for row in attempts()] == ["reject"]
    assert attempts()[0].matched_person_id is None


def test_a_masked_probe_is_held_to_the_masked_threshold_on_the_mask_aware_variant(caller, gallery):
    gallery.enroll("alice")
    # 0.94 passes the unmasked threshold (0.92) but fails the masked one (0.96); 0.97 passes both.
    masked = frame({VARIANT_CUTOUT: [gallery.probe("alice", 0.94, variant=VARIANT_CUTOUT)]}, masked=True)
    result = verify(caller, "alice", masked)
    assert result.match is False and result.masked is True and result.threshold == 0.96
    masked = frame({VARIANT_CUTOUT: [gallery.probe("alice", 0.97, variant=VARIANT_CUTOUT)]}, masked=True)
    assert verify(caller, "alice", masked).match is True


def test_a_probe_is_compared_only_with_templates_of_its_own_variant(caller, gallery, attempts):
    gallery.enroll("alice", variants=(VARIANT_FULL,))
    masked = frame({VARIANT_CUTOUT: [gallery.probe("alice", 0.99, variant=VARIANT_CUTOUT)]}, masked=True)
    with pytest.raises(FlowError) as refused:
        verify(caller, "alice", masked)
    assert refused.value.status == 409 and refused.value.reason == "no_templates"
    assert [row.decision for row in attempts()] == ["no_templates"]


def test_the_failure_that_reaches_the_limit_locks_the_person_out(caller, gallery, attempts):
    gallery.enroll("alice")  # the policy locks out after 3 failures
    outcomes = [
        verify(caller, "alice", frame({VARIANT_FULL: [gallery.probe("alice", 0.5)]})) for _ in range(3)
    ]
    assert [o.locked_out for o in outcomes] == [None, None, True]

    with pytest.raises(FlowError) as locked:
        prepare_verify(caller, person_ref="alice", images=images())
    assert locked.value.status == 423 and locked.value.extra["retry_after"] > 0
    assert [row.decision for row in attempts()] == ["reject", "reject", "reject", "locked_out"]


def test_no_usable_frame_is_a_422_audited_once(caller, gallery, attempts):
    gallery.enroll("alice")
    with pytest.raises(FlowError) as refused:
        verify(caller, "alice", frame(refusal="no_face"), frame(refusal="no_face"))
    assert refused.value.status == 422 and refused.value.reason == "no_face"
    assert len(refused.value.extra["frames"]) == 2
    rows = attempts()
    assert [row.decision for row in rows] == ["no_face"] and rows[0].pk == refused.value.extra["attempt_id"]


def test_bytes_that_are_no_image_are_a_400_audited_once(caller, gallery, attempts):
    gallery.enroll("alice")
    broken = FrameResult.undecodable("truncated", "the image data is truncated")
    with pytest.raises(FlowError) as refused:
        verify(caller, "alice", frame({VARIANT_FULL: [gallery.probe("alice", 0.99)]}), broken)
    assert refused.value.status == 400 and refused.value.extra["images"][0]["index"] == 1
    assert [row.decision for row in attempts()] == ["bad_image"]


@pytest.mark.parametrize(
    ("failure", "status", "decision"),
    [
        (PipelineFailure("timeout", "wait_timeout", "no result within 30 s"), 504, "timeout"),
        (PipelineFailure("input", "bad_argument", "unknown embedder"), 400, "bad_image"),
        (PipelineFailure("failed", "error", "RuntimeError"), 503, "error"),
    ],
)
def test_a_pipeline_failure_is_answered_and_audited(caller, gallery, attempts, failure, status, decision):
    gallery.enroll("alice")
    prepared = prepare_verify(caller, person_ref="alice", images=images())
    with pytest.raises(FlowError) as refused:
        finish_verify(prepared.call, failure=failure)
    assert refused.value.status == status
    assert [row.decision for row in attempts()] == [decision]


@pytest.mark.parametrize(
    ("claim", "status", "reason", "decision"),
    [
        ("", 400, "person_required", "unknown_person"),
        ("nobody", 404, "unknown_person", "unknown_person"),
        ("bob", 409, "no_templates", "no_templates"),
    ],
)
def test_claims_that_cannot_be_verified_are_refused_before_the_pipeline(
    caller, gallery, attempts, claim, status, reason, decision
):
    from faceid import services

    services.create_person(caller.organization, external_id="bob")  # no templates
    with pytest.raises(FlowError) as refused:
        prepare_verify(caller, person_ref=claim, images=images())
    assert (refused.value.status, refused.value.reason) == (status, reason)
    assert [row.decision for row in attempts()] == [decision]


def test_the_call_survives_the_queue_as_json(caller, gallery):
    from faceid.flows.common import FlowCall

    gallery.enroll("alice")
    prepared = prepare_verify(caller, person_ref="alice", images=images(2))
    again = FlowCall.from_json(prepared.call.to_json())
    assert again.person_id == prepared.call.person_id and again.policy == prepared.call.policy
    assert again.caller.api_key == caller.api_key and len(again.images) == 2
    assert all(image.kept_b64 is None for image in again.images)  # the policy keeps no images
    result = finish_verify(again, output(frame({VARIANT_FULL: [gallery.probe("alice", 0.97)]})))
    assert result.match is True


def test_probe_images_are_kept_with_their_audit_row_only_where_the_policy_keeps_images(
    caller, gallery, settings, tmp_path
):
    from faceid.models import StoredImage
    from tenants import services as tenant_services

    settings.MEDIA_ROOT = str(tmp_path)
    gallery.enroll("alice")
    verify(caller, "alice", frame({VARIANT_FULL: [gallery.probe("alice", 0.97)]}))
    assert not StoredImage.objects.exists()

    tenant_services.update_policy(caller.organization, keep_images=True)
    result = verify(caller, "alice", frame({VARIANT_FULL: [gallery.probe("alice", 0.97)]}))
    kept = StoredImage.objects.get()
    assert kept.attempt_id == result.attempt_id and kept.person_id == gallery.people["alice"].person.pk
    assert kept.purpose == "probe" and kept.file.read().startswith(b"photo ")
