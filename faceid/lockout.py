"""The lockout: how many face comparisons a claimed person (verify) or a caller (identify) may still
fail, counted in a ledger (faceid.models.LockoutEntry) under a PostgreSQL advisory lock.

The budget is the policy's ``lockout_failures`` compared frames within ``lockout_window_seconds``:
- a call reserves its frames when it is prepared (``reserve``), under the subject's advisory
  transaction lock, so parallel, asynchronous and multi-key calls all see each other's
  reservations: the failures already counted plus the frames reserved by calls still in flight
  plus this call's frames never exceed the budget (a call gets at most what is left, and is
  refused with 423 when nothing is);
- the call is settled when it is decided (``Ledger.claim`` then ``Ledger.settle``, under the same
  lock): failed with the number of frames actually compared, passed (which resets the count, as
  a successful verification always did), or void when nothing was compared;
- a reservation never settled (the worker or the web process died) turns, at its ``expires_at``,
  into a failure of every frame it reserved: it neither blocks for ever (it ages out of the window
  like any failure) nor hands back a budget that may really have been used.
Reaching the budget within the window locks the subject for ``lockout_seconds`` after the failure
that reached it; when that lock ends the count starts afresh. Refusals while locked compare
nothing and are not counted, so hammering a lock does not extend it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from faceid.models import LockoutEntry, LockoutState, LockoutSubject, Person
from tenants.models import Organization

# A reservation outlives the longest legitimate wait for its pipeline task by this much.
_EXPIRY_MARGIN_SECONDS = 30


class LockoutPolicy(Protocol):
    lockout_failures: int
    lockout_window_seconds: int
    lockout_seconds: int


def caller_key(api_key: Any = None, user: Any = None, client_ip: str | None = None) -> str:
    """Who calls, as the identify budget is keyed: an API key or a console user."""
    if api_key is not None:
        return f"key:{api_key.pk}"
    if user is not None:
        return f"user:{user.pk}"
    return f"ip:{client_ip or '-'}"


@dataclass(frozen=True)
class Subject:
    """Whose budget: a claimed person (every caller shares it) or a caller (identify)."""

    kind: str
    caller_key: str
    person_id: int | None = None

    @classmethod
    def person(cls, person: Person | int, caller_key: str) -> Subject:
        return cls(LockoutSubject.PERSON, caller_key, person if isinstance(person, int) else person.pk)

    @classmethod
    def caller(cls, caller_key: str) -> Subject:
        return cls(LockoutSubject.CALLER, caller_key)

    @classmethod
    def of(cls, entry: LockoutEntry) -> Subject:
        return cls(entry.subject, entry.caller_key, entry.person_id)

    def entries(self, organization: Organization) -> QuerySet[LockoutEntry]:
        qs = LockoutEntry.objects.filter(organization=organization, subject=self.kind)
        if self.kind == LockoutSubject.PERSON:
            return qs.filter(person_id=self.person_id)
        return qs.filter(caller_key=self.caller_key)

    def lock_id(self, organization: Organization) -> int:
        """A signed 64-bit advisory lock id for (organization, subject)."""
        who = self.person_id if self.kind == LockoutSubject.PERSON else self.caller_key
        digest = hashlib.blake2b(
            f"faceid-lockout:{organization.pk}:{self.kind}:{who}".encode(), digest_size=8
        )
        return int.from_bytes(digest.digest(), "big", signed=True)


@dataclass(frozen=True)
class LockoutStatus:
    """``failures_in_window``: frames counted as failed in the window (since the last success or
    the end of the last lock); ``reserved``: frames reserved by calls still in flight."""

    locked: bool
    failures_in_window: int
    locked_until: datetime | None
    reserved: int = 0
    # When the earliest in-flight reservation settles or expires (None without any).
    reserved_until: datetime | None = None

    def retry_after_seconds(self, now: datetime | None = None) -> int:
        if not self.locked or self.locked_until is None:
            return 0
        return max(0, int((self.locked_until - (now or timezone.now())).total_seconds()) + 1)

    def remaining(self, budget: int) -> int:
        return 0 if self.locked else max(0, budget - self.failures_in_window - self.reserved)


def status(
    organization: Organization, subject: Subject, policy: LockoutPolicy, *, now: datetime | None = None
) -> LockoutStatus:
    """The subject's lockout as the ledger says at ``now`` (a read; no lock taken)."""
    now = now or timezone.now()
    window = timedelta(seconds=policy.lockout_window_seconds)
    duration = timedelta(seconds=policy.lockout_seconds)
    horizon = now - window - duration
    rows = subject.entries(organization).filter(
        Q(state=LockoutState.PENDING)
        | Q(decided_at__gte=horizon, state__in=[LockoutState.FAILED, LockoutState.PASSED])
    )
    events: list[tuple[datetime, int]] = []  # (time, failed frames); 0 frames marks a reset (success)
    reserved, reserved_until = 0, None
    for state, comparisons, decided_at, expires_at in rows.values_list(
        "state", "comparisons", "decided_at", "expires_at"
    ):
        if state == LockoutState.PENDING and expires_at > now:
            reserved += comparisons
            reserved_until = expires_at if reserved_until is None else min(reserved_until, expires_at)
        elif state == LockoutState.PENDING:
            if expires_at >= horizon:
                events.append((expires_at, comparisons))  # never settled: every reserved frame failed
        elif decided_at <= now:
            events.append((decided_at, comparisons if state == LockoutState.FAILED else 0))
    events.sort(key=lambda event: (event[0], event[1] != 0))

    counted: list[tuple[datetime, int]] = []
    locked_until: datetime | None = None
    for at, frames in events:
        if locked_until is not None and at >= locked_until:
            counted, locked_until = [], None  # the lock ended: the count starts afresh
        if frames == 0:
            counted, locked_until = [], None  # a success resets the count (and ends a lock)
            continue
        counted = [(t, n) for t, n in counted if at - t <= window] + [(at, frames)]
        if sum(n for _, n in counted) >= policy.lockout_failures:
            locked_until = at + duration
    if locked_until is not None and now >= locked_until:
        counted, locked_until = [], None
    in_window = sum(n for t, n in counted if t > now - window)
    return LockoutStatus(
        locked=locked_until is not None,
        failures_in_window=in_window,
        locked_until=locked_until,
        reserved=reserved,
        reserved_until=reserved_until,
    )


