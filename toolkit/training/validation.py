"""Verification on held-out identities during training: what picks the best checkpoint.

Unmasked pairs, and the same pairs with a synthetic mask on the second face (a masked probe
against a clean enrolment). Scores are cosines of flip-averaged embeddings, as the runtime makes
them; accuracy takes its threshold from the other nine folds of the pairs (LFW's protocol).
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


def verification_scores(
    backbone: Backbone, pairs: VerificationPairs, device: torch.device
) -> dict[str, np.ndarray]:
    first = embed(backbone, pairs.first, device)
    return {
        "unmasked": np.sum(first * embed(backbone, pairs.second, device), axis=1),
        "masked": np.sum(first * embed(backbone, pairs.second_masked, device), axis=1),
    }


def summarise(scores: np.ndarray, same: np.ndarray) -> dict[str, float]:
    folds = np.arange(len(same)) % FOLDS
    return {
        "accuracy": kfold_accuracy(scores, same, folds)["accuracy"],
        "tar_at_far_1e-2": tar_at_far(scores, same, 1e-2)[0],
        "genuine_mean": float(scores[same].mean()),
        "impostor_mean": float(scores[~same].mean()),
    }


def validate(backbone: Backbone, pairs: VerificationPairs, device: torch.device) -> dict[str, float]:
    """Flat metrics, e.g. unmasked_accuracy, masked_tar_at_far_1e-2, and `score` (the mean of the
    two accuracies): the best checkpoint is the one with the highest score."""
    result: dict[str, float] = {}
    for kind, scores in verification_scores(backbone, pairs, device).items():
        for name, value in summarise(scores, pairs.same).items():
            result[f"{kind}_{name}"] = value
    result["score"] = (result["unmasked_accuracy"] + result["masked_accuracy"]) / 2
    return result
