"""The lockout ledger (faceid.lockout) through the flows: reservations at prepare, each compared
frame counted, one budget per person whoever calls, identify limited per caller."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from faceid import selectors
from faceid.contracts import PipelineFailure
from faceid.flows import Caller, FlowError, prepare_identify, prepare_verify
from faceid.flows.identify import finish_identify
from faceid.flows.verify import finish_verify
from faceid.models import LockoutEntry
from inference.variants import VARIANT_FULL
from tenants import services as tenant_services
from tenants.models import Role
from tests.flows.builders import frame, images, output

pytestmark = pytest.mark.django_db


@pytest.fixture
def compared(monkeypatch):
    """How many probe frames were compared with a person's photos (verify)."""
    from faceid.flows import verify

    calls = []
    original = verify.score_frame

    def counting(*args, **kwargs):
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(verify, "score_frame", counting)
    return calls


def rejected(gallery, name="alice", n=1):
    return [frame({VARIANT_FULL: [gallery.probe(name, 0.3)]}) for _ in range(n)]


def test_prepared_calls_hold_their_reservation_until_they_are_decided(caller, gallery, attempts):
    """?async=true: a call prepared and not yet finished holds its frames; the 4th is refused."""
    gallery.enroll("alice")  # 3 failed frames lock
    pending = [prepare_verify(caller, person_ref="alice", images=images()) for _ in range(3)]
    with pytest.raises(FlowError) as refused:
        prepare_verify(caller, person_ref="alice", images=images())
    assert refused.value.status == 423 and refused.value.extra["retry_after"] > 0
    assert attempts()[-1].decision == "locked_out"
    for prepared in pending:
        assert finish_verify(prepared.call, output(*rejected(gallery))).decision == "reject"
    status = selectors.lockout_status(caller.organization, gallery.people["alice"].person)
    assert status.locked and status.failures_in_window == 3 and status.reserved == 0


def test_a_burst_counts_every_compared_frame_and_never_more_than_the_budget(caller, gallery, compared):
    gallery.enroll("alice")  # budget 3
    prepared = prepare_verify(caller, person_ref="alice", images=images(5))
    result = finish_verify(prepared.call, output(*rejected(gallery, n=5)))
    assert result.decision == "reject" and result.locked_out is True
    assert len(compared) == 3  # the best 3 frames, not 5
    status = selectors.lockout_status(caller.organization, gallery.people["alice"].person)
    assert status.locked and status.failures_in_window == 3


def test_a_rejected_16_frame_burst_counts_16_failures(caller, gallery, compared):
    tenant_services.update_policy(caller.organization, lockout_failures=20)
    gallery.enroll("alice")
    prepared = prepare_verify(caller, person_ref="alice", images=images(16))
    assert finish_verify(prepared.call, output(*rejected(gallery, n=16))).locked_out is None
    status = selectors.lockout_status(caller.organization, gallery.people["alice"].person)
    assert len(compared) == 16 and status.failures_in_window == 16 and not status.locked
    # 4 frames are left: a second burst is granted only those
    again = prepare_verify(caller, person_ref="alice", images=images(16))
    assert finish_verify(again.call, output(*rejected(gallery, n=16))).locked_out is True
    assert len(compared) == 20


def test_two_keys_and_a_console_user_share_one_budget(caller, gallery, make_console_caller):
    gallery.enroll("alice")
    organization = caller.organization
    other_key, _ = tenant_services.create_api_key(organization, name="gate 2", scopes=["verify"])
    callers = [caller, Caller(organization, api_key=other_key), make_console_caller(Role.OPERATOR)]
    pending = [prepare_verify(c, person_ref="alice", images=images()) for c in callers]
    for c in callers:
        with pytest.raises(FlowError) as refused:
            prepare_verify(c, person_ref="alice", images=images())
        assert refused.value.status == 423
    for prepared in pending:
        finish_verify(prepared.call, output(*rejected(gallery)))
    assert selectors.lockout_status(organization, gallery.people["alice"].person).locked


def test_a_success_resets_the_count_and_a_refusal_before_comparing_frees_its_frames(caller, gallery):
    gallery.enroll("alice")
    for _ in range(2):
        finish_verify(
            prepare_verify(caller, person_ref="alice", images=images()).call, output(*rejected(gallery))
        )
    failed = prepare_verify(caller, person_ref="alice", images=images())
    with pytest.raises(FlowError):
        finish_verify(failed.call, failure=PipelineFailure("failed", "error", "RuntimeError"))
    person = gallery.people["alice"].person
    assert selectors.lockout_status(caller.organization, person).failures_in_window == 2
    genuine = frame({VARIANT_FULL: [gallery.probe("alice", 0.97)]})
    assert finish_verify(
        prepare_verify(caller, person_ref="alice", images=images()).call, output(genuine)
    ).match
    status = selectors.lockout_status(caller.organization, person)
    assert (status.failures_in_window, status.reserved) == (0, 0)
    assert set(LockoutEntry.objects.values_list("state", flat=True)) == {"failed", "void", "passed"}


def test_a_reservation_never_settled_counts_as_failed_once_it_expires(caller, gallery, monkeypatch):
    gallery.enroll("alice")
    person = gallery.people["alice"].person
    abandoned = [prepare_verify(caller, person_ref="alice", images=images()) for _ in range(3)]
    later = timezone.now() + timedelta(seconds=200)  # past the reservation (90 + 30 s by default)
    status = selectors.lockout_status(caller.organization, person, now=later)
    assert status.locked and status.reserved == 0 and status.failures_in_window == 3
    # ...and not for ever: after the lockout the budget is whole again
    after = later + timedelta(seconds=caller.organization.policy.lockout_seconds + 1)
    assert not selectors.lockout_status(caller.organization, person, now=after).locked
    # a late answer still settles its own reservation (a match resets the count)
    genuine = frame({VARIANT_FULL: [gallery.probe("alice", 0.97)]})
    assert finish_verify(abandoned[0].call, output(genuine)).match


def test_identify_is_limited_per_caller(caller, gallery, attempts, make_console_caller):
    gallery.enroll("alice")
    stranger = frame({VARIANT_FULL: [gallery.probe_vector()]})
    for _ in range(3):
        prepared = prepare_identify(caller, images=images())
        assert finish_identify(prepared.call, output(stranger)).decision == "no_match"
    with pytest.raises(FlowError) as refused:
        prepare_identify(caller, images=images())
    assert refused.value.status == 423 and refused.value.reason == "locked_out"
    assert attempts()[-1].decision == "locked_out" and attempts()[-1].mode == "identify"
    # another caller has its own budget, and a burst counts each frame
    user = make_console_caller(Role.OPERATOR)
    burst = prepare_identify(user, images=images(4))
    result = finish_identify(burst.call, output(*([stranger] * 4)))
    assert result.decision == "no_match"
    with pytest.raises(FlowError):
        prepare_identify(user, images=images())
