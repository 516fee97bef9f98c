"""Parallel verifies of one person, each in its own thread and database connection, never compare
more frames than the lockout allows (faceid.lockout reserves under an advisory lock)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from django.db import connection

from faceid import selectors
from faceid.flows import Caller, FlowError, prepare_verify
from faceid.flows.verify import finish_verify
from inference.variants import VARIANT_FULL
from tenants import services as tenant_services
from tenants.models import Role
from tests.flows.builders import THRESHOLDS, Gallery, frame, images, output

CALLS = 6
BUDGET = 3


@pytest.fixture
def setting(transactional_db, django_user_model):
    organization = tenant_services.create_organization(
        slug="parallel", name="Parallel", mask_strategy="cutout", lockout_failures=BUDGET, **THRESHOLDS
    )
    gallery = Gallery(organization, np.random.default_rng(11))
    gallery.enroll("alice")
    keys = [
        tenant_services.create_api_key(organization, name=f"gate {i}", scopes=["verify"])[0] for i in range(2)
    ]
    user = django_user_model.objects.create_user(username="op@example.com", password="x-Very-long-pass-123")
    tenant_services.set_membership(organization, user=user, role=Role.OPERATOR)
    callers = [Caller(organization, api_key=keys[0]), Caller(organization, api_key=keys[1])]
    callers.append(Caller(organization, user=user))
    return organization, gallery, callers


def test_parallel_verifies_from_two_keys_and_the_console_never_exceed_the_budget(setting, monkeypatch):
    organization, gallery, callers = setting
    lock = threading.Lock()
    compared: list[int] = []
    from faceid.flows import verify

    original = verify.score_frame  # one call per probe frame compared with the person's photos

    def counting(*args, **kwargs):
        with lock:
            compared.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(verify, "score_frame", counting)
    probes = [frame({VARIANT_FULL: [gallery.probe("alice", 0.3)]}) for _ in range(CALLS)]
    start, decide = threading.Barrier(CALLS), threading.Barrier(CALLS)
    outcomes: list[str] = []

    def attempt(i: int) -> None:
        try:
            start.wait()
            try:
                prepared = prepare_verify(callers[i % len(callers)], person_ref="alice", images=images())
            except FlowError as exc:
                prepared, outcome = None, f"refused {exc.status}"
            decide.wait()  # every call is prepared before any is decided: the worst case
            if prepared is not None:
                outcome = finish_verify(prepared.call, output(probes[i])).decision
            with lock:
                outcomes.append(outcome)
        finally:
            connection.close()

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(CALLS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert len(compared) == BUDGET
    assert sorted(outcomes) == ["refused 423"] * (CALLS - BUDGET) + ["reject"] * BUDGET
    assert selectors.lockout_status(organization, gallery.people["alice"].person).locked
