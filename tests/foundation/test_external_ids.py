"""The unique-external-id rule lives in faceid.services (the API answers it 409, the console shows it)."""

from __future__ import annotations

from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError

from faceid import services
from faceid.models import Person


def duplicate_error(excinfo: pytest.ExceptionInfo[ValidationError]) -> ValidationError:
    (error,) = excinfo.value.error_dict["external_id"]
    assert error.code == services.DUPLICATE_EXTERNAL_ID
    return error


def test_creating_a_second_live_person_with_an_external_id_is_refused_as_a_duplicate(org, make_person):
    make_person(org, external_id="E-1")
    with pytest.raises(ValidationError) as excinfo:
        services.create_person(org, external_id="  E-1 ")
    assert duplicate_error(excinfo).messages == ["A person with external id 'E-1' exists."]
    assert Person.objects.filter(organization=org, external_id="E-1").count() == 1


def test_renaming_a_person_to_another_live_persons_external_id_is_refused(org, make_person):
    first = make_person(org, external_id="E-1")
    make_person(org, external_id="E-2")
    with pytest.raises(ValidationError) as excinfo:
        services.update_person(org, first, external_id="E-2")
    duplicate_error(excinfo)
    first.refresh_from_db()
    assert first.external_id == "E-1"


def test_keeping_ones_own_external_id_is_no_duplicate(org, make_person):
    person = make_person(org, external_id="E-1")
    services.update_person(org, person, external_id=" E-1", display_name="Renamed")
    assert (person.external_id, person.display_name) == ("E-1", "Renamed")


def test_an_erased_persons_external_id_and_another_organizations_are_free(org, other_org, make_person):
    services.erase_person(org, make_person(org, external_id="E-1"))
    make_person(org, external_id="E-1")
    make_person(other_org, external_id="E-1")
    assert Person.objects.filter(external_id="E-1").count() == 3


def test_a_concurrent_duplicate_caught_by_the_database_is_the_same_refusal(org, make_person):
    make_person(org, external_id="E-1")
    # As if another request created E-1 between the check and the insert.
    with mock.patch.object(services, "_ensure_external_id_free"), mock.patch.object(Person, "full_clean"):
        with pytest.raises(ValidationError) as excinfo:
            services.create_person(org, external_id="E-1")
    assert isinstance(excinfo.value.__cause__, IntegrityError)
    duplicate_error(excinfo)
