"""Every security-relevant action leaves a row in the organization's audit chain, with its actor."""

import csv
import io
import json

import pytest
from django.contrib.auth import authenticate
from django.test import Client
from django.urls import reverse

from faceid import services
from faceid.audit import verify_chain
from faceid.events import Action, Actor, event_details, record_event
from faceid.models import VerificationAttempt
from tenants import services as tenant_services
from tenants.exceptions import ObjectNotInOrganization
from tenants.models import Role


def events(org, action=None):
    qs = VerificationAttempt.objects.filter(organization=org, mode="event").order_by("seq")
    return list(qs.filter(action=action) if action else qs)


def test_record_event_appends_to_the_same_chain_as_attempts(org, make_person, make_user, record):
    person = make_person(org)
    user = make_user(org)
    record(org)
    event = record_event(
        org,
        action=Action.EXTERNAL_ID_CHANGE,
        actor=Actor(user=user, client_ip="10.0.0.9"),
        person=person,
        details={"new": "B", "old": "A"},
    )
    record(org)

    assert event.seq == 2 and event.mode == "event" and event.decision == ""
    assert event.details == '{"new":"B","old":"A"}' and event_details(event) == {"old": "A", "new": "B"}
    assert (event.user, event.claimed_person, event.client_ip) == (user, person, "10.0.0.9")
    report = verify_chain(org)
    assert report.ok and report.checked == 3


def test_record_event_refuses_unknown_actions_and_other_organizations(org, other_org, make_person):
    with pytest.raises(ValueError):
        record_event(org, action="coffee")
    with pytest.raises(ObjectNotInOrganization):
        record_event(org, action=Action.PERSON_ERASE, person=make_person(other_org))
    assert not events(org)


def test_erasure_and_template_deletion_are_audited_with_the_actor(org, make_person, make_template, make_user):
    user = make_user(org)
    person = make_person(org)
    make_template(org, person)
    make_template(org, person)

    assert services.delete_templates(org, person, actor=Actor(user=user)) == 2
    services.erase_person(org, person, actor=Actor(user=user, client_ip="::1"))

    deleted, erased = events(org)
    assert deleted.action == Action.TEMPLATE_DELETE and event_details(deleted)["deleted"] == 2
    assert erased.action == Action.PERSON_ERASE and erased.user == user and erased.claimed_person == person
    assert event_details(erased)["templates_deleted"] == 0
    assert verify_chain(org).ok


def test_external_id_change_and_activation_are_audited(org, make_person, make_api_key):
    api_key, _ = make_api_key(org)
    person = make_person(org, external_id="E-1")
    actor = Actor(api_key=api_key)

    services.update_person(org, person, external_id="E-2", actor=actor)
    services.update_person(org, person, display_name="no event for a name")
    services.update_person(org, person, active=False, actor=actor)
    services.update_person(org, person, active=True, actor=actor)
    services.deactivate_person(org, person)

    rows = [r for r in events(org) if r.action != Action.API_KEY_CREATE]
    assert [r.action for r in rows] == [
        Action.EXTERNAL_ID_CHANGE,
        Action.PERSON_DEACTIVATE,
        Action.PERSON_ACTIVATE,
        Action.PERSON_DEACTIVATE,
    ]
    assert event_details(rows[0]) == {"old": "E-1", "new": "E-2"} and rows[0].api_key == api_key


def test_api_key_creation_and_revocation_are_audited(org, make_user):
    user = make_user(org, Role.ADMIN)
    api_key, _ = tenant_services.create_api_key(org, name="door", scopes=["verify"], created_by=user)
    tenant_services.revoke_api_key(org, api_key, actor=Actor(user=user))
    tenant_services.revoke_api_key(org, api_key, actor=Actor(user=user))  # idempotent: one event

    created, revoked = events(org)
    assert (created.action, created.user, event_details(created)["prefix"]) == (
        Action.API_KEY_CREATE,
        user,
        api_key.prefix,
    )
    assert event_details(created)["scopes"] == ["verify"]
    assert (revoked.action, event_details(revoked)["key_id"]) == (Action.API_KEY_REVOKE, api_key.pk)


def test_logins_and_failed_logins_are_audited_in_the_users_organizations(org, other_org, make_user, caplog):
    user = make_user(org, email="ann@example.com")
    tenant_services.set_membership(other_org, user=user, role=Role.AUDITOR)

    client = Client()
    assert client.login(username="ann@example.com", password="x-Very-long-pass-123")
    assert authenticate(username="ann@example.com", password="wrong") is None
    assert authenticate(username="nobody@example.com", password="wrong") is None

    for organization in (org, other_org):
        login, failed = events(organization)
        assert (login.action, login.user) == (Action.LOGIN, user)
        assert (failed.action, event_details(failed)) == (
            Action.LOGIN_FAILED,
            {"username": "ann@example.com"},
        )
        assert "wrong" not in failed.details
    # An unknown user has no organization: logged, not chained.
    assert "nobody@example.com" in caplog.text
    assert VerificationAttempt.objects.filter(mode="event").count() == 4


def test_csv_exports_are_audited_in_the_api_console_and_admin(
    org, make_user, make_api_key, record, admin_client
):
    record(org)
    _, plaintext = make_api_key(org, scopes=["audit:read"])
    api = Client(HTTP_AUTHORIZATION=f"Bearer {plaintext}")
    assert api.get("/api/v1/attempts.csv?decision=reject").status_code == 200
    console = Client()
    console.force_login(make_user(org, Role.AUDITOR))
    assert console.get("/console/audit.csv").status_code == 200
    attempt = VerificationAttempt.objects.get(organization=org, mode="verify")
    admin_client.post(
        reverse("admin:faceid_verificationattempt_changelist"),
        {"action": "export_csv", "_selected_action": [attempt.pk]},
    )

    exports = events(org, Action.CSV_EXPORT)
    assert [event_details(e)["via"] for e in exports] == ["api", "console", "admin"]
    assert event_details(exports[0])["query"] == {"decision": "reject"} and exports[0].api_key is not None
    assert verify_chain(org).ok


def test_events_are_listed_when_asked_for_and_not_among_attempts(org, make_api_key, record):
    record(org)
    record_event(org, action=Action.POLICY_CHANGE, details={"changes": {"lockout_failures": [5, 3]}})
    _, plaintext = make_api_key(org, scopes=["audit:read"])
    api = Client(HTTP_AUTHORIZATION=f"Bearer {plaintext}")

    assert [r["mode"] for r in api.get("/api/v1/attempts/").json()["results"]] == ["verify"]
    listed = api.get("/api/v1/attempts/?mode=event").json()["results"]
    assert [r["action"] for r in listed] == ["api_key_create", "policy_change"]  # newest first
    assert listed[1]["details"] == {"changes": {"lockout_failures": [5, 3]}}
    assert api.get("/api/v1/attempts/?action=policy_change").json()["count"] == 1
    body = b"".join(api.get("/api/v1/attempts.csv?action=policy_change").streaming_content).decode()
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [json.loads(r["details"]) for r in rows] == [{"changes": {"lockout_failures": [5, 3]}}]
    assert api.get("/api/v1/attempts/?action=nope").status_code == 400
