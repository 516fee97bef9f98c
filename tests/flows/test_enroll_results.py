"""Enroll stores the templates of every usable photo and says why the others were refused."""

from __future__ import annotations

import pytest

from faceid import selectors, services
from faceid.flows import FlowError, prepare_enroll
from faceid.flows.enroll import finish_enroll
from inference.variants import VARIANT_CUTOUT, VARIANT_FULL
from tests.flows.builders import frame, images, output

pytestmark = pytest.mark.django_db


def test_usable_photos_are_stored_and_refused_ones_explained(caller, gallery, attempts):
    person = services.create_person(caller.organization, external_id="dave")
    vectors = {VARIANT_FULL: [gallery.probe_vector()], VARIANT_CUTOUT: [gallery.probe_vector()]}
    prepared = prepare_enroll(caller, person=person, images=images(2))
    result = finish_enroll(prepared.call, output(frame(vectors), frame(refusal="too_blurred")))

    assert result.status == 201 and result.stored == 1 and result.reason is None
    good, blurred = result.photos
    assert good.stored and {t.variant for t in good.templates} == {VARIANT_CUTOUT, VARIANT_FULL}
    assert not blurred.stored and blurred.reason == "too_blurred" and blurred.detail.startswith("Too blurred")
    assert selectors.templates_for_person(caller.organization, person).count() == 2
    assert attempts() == []  # enrollment is not a verify/identify attempt


def test_nothing_stored_is_a_422_with_the_first_refusal(caller):
    person = services.create_person(caller.organization, external_id="erin")
    prepared = prepare_enroll(caller, person=person, images=images(1))
    result = finish_enroll(prepared.call, output(frame(refusal="masked", masked=True)))
    assert result.status == 422 and result.stored == 0 and result.reason == "masked"


def test_a_person_erased_while_the_pipeline_ran_gets_nothing_stored(caller, gallery):
    person = services.create_person(caller.organization, external_id="frank")
    prepared = prepare_enroll(caller, person=person, images=images(1))
    services.erase_person(caller.organization, person)
    with pytest.raises(FlowError) as refused:
        finish_enroll(prepared.call, output(frame({VARIANT_FULL: [gallery.probe_vector()]})))
    assert refused.value.status == 404
