from pathlib import Path

import pytest
from django.core.exceptions import ValidationError

from faceid import audit, selectors, services
from faceid.models import FaceTemplate, StoredImage, VerificationAttempt
from tenants.services import update_policy


def test_create_person_strips_and_requires_an_external_id(org):
    person = services.create_person(org, external_id="  E-1 ", display_name=" Ann ")
    assert (person.external_id, person.display_name, person.active) == ("E-1", "Ann", True)
    with pytest.raises(ValidationError):
        services.create_person(org, external_id="   ")


def test_external_ids_are_unique_within_an_organization(org, make_person):
    make_person(org, external_id="E-1")
    with pytest.raises(ValidationError):
        make_person(org, external_id="E-1")


def test_update_and_deactivate_person(org, make_person):
    person = make_person(org, external_id="E-1")
    services.update_person(org, person, display_name="New Name", external_id="E-2")
    services.deactivate_person(org, person)
    person.refresh_from_db()
    assert (person.external_id, person.display_name, person.active) == ("E-2", "New Name", False)
    services.update_person(org, person, active=True)
    assert person.active


def test_persons_for_searches_and_filters(org, make_person):
    ann = make_person(org, external_id="E-1", display_name="Ann Smith")
    bob = make_person(org, external_id="E-2", display_name="Bob Jones")
    services.deactivate_person(org, bob)
    gone = make_person(org, external_id="E-3", display_name="Gone")
    services.erase_person(org, gone)

    assert list(selectors.persons_for(org)) == [ann, bob]
    assert list(selectors.persons_for(org, search="smith")) == [ann]
    assert list(selectors.persons_for(org, search="e-2")) == [bob]
    assert list(selectors.persons_for(org, active=True)) == [ann]
    assert list(selectors.persons_for(org, include_erased=True)) == [ann, bob, gone]


def test_person_lookup_prefers_the_external_id_then_the_id(org, make_person):
    first = make_person(org, external_id="E-1")
    numeric = make_person(org, external_id=str(first.pk))  # an external id that looks like an id
    assert selectors.person_by_id_or_external_id(org, "E-1") == first
    assert selectors.person_by_id_or_external_id(org, str(first.pk)) == numeric
    # an id that is nobody's external id still finds the person by id
    assert selectors.person_by_id_or_external_id(org, numeric.pk) == numeric
    assert selectors.person_by_id_or_external_id(org, "nobody") is None
    assert selectors.person_by_id_or_external_id(org, "") is None
    assert selectors.person_by_id_or_external_id(org, None) is None


def test_erase_person_removes_biometrics_and_keeps_the_audit_rows(
    org, make_person, make_template, record, media_root, django_capture_on_commit_callbacks
):
    update_policy(org, keep_images=True)
    person = make_person(org, external_id="E-1", display_name="Ann Smith")
    make_template(org, person, variant="full")
    make_template(org, person, variant="masked_synthetic")
    enrollment = services.keep_image(
        org, data=b"enrollment-jpeg", purpose="enrollment", filename="a.jpg", person=person
    )
    attempts = [record(org, claimed_person=person), record(org, decision="accept", claimed_person=person)]
    probe = services.keep_image(org, data=b"probe-jpeg", purpose="probe", attempt=attempts[0])
    files = [Path(media_root) / enrollment.file.name, Path(media_root) / probe.file.name]
    assert all(f.exists() for f in files)
    before = list(VerificationAttempt.objects.filter(organization=org).order_by("seq").values())

    with django_capture_on_commit_callbacks(execute=True):
        services.erase_person(org, person)

    person.refresh_from_db()
    assert person.display_name == "" and not person.active and person.erased_at is not None
    assert person.external_id == "E-1"  # the tombstone still resolves the audit rows
    assert not FaceTemplate.objects.filter(person=person).exists()
    assert not StoredImage.objects.filter(organization=org).exists()
    assert not any(f.exists() for f in files)
    after = list(VerificationAttempt.objects.filter(organization=org).order_by("seq").values())
    assert after[: len(before)] == before  # untouched; the erasure itself is audited after them
    assert [row["action"] for row in after[len(before) :]] == ["person_erase"]
    assert audit.verify_chain(org).ok


def test_an_erased_person_cannot_be_changed_or_enrolled_but_the_id_can_be_reused(
    org, make_person, make_template
):
    person = make_person(org, external_id="E-1")
    services.erase_person(org, person)
    services.erase_person(org, person)  # idempotent

    with pytest.raises(ValidationError):
        services.update_person(org, person, display_name="Back")
    with pytest.raises(ValidationError):
        make_template(org, person)

    again = make_person(org, external_id="E-1")
    assert selectors.person_by_id_or_external_id(org, "E-1") == again
    assert selectors.person_by_id_or_external_id(org, "E-1", include_erased=True) == again


def test_templates_are_stored_only_for_active_persons(org, make_person, make_template):
    person = make_person(org)
    services.deactivate_person(org, person)
    with pytest.raises(ValidationError):
        make_template(org, person)


def test_delete_templates_of_one_model(org, make_person, make_template):
    person = make_person(org)
    make_template(org, person, model_name="dlib_resnet_v1")
    make_template(org, person, model_name="iresnet50")
    assert services.delete_templates(org, person, model_name="iresnet50") == 1
    assert list(selectors.templates_for_person(org, person).values_list("model_name", flat=True)) == [
        "dlib_resnet_v1"
    ]
