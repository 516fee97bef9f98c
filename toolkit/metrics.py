"""Verification metrics of the evaluation: k-fold accuracy, ROC, AUC, EER and TAR at a FAR.

The threshold for a FAR comes from `inference.thresholds`, the one implementation the product's
calibration uses too; here it is the exact one (no grid), as the benchmark figures were measured.
Conventions:
- a pair is accepted ("same person") when its similarity is >= the threshold;
- a pair without a score (NaN: no face in one of its images) is rejected by verification,
  so in the ROC, AUC and TAR@FAR it is a false reject when genuine and a true reject when not;
  in the k-fold accuracy it is always counted as an error (it has no decision to be right about).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from inference.thresholds import tar_at, threshold_for_far

DEFAULT_FARS = (0.01, 0.001)


def _as_arrays(scores: Sequence[float], labels: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=bool).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"scores and labels differ in length: {s.shape[0]} vs {y.shape[0]}")
    return s, y


def _rejected_as_lowest(scores: np.ndarray) -> np.ndarray:
    return np.where(np.isnan(scores), -np.inf, scores)


def best_threshold(scores: Sequence[float], labels: Sequence[bool]) -> tuple[float, float]:
    """The threshold that maximises accuracy on these pairs, and that accuracy.

    Exact: every cut between two consecutive distinct scores is tried (the threshold is the
    midpoint). Ties in accuracy go to the cut nearest the middle of the tied range, which is
    the steadiest choice when applied to other pairs. NaN scores are ignored here.
    """
    s, y = _as_arrays(scores, labels)
    keep = ~np.isnan(s)
    s, y = s[keep], y[keep]
    if s.size == 0:
        return 0.0, 0.0
    order = np.argsort(s, kind="mergesort")
    s, y = s[order], y[order]
    distinct = np.r_[np.flatnonzero(np.diff(s) > 0), s.size - 1]  # last index of each distinct value
    # Cutting after distinct[k] rejects s[:distinct[k]+1]; cut "-1" rejects nothing.
    negatives_below = np.r_[0, np.cumsum(~y)[distinct]]
    positives_above = np.r_[y.sum(), y.sum() - np.cumsum(y)[distinct]]
    correct = negatives_below + positives_above
    best = correct.max()
    candidates = np.flatnonzero(correct == best)
    pick = candidates[len(candidates) // 2]
    values = s[distinct]
    if pick == 0:
        threshold = values[0] - 1e-6
    elif pick == len(values):
        threshold = values[-1] + 1e-6
    else:
        threshold = (values[pick - 1] + values[pick]) / 2.0
    return float(threshold), float(best / s.size)


def kfold_accuracy(
    scores: Sequence[float],
    labels: Sequence[bool],
    folds: Sequence[int],
    groups: Sequence[object] | None = None,
) -> dict:
    """Accuracy per fold with the threshold chosen on the other folds (LFW View-2 protocol).

    With a single fold there are no other folds: the threshold is chosen on the fold itself
    (an optimistic figure; the result says so with "threshold_on_test": true). With `groups`
    (e.g. the probe's mask decision), each group gets its own threshold, chosen on that
    group's pairs in the other folds (the joint one where the other folds have none).
    """
    s, y = _as_arrays(scores, labels)
    f = np.asarray(folds).reshape(-1)
    if f.shape != s.shape:
        raise ValueError("folds and scores differ in length")
    g = np.zeros(s.shape, dtype=int) if groups is None else np.asarray(groups).reshape(-1)
    fold_ids = sorted(set(f.tolist()))
    accuracies, thresholds = [], []
    for fold in fold_ids:
        test = f == fold
        train = ~test if len(fold_ids) > 1 else test
        threshold, _ = best_threshold(s[train], y[train])
        correct = 0
        for group in set(g[test].tolist()):
            group_train = train & (g == group) & ~np.isnan(s)
            cut = best_threshold(s[group_train], y[group_train])[0] if group_train.any() else threshold
            valid = test & (g == group) & ~np.isnan(s)
            correct += int(((s[valid] >= cut) == y[valid]).sum())
        accuracies.append(float(correct / max(test.sum(), 1)))
        thresholds.append(threshold)
    return {
        "accuracy": float(np.mean(accuracies)),
        "accuracy_std": float(np.std(accuracies)),
        "fold_accuracies": accuracies,
        "fold_thresholds": thresholds,
        "threshold": float(np.mean(thresholds)),
        "threshold_on_test": len(fold_ids) == 1,
    }


def roc_curve(scores: Sequence[float], labels: Sequence[bool]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False accept rates, true accept rates and the thresholds giving them (decreasing thresholds).

    The first point is (0, 0) at threshold +inf; NaN scores are rejected at every threshold.
    """
    s, y = _as_arrays(scores, labels)
    s = _rejected_as_lowest(s)
    positives, negatives = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    finite = np.isfinite(s)
    s, y = s[finite], y[finite]
    last = np.r_[np.flatnonzero(np.diff(s) < 0), s.size - 1] if s.size else np.array([], dtype=int)
    tpr = np.r_[0.0, np.cumsum(y)[last] / positives]
    fpr = np.r_[0.0, np.cumsum(~y)[last] / negatives]
    thresholds = np.r_[np.inf, s[last]]
    return fpr, tpr, thresholds


def auc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC: the probability a genuine pair outscores an impostor (ties count half)."""
    s, y = _as_arrays(scores, labels)
    s = _rejected_as_lowest(s)
    positives, negatives = int(y.sum()), int((~y).sum())
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(s.size, dtype=np.float64)
    sorted_s = s[order]
    # Average ranks over ties (1-based).
    starts = np.r_[0, np.flatnonzero(sorted_s[1:] != sorted_s[:-1]) + 1]  # not diff: -inf - -inf is NaN
    ends = np.r_[starts[1:], s.size]
    for start, end in zip(starts, ends, strict=True):
        ranks[order[start:end]] = (start + end + 1) / 2.0
    u = ranks[y].sum() - positives * (positives + 1) / 2.0
    return float(u / (positives * negatives))


def equal_error_rate(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """The error rate where the false accept and false reject rates cross (linear interpolation)."""
    fpr, tpr, _ = roc_curve(scores, labels)
    fnr = 1.0 - tpr
    index = int(np.flatnonzero(fpr >= fnr)[0]) if np.any(fpr >= fnr) else len(fpr) - 1
    if index == 0:
        return float(fpr[0])
    x0, x1 = fpr[index - 1] - fnr[index - 1], fpr[index] - fnr[index]
    w = x0 / (x0 - x1) if x1 != x0 else 0.0
    return float(fpr[index - 1] + w * (fpr[index] - fpr[index - 1]))


def tar_at_far(scores: Sequence[float], labels: Sequence[bool], far: float) -> tuple[float, float]:
    """(TAR, threshold) at the lowest threshold whose FAR is at most `far` (exact, not on a grid).

    With k = floor(far * N) false accepts allowed, the threshold is the smallest float above the
    (k+1)-th highest impostor score; a pair without a score is never accepted.
    """
    s, y = _as_arrays(scores, labels)
    s = _rejected_as_lowest(s)
    threshold = threshold_for_far(s[~y], far, decimals=None)
    genuine = s[y]
    return (tar_at(genuine, threshold) if genuine.size else float("nan")), threshold


def downsample_roc(fpr: np.ndarray, tpr: np.ndarray, thresholds: np.ndarray, points: int = 200) -> dict:
    """A JSON-sized ROC: points spread evenly in log10(FAR) from 1e-4 up, plus the ends."""
    if fpr.size <= points:
        keep = np.arange(fpr.size)
    else:
        targets = np.r_[0.0, np.logspace(-4, 0, points - 1)]
        keep = np.unique(np.clip(np.searchsorted(fpr, targets, side="right") - 1, 0, fpr.size - 1))
        keep = np.unique(np.r_[keep, fpr.size - 1])
    finite = np.where(np.isfinite(thresholds[keep]), thresholds[keep], np.nan)
    return {
        "far": [round(float(v), 6) for v in fpr[keep]],
        "tar": [round(float(v), 6) for v in tpr[keep]],
        "threshold": [None if np.isnan(v) else round(float(v), 6) for v in finite],
    }


def verification_report(
    scores: Sequence[float],
    labels: Sequence[bool],
    folds: Sequence[int],
    fars: Sequence[float] = DEFAULT_FARS,
) -> dict:
    """Everything the evaluation prints: k-fold accuracy, AUC, EER, TAR@FAR (with thresholds), ROC."""
    s, y = _as_arrays(scores, labels)
    report = kfold_accuracy(s, y, folds)
    report["best_threshold_all_pairs"], report["best_accuracy_all_pairs"] = best_threshold(s, y)
    report["auc"] = auc(s, y)
    report["eer"] = equal_error_rate(s, y)
    report["tar_at_far"], report["far_thresholds"] = {}, {}
    for far in fars:
        tar, threshold = tar_at_far(s, y, far)
        report["tar_at_far"][str(far)] = tar
        report["far_thresholds"][str(far)] = threshold if np.isfinite(threshold) else None
    fpr, tpr, thresholds = roc_curve(s, y)
    report["roc"] = downsample_roc(fpr, tpr, thresholds)
    return report
