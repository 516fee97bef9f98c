"""Validation during training: all-pairs impostors from the held-out pairs' identities, and the
score that picks the best checkpoint."""

import numpy as np
import pytest
import torch

from tests.toolkit.training.helpers import random_faces, tiny_backbone
from toolkit.training.dataset import VerificationPairs
from toolkit.training.validation import all_pairs_impostors, validate

CPU = torch.device("cpu")


def _pairs(with_identities: bool = True) -> VerificationPairs:
    faces = random_faces(40, 5, seed=3)
    first, second = np.arange(0, 20), np.r_[np.arange(20, 30), np.arange(31, 41) % 40]
    ids = faces.labels
    return VerificationPairs(
        faces.clean[first],
        faces.clean[second],
        faces.masked[second, 0],
        ids[first] == ids[second],
        ids[first] if with_identities else None,
        ids[second] if with_identities else None,
    )


def test_all_pairs_impostors_are_every_combination_of_two_different_people():
    first = np.eye(3, dtype=np.float32)
    second = np.array([[1, 0, 0], [0, 0.6, 0.8], [0, 0.8, 0.6]], dtype=np.float32)

    impostors = all_pairs_impostors(first, second, np.array([7, 8, 9]), np.array([7, 9, 9]))

    # Row-major over (first, second), leaving out (7, 7), (9, 9) and (9, 9).
    expected = [
        first[i] @ second[j] for i in range(3) for j in range(3) if (i, j) not in {(0, 0), (2, 1), (2, 2)}
    ]
    np.testing.assert_allclose(impostors, expected)


def test_validation_scores_the_tail_on_all_pairs_and_selects_on_it():
    pairs = _pairs()
    metrics = validate(tiny_backbone(seed=1), pairs, CPU, select_on="tar")

    different = (pairs.first_identity[:, None] != pairs.second_identity[None, :]).sum()
    assert metrics["impostor_pairs_all"] == different > 10 * (~pairs.same).sum()
    for kind in ("unmasked", "masked"):
        assert 0.0 <= metrics[f"{kind}_tar_at_far_1e-3_all"] <= 1.0
    tars = metrics["unmasked_tar_at_far_1e-3_all"] + metrics["masked_tar_at_far_1e-3_all"]
    assert metrics["score"] == pytest.approx(tars / 2)


def test_accuracy_selection_needs_no_identities():
    metrics = validate(tiny_backbone(seed=1), _pairs(with_identities=False), CPU, select_on="accuracy")
    assert "unmasked_tar_at_far_1e-3_all" not in metrics
    assert metrics["score"] == pytest.approx((metrics["unmasked_accuracy"] + metrics["masked_accuracy"]) / 2)


def test_tar_selection_without_identities_or_an_unknown_criterion_is_refused():
    backbone = tiny_backbone(seed=1)
    with pytest.raises(ValueError, match="identities"):
        validate(backbone, _pairs(with_identities=False), CPU, select_on="tar")
    with pytest.raises(ValueError, match="select_on"):
        validate(backbone, _pairs(), CPU, select_on="loss")
