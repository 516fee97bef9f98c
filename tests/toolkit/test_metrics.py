"""Verification metrics of the evaluation: k-fold accuracy, ROC/AUC, EER and TAR@FAR."""

import numpy as np
import pytest

from toolkit.metrics import (
    auc,
    best_threshold,
    equal_error_rate,
    kfold_accuracy,
    roc_curve,
    tar_at_far,
    verification_report,
)


def synthetic(n_per_side=3000, folds=10, seed=0, gap=0.5):
    rng = np.random.default_rng(seed)
    labels = np.r_[np.ones(n_per_side, bool), np.zeros(n_per_side, bool)]
    scores = np.r_[rng.normal(0.3 + gap, 0.1, n_per_side), rng.normal(0.3, 0.1, n_per_side)]
    fold_ids = np.r_[np.arange(n_per_side) % folds, np.arange(n_per_side) % folds]
    return scores, labels, fold_ids


def test_best_threshold_separates_perfectly_separable_scores():
    threshold, accuracy = best_threshold([0.1, 0.2, 0.8, 0.9], [False, False, True, True])
    assert accuracy == 1.0
    assert 0.2 < threshold < 0.8
    assert threshold == pytest.approx(0.5)


def test_best_threshold_ignores_nan_and_handles_all_one_class():
    threshold, accuracy = best_threshold([0.4, float("nan"), 0.6], [True, True, True])
    assert accuracy == 1.0 and threshold <= 0.4


def test_kfold_threshold_comes_from_the_other_folds():
    # Fold 0 alone would pick a threshold near 0.45; the other folds agree on ~0.75, which
    # misclassifies fold 0's same pair at 0.6.
    scores = [0.6, 0.3, 0.9, 0.6, 0.9, 0.6]
    labels = [True, False, True, False, True, False]
    folds = [0, 0, 1, 1, 2, 2]
    result = kfold_accuracy(scores, labels, folds)
    assert result["fold_accuracies"][0] == 0.5
    assert result["fold_accuracies"][1] == result["fold_accuracies"][2] == 1.0
    assert result["accuracy"] == pytest.approx(2.5 / 3)
    assert result["fold_thresholds"][0] == pytest.approx(0.75)
    assert result["threshold_on_test"] is False


def test_pairs_without_a_score_count_as_errors():
    scores = [0.9, float("nan"), 0.1, float("nan")]
    labels = [True, True, False, False]
    result = kfold_accuracy(scores, labels, [0, 0, 0, 0])
    assert result["accuracy"] == 0.5  # both NaN pairs wrong, even the different-person one
    assert result["threshold_on_test"] is True


def test_kfold_accuracy_on_gaussian_scores_is_near_the_bayes_rate():
    scores, labels, folds = synthetic(gap=0.4)
    result = kfold_accuracy(scores, labels, folds)
    # Optimal threshold at 0.5: error = P(N(0,1) > 2) = 2.28%
    assert result["accuracy"] == pytest.approx(1 - 0.0228, abs=0.006)
    assert len(result["fold_accuracies"]) == 10
    assert 0.45 < result["threshold"] < 0.55


def test_auc_matches_pairwise_count_with_ties():
    rng = np.random.default_rng(1)
    scores = np.round(rng.normal(size=300), 1)  # many ties
    labels = rng.random(300) < 0.4
    g, i = scores[labels][:, None], scores[~labels][None, :]
    expected = (g > i).mean() + 0.5 * (g == i).mean()
    assert auc(scores, labels) == pytest.approx(expected, abs=1e-12)


def test_roc_curve_runs_from_origin_to_one_and_never_decreases():
    scores, labels, _ = synthetic(500)
    scores[:10] = np.nan  # lost faces are rejected at every threshold
    fpr, tpr, thresholds = roc_curve(scores, labels)
    assert (fpr[0], tpr[0]) == (0.0, 0.0)
    assert fpr[-1] == 1.0 and tpr[-1] == pytest.approx(490 / 500)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert np.all(np.diff(thresholds) < 0)


def test_tar_at_far_uses_the_exact_threshold_for_the_far():
    genuine = np.array([0.5, 0.95, 0.995, 0.999])
    impostors = np.arange(1000) / 1000.0
    scores = np.r_[genuine, impostors]
    labels = np.r_[np.ones(4, bool), np.zeros(1000, bool)]
    tar, threshold = tar_at_far(scores, labels, 0.01)
    assert tar == 0.5  # 0.995 and 0.999 pass a threshold just above 0.989 (10 impostors do)
    assert 0.989 < threshold <= 0.990
    tar, threshold = tar_at_far(scores, labels, 0.001)
    assert tar == 0.25  # one impostor (0.999) may pass: the threshold is just above 0.998
    assert 0.998 < threshold <= 0.999


def test_pairs_without_a_score_are_rejected_in_tar_at_far():
    impostors = np.arange(1000) / 1000.0
    scores = np.r_[[0.999, np.nan], impostors, [np.nan] * 10]
    labels = np.r_[[True, True], np.zeros(1010, bool)]
    tar, threshold = tar_at_far(scores, labels, 0.01)
    assert tar == 0.5  # the genuine pair without a score is a false reject
    assert 0.989 < threshold <= 0.990  # NaN impostors count in N (1010: 10 may pass) and never pass


def test_equal_error_rate_of_symmetric_scores():
    scores, labels, _ = synthetic(gap=0.2)
    # Symmetric Gaussians: EER at the midpoint, P(N(0,1) > 1) = 15.9%
    assert equal_error_rate(scores, labels) == pytest.approx(0.1587, abs=0.012)


def test_verification_report_keys():
    scores, labels, folds = synthetic(300)
    report = verification_report(scores, labels, folds)
    for key in ("accuracy", "accuracy_std", "auc", "eer", "tar_at_far", "threshold", "far_thresholds", "roc"):
        assert key in report
    assert set(report["tar_at_far"]) == {"0.01", "0.001"}
    assert len(report["roc"]["far"]) == len(report["roc"]["tar"]) <= 200


def test_kfold_accuracy_with_a_threshold_per_group():
    # Group 1 (masked probes, say) scores lower across the board: one joint threshold
    # fails it, a threshold per group chosen on the other folds does not.
    rng = np.random.default_rng(3)
    n = 400
    group = np.arange(n) % 4 == 0
    labels = rng.random(n) < 0.5
    scores = np.where(labels, 0.85, 0.65) + rng.uniform(-0.05, 0.05, n) - np.where(group, 0.3, 0.0)
    folds = np.arange(n) % 10
    joint = kfold_accuracy(scores, labels, folds)
    split = kfold_accuracy(scores, labels, folds, groups=group)
    assert split["accuracy"] == 1.0
    assert joint["accuracy"] < 0.95
