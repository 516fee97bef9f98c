"""Augmentation of training chips, and the synthetic masks put on training faces without one.

Training adds masks to training faces without one (MaskTheFace overlays and the product's
procedural renderer) as extra positives; the held-out split never gets any.
"""

from __future__ import annotations

import sys

import cv2
import numpy as np
from tqdm import tqdm

from inference.align import DLIB_150, align_face
from inference.decode import ImageDecodeError, load_image
from inference.detect import DetectedFace
from inference.mask.render import render_synthetic_mask
from toolkit.mask_training.data import FaceSet
from toolkit.overlay import random_overlay


def augment(
    chip: np.ndarray, rng: np.random.Generator, *, low_res: float = 0.25, low_res_min: float = 0.25
) -> np.ndarray:
    """Flip, small affine, colour jitter, and sometimes low resolution, blur or noise (small faces).

    low_res: how often the chip is shrunk to a factor in [low_res_min, 0.7] and enlarged back.
    """
    height, width = chip.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), rng.uniform(-12, 12), rng.uniform(0.9, 1.1))
    matrix[:, 2] += rng.uniform(-0.06, 0.06, 2) * width
    out = cv2.warpAffine(
        chip, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    if rng.random() < 0.5:
        out = out[:, ::-1]
    f = out.astype(np.float32)
    f *= rng.uniform(0.65, 1.3)
    mean = f.mean()
    f = (f - mean) * rng.uniform(0.7, 1.3) + mean
    gray = f @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    saturation = 0.0 if rng.random() < 0.1 else rng.uniform(0.6, 1.4)
    f = gray[..., None] + (f - gray[..., None]) * saturation
    f *= rng.uniform(0.9, 1.1, 3).astype(np.float32)  # white balance
    if rng.random() < low_res:
        factor = rng.uniform(low_res_min, 0.7)
        small = cv2.resize(f, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        f = cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.15:
        f = cv2.GaussianBlur(f, (0, 0), rng.uniform(0.5, 1.5))
    if rng.random() < 0.2:
        f += rng.normal(0.0, rng.uniform(2.0, 8.0), f.shape).astype(np.float32)
    return np.clip(f + 0.5, 0, 255).astype(np.uint8)


def synthetic_positive(
    path: str, landmarks: np.ndarray, templates: list, rng: np.random.Generator
) -> np.ndarray | None:
    """A face without a mask, given one: a MaskTheFace overlay (when templates are given) or the renderer."""
    try:
        rgb = load_image(path)
    except (ImageDecodeError, OSError):
        return None
    face = DetectedFace.from_landmarks(landmarks)
    if templates:
        masked = random_overlay(rgb, face, templates, rng)
    else:
        masked = render_synthetic_mask(rgb, face, rng=rng)
    return align_face(masked, face, DLIB_150)


def synthetic_pool(
    faces: FaceSet, negatives: np.ndarray, templates: list, rng: np.random.Generator
) -> list[np.ndarray]:
    """Two masked versions of every given face without a mask, one from each source, drawn once.

    Rendering costs more than a training step, and augmentation varies them further every epoch.
    """
    pool: list[np.ndarray] = []
    for index in tqdm(negatives, desc="synthetic masks", unit="face", file=sys.stderr):
        for use_overlay in (True, False):
            chip = synthetic_positive(
                faces.paths[index], faces.landmarks[index], templates if use_overlay else [], rng
            )
            if chip is not None:
                pool.append(chip)
    return pool
