"""Verification on held-out identities during training: what picks the best checkpoint.

Unmasked pairs, and the same pairs with a synthetic mask on the second face (a masked probe
against a clean enrolment). Scores are cosines of flip-averaged embeddings, as the runtime makes
them; accuracy takes its threshold from the other nine folds of the pairs (LFW's protocol).

Accuracy sits near the equal-error point, far from where the product works (FAR 1e-3 and below),
and a few hundred impostor pairs cannot show that tail. Where the pairs know their identities,
every (first, second) combination of two different people is an impostor pair too (about P^2 of
them from the same embeddings, no extra network work), and `tar_at_far_1e-3_all` is the TAR of the
genuine pairs at the threshold those impostors give; `select_on="tar"` picks checkpoints on it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from toolkit.metrics import kfold_accuracy, tar_at_far
from toolkit.training.backbones import Backbone
from toolkit.training.dataset import VerificationPairs

FOLDS = 10


@torch.no_grad()
def embed(backbone: Backbone, chips: np.ndarray, device: torch.device, batch_size: int = 128) -> np.ndarray:
    """L2-normalised, flip-averaged embeddings of uint8 chips (evaluation mode, restored after)."""
    module = backbone.module
    was_training = module.training
    module.eval()
    out = []
    try:
        for start in range(0, len(chips), batch_size):
            pixels = torch.from_numpy(np.ascontiguousarray(chips[start : start + batch_size])).to(device)
            x = backbone.preprocess(pixels)
            both = module(torch.cat([x, torch.flip(x, dims=[3])]))
            half = len(x)
            out.append(F.normalize(both[:half].float() + both[half:].float()).cpu().numpy())
    finally:
        module.train(was_training)
    return np.concatenate(out) if out else np.zeros((0, backbone.dim), np.float32)


ALL_PAIRS_FAR = 1e-3
SELECT_ON = ("accuracy", "tar")


def summarise(scores: np.ndarray, same: np.ndarray) -> dict[str, float]:
    folds = np.arange(len(same)) % FOLDS
    return {
        "accuracy": kfold_accuracy(scores, same, folds)["accuracy"],
        "tar_at_far_1e-2": tar_at_far(scores, same, 1e-2)[0],
        "genuine_mean": float(scores[same].mean()),
        "impostor_mean": float(scores[~same].mean()),
    }


def all_pairs_impostors(
    first: np.ndarray, second: np.ndarray, first_identity: np.ndarray, second_identity: np.ndarray
) -> np.ndarray:
    """Cosines of every (first, second) combination of two different identities."""
    different = np.asarray(first_identity)[:, None] != np.asarray(second_identity)[None, :]
    return (first @ second.T)[different]


def validate(
    backbone: Backbone, pairs: VerificationPairs, device: torch.device, select_on: str = "accuracy"
) -> dict[str, float]:
    """Flat metrics, e.g. unmasked_accuracy, masked_tar_at_far_1e-3_all, and `score`, which picks
    the best checkpoint: the mean of the unmasked and masked accuracies (select_on="accuracy") or
    of their all-pairs TARs at FAR 1e-3 (select_on="tar", which needs the pairs' identities)."""
    if select_on not in SELECT_ON:
        raise ValueError(f"select_on must be one of {SELECT_ON}, not {select_on!r}")
    identities = pairs.first_identity is not None and pairs.second_identity is not None
    if select_on == "tar" and not identities:
        raise ValueError('select_on="tar" needs the validation pairs\' identities')
    first = embed(backbone, pairs.first, device)
    result: dict[str, float] = {}
    for kind, chips in (("unmasked", pairs.second), ("masked", pairs.second_masked)):
        second = embed(backbone, chips, device)
        scores = np.sum(first * second, axis=1)
        for name, value in summarise(scores, pairs.same).items():
            result[f"{kind}_{name}"] = value
        if identities:
            impostors = all_pairs_impostors(first, second, pairs.first_identity, pairs.second_identity)
            genuine = scores[pairs.same]
            labels = np.r_[np.ones(len(genuine), bool), np.zeros(len(impostors), bool)]
            tar, _ = tar_at_far(np.r_[genuine, impostors], labels, ALL_PAIRS_FAR)
            result[f"{kind}_tar_at_far_1e-3_all"] = tar
            result["impostor_pairs_all"] = float(len(impostors))
    key = "accuracy" if select_on == "accuracy" else "tar_at_far_1e-3_all"
    result["score"] = (result[f"unmasked_{key}"] + result[f"masked_{key}"]) / 2
    return result
