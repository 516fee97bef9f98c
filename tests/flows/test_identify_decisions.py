"""Identify (1:N) ranks candidates at or above the threshold; an unknown face is a 200 no_match."""

from __future__ import annotations

import numpy as np
import pytest

from faceid.flows import prepare_identify
from faceid.flows.identify import finish_identify
from inference.variants import VARIANT_FULL
from tests.flows.builders import DIM, frame, images, output, unit

pytestmark = pytest.mark.django_db


def identify(caller, *frames, top_k: int = 5):
    prepared = prepare_identify(caller, images=images(len(frames)), top_k=top_k)
    return finish_identify(prepared.call, output(*frames))


def test_candidates_above_the_threshold_are_ranked_best_first(caller, gallery, attempts):
    for name in ("alice", "bob", "carol"):
        gallery.enroll(name)
    probe = frame({VARIANT_FULL: [gallery.probe("bob", 0.97)]})
    result = identify(caller, probe)
    assert [m.external_id for m in result.matches] == ["bob"]
    assert result.decision == "accept" and result.matches[0].similarity == pytest.approx(0.97, abs=1e-4)
    rows = attempts()
    assert len(rows) == 1 and rows[0].matched_person_id == gallery.people["bob"].person.pk


def test_each_person_counts_once_with_their_best_frame(caller, gallery):
    gallery.enroll("alice")
    gallery.enroll("bob")
    # Above identify's open-set threshold for two persons (FPIR 1%: FAR 0.5% per comparison).
    first = frame({VARIANT_FULL: [gallery.probe("alice", 0.975), gallery.probe("bob", 0.97)]})
    second = frame({VARIANT_FULL: [gallery.probe("alice", 0.99)]})
    result = identify(caller, first, second)
    assert [(m.external_id, round(m.similarity, 2)) for m in result.matches] == [
        ("alice", 0.99),
        ("bob", 0.97),
    ]
    assert [m.external_id for m in identify(caller, first, second, top_k=1).matches] == ["alice"]


def test_an_unknown_face_answers_no_match_with_the_best_score_audited(caller, gallery, attempts):
    gallery.enroll("alice")
    stranger = frame({VARIANT_FULL: [unit(np.random.default_rng(1).standard_normal(DIM))]})
    result = identify(caller, stranger)
    assert result.matches == () and result.decision == "no_match" and result.status == 200
    row = attempts()[0]
    assert row.decision == "no_match" and row.similarity is not None and row.similarity < 0.9
