"""Adding a face to a person who already has templates must match them, unless an admin (a console
owner or admin) overrides; every enrollment and every override is an audit event."""

from __future__ import annotations

import pytest

from faceid import selectors, services
from faceid.events import event_details
from faceid.flows import FlowError, prepare_enroll
from faceid.flows.enroll import finish_enroll
from faceid.models import VerificationAttempt
from inference.variants import VARIANT_FULL
from tenants.models import Role
from tests.flows.builders import frame, images, output

pytestmark = pytest.mark.django_db


def enroll(caller, person, *frames, override=False):
    prepared = prepare_enroll(caller, person=person, images=images(len(frames)), override=override)
    return finish_enroll(prepared.call, output(*frames))


def events(organization, action):
    return list(VerificationAttempt.objects.filter(organization=organization, action=action).order_by("seq"))


def test_a_face_that_does_not_match_the_person_is_refused_per_photo(caller, gallery):
    alice = gallery.enroll("alice")
    before = selectors.templates_for_person(caller.organization, alice.person).count()
    stranger = frame({VARIANT_FULL: [gallery.probe_vector()]})
    genuine = frame({VARIANT_FULL: [gallery.probe("alice", 0.95)]})

    result = enroll(caller, alice.person, stranger, genuine)

    refused, stored = result.photos
    assert (refused.stored, refused.reason) == (False, "face_mismatch") and refused.templates == ()
    assert stored.stored and result.stored == 1 and result.status == 201
    assert selectors.templates_for_person(caller.organization, alice.person).count() == before + 1
    only_stranger = enroll(caller, alice.person, stranger)
    assert only_stranger.status == 422 and only_stranger.reason == "face_mismatch"


def test_every_enrollment_is_audited_with_its_photos(caller, gallery):
    person = services.create_person(caller.organization, external_id="dave")
    result = enroll(
        caller, person, frame({VARIANT_FULL: [gallery.probe_vector()]}), frame(refusal="too_blurred")
    )
    (event,) = events(caller.organization, "enroll")
    details = event_details(event)
    assert event.api_key_id == caller.api_key.pk and event.claimed_person_id == person.pk
    assert [p["sha256"] for p in details["photos"]] == [p.sha256 for p in result.photos]
    assert [p["stored"] for p in details["photos"]] == [True, False] and details["stored"] == 1
    assert details["photos"][0]["templates"] == [t.id for t in result.photos[0].templates]


@pytest.mark.parametrize("who", ["api_key", Role.OPERATOR])
def test_only_an_admin_may_override(caller, gallery, make_console_caller, who):
    alice = gallery.enroll("alice")
    someone = caller if who == "api_key" else make_console_caller(who)
    with pytest.raises(FlowError) as refused:
        prepare_enroll(someone, person=alice.person, images=images(), override=True)
    assert refused.value.status == 403 and refused.value.reason == "override_forbidden"


def test_an_admin_override_stores_the_face_and_is_audited(caller, gallery, make_console_caller):
    alice = gallery.enroll("alice")
    admin = make_console_caller(Role.ADMIN)
    result = enroll(admin, alice.person, frame({VARIANT_FULL: [gallery.probe_vector()]}), override=True)
    assert result.stored == 1 and result.photos[0].reason is None
    (event,) = events(caller.organization, "enroll_override")
    details = event_details(event)
    assert event.user_id == admin.user.pk and event.claimed_person_id == alice.person.pk
    assert [m["sha256"] for m in details["mismatched"]] == [result.photos[0].sha256]
    assert details["mismatched"][0]["similarity"] < 0.9
