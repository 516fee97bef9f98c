from datetime import timedelta

import pytest

from faceid import selectors
from faceid.models import LockoutEntry
from tenants.services import update_policy


@pytest.fixture
def strict(org):
    """3 failures within 60 s lock the person out for 300 s."""
    return update_policy(org, lockout_failures=3, lockout_window_seconds=60, lockout_seconds=300)


@pytest.fixture
def person(org, make_person):
    return make_person(org, external_id="E-1")


def _entry(org, person, clock, state="failed", frames=1):
    """A settled call in the lockout ledger (faceid.lockout), decided now."""
    return LockoutEntry.objects.create(
        organization=org,
        subject="person",
        person=person,
        caller_key="key:1",
        mode="verify",
        state=state,
        comparisons=frames,
        created_at=clock.now,
        expires_at=clock.now + timedelta(seconds=120),
        decided_at=None if state == "pending" else clock.now,
    )


def _fail(org, record, person, clock, times=1, every=1.0):
    # The ledger counts failures now (compared frames); audit rows alone no longer do.
    for _ in range(times):
        clock.advance(seconds=every)
        _entry(org, person, clock)


def test_nobody_is_locked_out_without_failures(org, strict, person):
    status = selectors.lockout_status(org, person, strict)
    assert (status.locked, status.failures_in_window, status.locked_until) == (False, 0, None)


def test_failures_below_the_limit_do_not_lock(org, strict, person, record, clock):
    _fail(org, record, person, clock, times=2)
    status = selectors.lockout_status(org, person, strict)
    assert not status.locked and status.failures_in_window == 2
    assert selectors.failed_attempts_in_window(org, person, window_seconds=60) == 2


def test_the_limit_within_the_window_locks_until_the_lockout_ends(org, strict, person, record, clock):
    _fail(org, record, person, clock, times=3)
    last = clock.now

    status = selectors.lockout_status(org, person, strict)
    assert status.locked and status.locked_until == last + timedelta(seconds=300)
    assert status.retry_after_seconds(now=last) == 301

    assert selectors.lockout_status(org, person, strict, now=last + timedelta(seconds=299)).locked
    assert not selectors.lockout_status(org, person, strict, now=last + timedelta(seconds=300)).locked


def test_failures_spread_wider_than_the_window_do_not_lock(org, strict, person, record, clock):
    _fail(org, record, person, clock, times=5, every=40)  # never 3 within 60 s
    assert not selectors.lockout_status(org, person, strict).locked


def test_a_successful_verification_resets_the_count(org, strict, person, record, clock):
    _fail(org, record, person, clock, times=2)
    clock.advance(seconds=1)
    _entry(org, person, clock, state="passed")
    _fail(org, record, person, clock, times=2)
    status = selectors.lockout_status(org, person, strict)
    assert not status.locked and status.failures_in_window == 2


def test_refusals_while_locked_and_other_refusals_do_not_count(org, strict, person, record, clock):
    for decision in ("locked_out", "no_face", "bad_image", "low_quality", "error", "reject"):
        clock.advance(seconds=1)
        record(org, claimed_person=person, decision=decision)  # audit rows are not the ledger
    for _ in range(3):
        _entry(org, person, clock, state="void", frames=0)  # refused before comparing
    assert not selectors.lockout_status(org, person, strict).locked


def test_failures_count_compared_frames(org, strict, person, clock):
    _entry(org, person, clock, frames=2)
    assert not selectors.lockout_status(org, person, strict).locked
    clock.advance(seconds=1)
    _entry(org, person, clock, frames=1)
    status = selectors.lockout_status(org, person, strict)
    assert status.locked and status.failures_in_window == 3


def test_reservations_in_flight_are_reported_and_expire_into_failures(org, strict, person, clock):
    for _ in range(3):
        _entry(org, person, clock, state="pending")
    status = selectors.lockout_status(org, person, strict)
    assert (status.locked, status.reserved, status.failures_in_window) == (False, 3, 0)
    expired = selectors.lockout_status(org, person, strict, now=clock.now + timedelta(seconds=121))
    assert expired.locked and expired.reserved == 0 and expired.failures_in_window == 3


def test_lockout_is_per_person(org, strict, person, make_person, record, clock):
    other = make_person(org, external_id="E-2")
    _fail(org, record, person, clock, times=3)
    assert selectors.lockout_status(org, person, strict).locked
    assert not selectors.lockout_status(org, other, strict).locked
