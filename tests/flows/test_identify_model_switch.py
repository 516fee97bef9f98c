"""Identify (1:N) during a model switch searches every serving model's gallery, each with the probe
embedded by that model and decided against that model's own thresholds (the old ones the switch
kept); the audit row names the model of the gallery that decided. Constructed pipeline outputs."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from faceid import services
from faceid.contracts import ModelFrames, PipelineOutput
from faceid.flows import prepare_identify
from faceid.flows.common import PolicySnapshot
from faceid.flows.identify import finish_identify
from faceid.flows.identify_thresholds import identify_thresholds
from faceid.model_switch import Serving, Thresholds
from inference.embedders import deployable_embedders, embedder_spec
from inference.variants import VARIANT_FULL
from tenants import services as tenant_services
from tests.flows.builders import DIM, MODEL, THRESHOLDS, at_similarity, frame, images, unit

pytestmark = pytest.mark.django_db

NEW_VERSION = "new-model-test-v1"


@pytest.fixture
def new_model() -> str:
    others = [name for name in deployable_embedders() if name != MODEL]
    if not others:
        pytest.skip("a switch needs a second deployable model; only dlib_resnet_v1 has weights here")
    return "sface" if "sface" in others else others[0]


def _new_templates(organization, person, model_name: str, rng) -> list[float]:
    vector = unit(rng.standard_normal(embedder_spec(model_name).dim))
    services.store_templates(
        organization,
        person,
        [
            services.TemplateData(
                model_name=model_name,
                model_version=NEW_VERSION,
                variant=VARIANT_FULL,
                embedding=vector,
                source_sha256=hashlib.sha256(f"new {person.pk}".encode()).hexdigest(),
                mask_probability=0.02,
            )
        ],
    )
    return vector


@pytest.fixture
def switched(organization, gallery, new_model):
    """alice and dave: old templates only (served by the old model); bob: both (the new one serves
    him); carol: enrolled after the switch, new templates only."""
    for name in ("alice", "bob", "dave"):
        gallery.enroll(name)
    tenant_services.update_policy(organization, embedding_model=new_model)
    carol = services.create_person(organization, external_id="carol", display_name="carol")
    new_vectors = {
        "bob": _new_templates(organization, gallery.people["bob"].person, new_model, gallery.rng),
        "carol": _new_templates(organization, carol, new_model, gallery.rng),
    }
    return new_vectors


def _identify(caller, new_model: str, new_vectors: list, old_vectors: list):
    prepared = prepare_identify(caller, images=images())
    assert prepared.request.models() == (new_model, MODEL)
    new_frames = (frame({VARIANT_FULL: new_vectors}),)
    old_frames = (frame({VARIANT_FULL: old_vectors}),)
    output = PipelineOutput(
        new_model, NEW_VERSION, "cpu", new_frames, also=(ModelFrames(MODEL, "test-v1", old_frames),)
    )
    return finish_identify(prepared.call, output)


def _random(dim: int, seed: int) -> list[float]:
    return unit(np.random.default_rng(seed).standard_normal(dim))


def test_without_a_switch_the_probe_is_embedded_with_the_policy_model_only(caller, gallery):
    gallery.enroll("alice")
    assert prepare_identify(caller, images=images()).request.models() == (MODEL,)


def test_a_person_served_only_by_the_old_model_is_found_with_the_old_thresholds(
    organization, caller, gallery, switched, new_model, attempts
):
    policy = organization.policy
    policy.refresh_from_db()
    new_dim = embedder_spec(new_model).dim
    old_probe = [
        gallery.probe("alice", 0.995),
        # bob's old templates are on their way out: the new model serves him, not the old gallery.
        gallery.probe("bob", 0.995),
        # Far above the new model's thresholds, below the old model's: the old ones decide here.
        gallery.probe("dave", 0.6),
    ]
    result = _identify(caller, new_model, [_random(new_dim, 1)], old_probe)

    assert [m.external_id for m in result.matches] == ["alice"]
    assert result.decision == "accept"
    # Four persons searched: alice and dave in the old gallery, bob and carol in the new one.
    assert result.candidates_searched == 4
    old_policy = Serving(MODEL, Thresholds(THRESHOLDS["threshold_unmasked"], THRESHOLDS["threshold_masked"]))
    expected = identify_thresholds(organization, old_policy.applied_to(PolicySnapshot.of(policy)), size=4)
    assert result.threshold == expected.threshold_unmasked >= THRESHOLDS["threshold_unmasked"]
    assert (result.model.name, result.model.version) == (MODEL, "test-v1")
    [row] = attempts()
    assert (row.model_name, row.model_version) == (MODEL, "test-v1")
    assert row.matched_person_id == gallery.people["alice"].person.pk
    assert f"galleries {new_model} (2), {MODEL} (2), decided by {MODEL}" in row.reason


def test_a_person_served_by_the_new_model_is_found_with_its_vectors_and_recorded_with_it(
    organization, caller, gallery, switched, new_model, attempts
):
    result = _identify(
        caller, new_model, [at_similarity(switched["carol"], 0.97, gallery.rng)], [_random(DIM, 2)]
    )

    assert [m.external_id for m in result.matches] == ["carol"]
    assert (result.model.name, result.model.version) == (new_model, NEW_VERSION)
    [row] = attempts()
    assert (row.model_name, row.model_version) == (new_model, NEW_VERSION)
    assert row.matched_person_id == result.matches[0].person


def test_candidates_of_both_galleries_are_ranked_by_their_margin_over_their_own_threshold(
    organization, caller, gallery, switched, new_model
):
    policy = organization.policy
    policy.refresh_from_db()
    new_threshold = identify_thresholds(organization, PolicySnapshot.of(policy), size=4).threshold_unmasked
    # carol a little above the new model's threshold, alice far above the old one's.
    carol = at_similarity(switched["carol"], min(new_threshold + 0.01, 0.999), gallery.rng)
    result = _identify(caller, new_model, [carol], [gallery.probe("alice", 0.9999)])

    assert [m.external_id for m in result.matches] == ["alice", "carol"]
    assert result.model.name == MODEL


def test_an_unknown_face_in_every_gallery_is_a_no_match_recorded_with_the_best_margin(
    caller, switched, new_model, attempts
):
    new_dim = embedder_spec(new_model).dim
    result = _identify(caller, new_model, [_random(new_dim, 3)], [_random(DIM, 4)])

    assert result.matches == () and result.decision == "no_match"
    [row] = attempts()
    assert row.decision == "no_match" and row.model_name in (new_model, MODEL)
