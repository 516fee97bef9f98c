"""A second organization's selectors and services can neither read nor change the first's rows."""

import pytest
from django.db import IntegrityError, transaction

from faceid import selectors, services
from faceid.models import FaceTemplate, Person, VerificationAttempt
from tenants import selectors as tenant_selectors
from tenants import services as tenant_services
from tenants.exceptions import ObjectNotInOrganization
from tenants.models import ApiKey, Membership
from tests.plugins.factories import sha


@pytest.fixture
def acme(org, make_person, make_template, make_api_key, make_user, record, random_vector):
    """The first organization with one of everything."""
    person = make_person(org, external_id="E-1", display_name="Alice Acme")
    vector = random_vector()
    template = make_template(org, person, vector=vector)
    api_key, _ = make_api_key(org)
    user = make_user(org)
    attempt = record(org, claimed_person=person, api_key=api_key, user=user)
    return {
        "org": org,
        "person": person,
        "template": template,
        "vector": vector,
        "api_key": api_key,
        "user": user,
        "membership": Membership.objects.get(user=user, organization=org),
        "attempt": attempt,
    }


@pytest.fixture
def globex(other_org, make_person, make_template, random_vector):
    """The second organization, with its own person so searches have something to return."""
    person = make_person(other_org, external_id="G-1", display_name="Gus Globex")
    make_template(other_org, person, vector=random_vector())
    return {"org": other_org, "person": person}


def test_person_selectors_return_only_the_callers_persons(acme, globex):
    b = globex["org"]
    person = acme["person"]
    assert list(selectors.persons_for(b)) == [globex["person"]]
    assert list(selectors.persons_for(b, search="Alice")) == []
    assert selectors.person_by_id_or_external_id(b, person.pk) is None
    assert selectors.person_by_id_or_external_id(b, str(person.pk)) is None
    assert selectors.person_by_id_or_external_id(b, "E-1") is None
    assert selectors.person_by_id_or_external_id(b, "E-1", include_erased=True) is None


def test_template_selectors_return_only_the_callers_templates(acme, globex):
    b = globex["org"]
    assert not selectors.templates_for_person(b, acme["person"]).exists()
    # The exact vector of the first organization's template finds only the caller's own person.
    matches = selectors.nearest_templates(b, "dlib_resnet_v1", acme["vector"], limit=10)
    assert [m.person for m in matches] == [globex["person"]]
    assert selectors.best_match_for_person(b, acme["person"], "dlib_resnet_v1", acme["vector"]) is None


def test_audit_selectors_return_only_the_callers_rows(acme, globex):
    b = globex["org"]
    assert not selectors.attempts_for(b).exists()
    assert not selectors.attempts_for(b, person=acme["person"]).exists()
    assert not selectors.attempts_for(b, api_key=acme["api_key"]).exists()
    assert not selectors.attempts_for(b, user=acme["user"]).exists()
    assert not selectors.attempts_for(b, external_id="E-1").exists()
    assert selectors.attempt_by_id(b, acme["attempt"].pk) is None
    assert selectors.failed_attempts_in_window(b, acme["person"], window_seconds=3600) == 0
    assert not selectors.lockout_status(b, acme["person"]).failures_in_window
    assert not selectors.stored_images_for(b).exists()


def test_tenant_selectors_return_only_the_callers_rows(acme, globex):
    b = globex["org"]
    assert not tenant_selectors.api_keys_for(b).exists()
    assert tenant_selectors.api_key_by_id(b, acme["api_key"].pk) is None
    assert tenant_selectors.membership_for(acme["user"], b) is None
    assert tenant_selectors.role_for(acme["user"], b) is None
    assert not tenant_selectors.members_of(b).exists()
    assert list(tenant_selectors.organizations_for_user(acme["user"])) == [acme["org"]]
    assert tenant_selectors.policy_for(b).organization == b


def test_person_services_refuse_another_organizations_person(acme, globex):
    b, person = globex["org"], acme["person"]
    with pytest.raises(ObjectNotInOrganization):
        services.update_person(b, person, display_name="Mallory")
    with pytest.raises(ObjectNotInOrganization):
        services.deactivate_person(b, person)
    with pytest.raises(ObjectNotInOrganization):
        services.erase_person(b, person)
    with pytest.raises(ObjectNotInOrganization):
        services.delete_templates(b, person)
    data = services.TemplateData("dlib_resnet_v1", "v1", "full", acme["vector"], sha("evil"))
    with pytest.raises(ObjectNotInOrganization):
        services.store_templates(b, person, [data])
    with pytest.raises(ObjectNotInOrganization):
        services.keep_image(b, data=b"jpeg", purpose="enrollment", person=person)

    person.refresh_from_db()
    assert (person.display_name, person.active, person.erased_at) == ("Alice Acme", True, None)
    assert FaceTemplate.objects.filter(person=person).count() == 1


def test_audit_and_key_services_refuse_another_organizations_objects(acme, globex):
    b = globex["org"]
    with pytest.raises(ObjectNotInOrganization):
        services.record_attempt(b, mode="verify", decision="accept", claimed_person=acme["person"])
    with pytest.raises(ObjectNotInOrganization):
        services.record_attempt(b, mode="identify", decision="accept", matched_person=acme["person"])
    with pytest.raises(ObjectNotInOrganization):
        services.record_attempt(b, mode="verify", decision="reject", api_key=acme["api_key"])
    with pytest.raises(ObjectNotInOrganization):
        services.keep_image(b, data=b"jpeg", purpose="probe", attempt=acme["attempt"])
    with pytest.raises(ObjectNotInOrganization):
        tenant_services.revoke_api_key(b, acme["api_key"])
    with pytest.raises(ObjectNotInOrganization):
        tenant_services.remove_membership(b, acme["membership"])

    assert not VerificationAttempt.objects.filter(organization=b).exists()
    assert ApiKey.objects.get(pk=acme["api_key"].pk).revoked_at is None
    assert Membership.objects.filter(pk=acme["membership"].pk).exists()


def test_the_database_pins_templates_and_audit_rows_to_their_persons_organization(acme, globex):
    """Composite foreign keys: even code that skips the services cannot mix organizations."""
    b, person = globex["org"], acme["person"]
    with pytest.raises(IntegrityError), transaction.atomic():
        FaceTemplate.objects.create(
            organization=b, person=person, model_name="dlib_resnet_v1", model_version="v1",
            embedding=acme["vector"], dim=128, source_sha256=sha("x"),
        )  # fmt: skip
    with pytest.raises(IntegrityError), transaction.atomic():
        Person.objects.filter(pk=person.pk).update(organization=b)


def test_the_same_external_id_may_exist_in_two_organizations(acme, globex, make_person):
    twin = make_person(globex["org"], external_id="E-1")
    assert selectors.person_by_id_or_external_id(globex["org"], "E-1") == twin
    assert selectors.person_by_id_or_external_id(acme["org"], "E-1") == acme["person"]
