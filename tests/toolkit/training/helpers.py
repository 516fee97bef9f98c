"""Small networks and faces for the training-loop tests (the loop takes any embedding network)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from inference.embedders.spec import InputConfig
from inference.templates import INTEL_128
from toolkit.paths import SHARED_DATA
from toolkit.training.backbones import Backbone
from toolkit.training.dataset import FaceArrays

LFW_IMAGES = SHARED_DATA / "lfw" / "images"
SIZE = 32


def tiny_backbone(seed: int = 0, *, batch_norm: bool = True, dim: int = 32) -> Backbone:
    """A three-layer CNN on 32 px chips: small enough to train for real within a test."""
    torch.manual_seed(seed)
    norm = (lambda c: nn.BatchNorm2d(c)) if batch_norm else (lambda c: nn.Identity())
    module = nn.Sequential(
        nn.Conv2d(3, 16, 3, 2, 1),
        norm(16),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, 2, 1),
        norm(32),
        nn.ReLU(),
        nn.Conv2d(32, 64, 3, 2, 1),
        norm(64),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(64, dim),
    )
    return Backbone("tiny", module, InputConfig(INTEL_128, mean=(127.5,) * 3, scale=(1 / 127.5,) * 3), dim)


def random_faces(n: int, classes: int, *, size: int = SIZE, seed: int = 0) -> FaceArrays:
    rng = np.random.default_rng(seed)
    chips = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    masked = rng.integers(0, 256, (n, 1, size, size, 3), dtype=np.uint8)
    return FaceArrays(chips, masked, np.arange(n) % classes, np.tile([size * 2 // 3, size], (n, 1)))


def lfw_faces(identities: int, per_identity: int) -> tuple[np.ndarray, np.ndarray]:
    """Centre crops of the LFW identities with the most photos (sorted by name), 32 px: (chips, labels)."""
    folders = sorted(p for p in LFW_IMAGES.iterdir() if p.is_dir())
    rich = [f for f in folders if len(list(f.glob("*.jpg"))) >= per_identity][:identities]
    chips, labels = [], []
    for label, folder in enumerate(rich):
        for path in sorted(folder.glob("*.jpg"))[:per_identity]:
            image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
            # LFW's 250 px photos are centred on the face: this box holds eyes to chin.
            chips.append(cv2.resize(image[70:180, 70:180], (SIZE, SIZE), interpolation=cv2.INTER_AREA))
            labels.append(label)
    return np.stack(chips), np.array(labels)


def shared_lfw_available() -> bool:
    return Path(LFW_IMAGES).is_dir()