def reservation_seconds() -> int:
    """How long a reservation waits to be settled: the longest a sync or async pipeline task may
    legitimately take, plus a margin."""
    longest = max(int(settings.PIPELINE_WAIT_SECONDS), int(settings.CELERY_TASK_TIME_LIMIT))
    return longest + _EXPIRY_MARGIN_SECONDS


@dataclass(frozen=True)
class Grant:
    """A reservation: the ledger entry and the most frames the call may compare."""

    entry_id: int
    frames: int


@dataclass(frozen=True)
class Denied:
    """No budget left: the status that says why, and until when."""

    status: LockoutStatus

    @property
    def locked_until(self) -> datetime:
        until = self.status.locked_until or self.status.reserved_until
        return until or timezone.now()

    def retry_after_seconds(self, now: datetime | None = None) -> int:
        return max(1, int((self.locked_until - (now or timezone.now())).total_seconds()) + 1)


class Ledger:
    """One subject's ledger while its advisory lock is held (see ``holding``)."""

    def __init__(self, organization: Organization, subject: Subject, policy: LockoutPolicy) -> None:
        self.organization = organization
        self.subject = subject
        self.policy = policy

    def status(self, now: datetime | None = None) -> LockoutStatus:
        return status(self.organization, self.subject, self.policy, now=now)

    def reserve(self, *, frames: int, mode: str) -> Grant | Denied:
        """Reserve up to ``frames`` comparisons from what is left of the budget."""
        now = timezone.now()
        current = self.status(now)
        granted = min(max(1, frames), current.remaining(self.policy.lockout_failures))
        if granted <= 0:
            return Denied(current)
        entry = LockoutEntry.objects.create(
            organization=self.organization,
            subject=self.subject.kind,
            person_id=self.subject.person_id,
            caller_key=self.subject.caller_key,
            mode=mode,
            comparisons=granted,
            created_at=now,
            expires_at=now + timedelta(seconds=reservation_seconds()),
        )
        return Grant(entry.pk, granted)

    def claim(self, entry_id: int | None, *, frames: int, mode: str) -> Grant | Denied:
        """Check again when deciding: the call's own unsettled reservation (even if it expired,
        which already counted it as failed), else (no reservation, or settled already) a new one
        from what is left now."""
        entry = None
        if entry_id is not None:
            entry = self.subject.entries(self.organization).filter(pk=entry_id).first()
        if entry is not None and entry.state == LockoutState.PENDING:
            return Grant(entry.pk, entry.comparisons)
        return self.reserve(frames=frames, mode=mode)

    def settle(self, grant: Grant, *, state: str, comparisons: int = 0) -> None:
        if state == LockoutState.VOID:
            comparisons = 0
        LockoutEntry.objects.filter(
            organization=self.organization, pk=grant.entry_id, state=LockoutState.PENDING
        ).update(state=state, comparisons=min(comparisons, grant.frames), decided_at=timezone.now())


@contextmanager
def holding(organization: Organization, subject: Subject, policy: LockoutPolicy) -> Iterator[Ledger]:
    """A transaction holding the subject's advisory lock: every reservation and settlement of one
    subject is serialised, whatever process, key or user makes it."""
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [subject.lock_id(organization)])
        yield Ledger(organization, subject, policy)


def subject_of_entry(organization: Organization, entry_id: int | None) -> Subject | None:
    entry = LockoutEntry.objects.filter(organization=organization, pk=entry_id).first() if entry_id else None
    return Subject.of(entry) if entry is not None else None


def release(organization: Organization, entry_id: int | None, policy: LockoutPolicy) -> None:
    """Void a reservation whose call was refused before any comparison (bad image, no face,
    pipeline failure): nothing was compared, so nothing is counted."""
    subject = subject_of_entry(organization, entry_id)
    if subject is None:
        return
    with holding(organization, subject, policy) as ledger:
        ledger.settle(Grant(entry_id, 0), state=LockoutState.VOID)
