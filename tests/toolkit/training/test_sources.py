"""Training data from an image folder: held-out identities become validation pairs that know
their identities, so validation can score every cross-identity pair."""

import cv2
import numpy as np
import torch

from tests.toolkit.training.helpers import tiny_backbone
from toolkit.training.config import TrainConfig
from toolkit.training.sources import load_training_data
from toolkit.training.validation import validate


def test_validation_pairs_from_an_image_folder_carry_their_identities(tmp_path):
    rng = np.random.default_rng(0)
    for person in range(30):
        folder = tmp_path / f"person_{person:02d}"
        folder.mkdir()
        for photo in range(3):
            cv2.imwrite(str(folder / f"{photo}.png"), rng.integers(0, 256, (40, 40, 3), dtype=np.uint8))
    config = TrainConfig(data=str(tmp_path), data_kind="folder", val_fraction=0.3, val_pairs=20, batch_size=8)
    backbone = tiny_backbone()

    data = load_training_data(config, backbone)

    pairs = data.validation
    assert pairs is not None and pairs.same.any() and (~pairs.same).any()
    assert np.array_equal(pairs.same, pairs.first_identity == pairs.second_identity)
    metrics = validate(backbone, pairs, torch.device("cpu"), select_on="tar")
    assert metrics["impostor_pairs_all"] > (~pairs.same).sum()
