"""Mask / no-mask decision on aligned face chips.

Input is the chip the pipeline already makes for the default embedder
(`align_face(rgb, face, DLIB_150)`, 150x150 RGB), so the decision costs no extra warp. The
classifier returns probabilities; the threshold is the caller's (DEFAULT_MASK_THRESHOLD
unless configured), so a deployment can trade false masks against missed masks.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from inference.device import resolve_device
from inference.mask.network import MaskNet, NetworkConfig
from inference.variants import DEFAULT_MASK_THRESHOLD, is_masked

DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "weights" / "mask_classifier_v2.pt"
CHECKPOINT_FORMAT = "faceid.mask_classifier"


def preprocess(crops: Sequence[np.ndarray], size: int) -> torch.Tensor:
    """HxWx3 uint8 RGB chips to an (N, 3, size, size) float tensor in [0, 1]."""
    batch = np.empty((len(crops), size, size, 3), dtype=np.uint8)
    for index, crop in enumerate(crops):
        crop = np.asarray(crop)
        if crop.dtype != np.uint8 or crop.ndim != 3 or crop.shape[2] != 3:
            raise ValueError(
                f"crop {index}: expected an HxWx3 uint8 RGB array, got {crop.dtype} {crop.shape}"
            )
        if crop.shape[:2] != (size, size):
            # INTER_AREA: the chips are downscaled (150 -> 112), where it avoids aliasing.
            crop = cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)
        batch[index] = crop
    return torch.from_numpy(batch).permute(0, 3, 1, 2).float().div_(255.0)


class MaskClassifier:
    """A trained MaskNet and the facts needed to feed it."""

    def __init__(
        self,
        model: MaskNet,
        *,
        version: str,
        device: str | torch.device = "auto",
        metadata: dict | None = None,
    ) -> None:
        self.device = resolve_device(str(device))
        self.model = model.to(self.device).eval()
        self.version = version
        self.input_size = model.config.input_size
        self.metadata: dict = dict(metadata or {})

    @classmethod
    def from_weights(
        cls, path: str | os.PathLike | None = None, device: str | torch.device = "auto"
    ) -> MaskClassifier:
        """Load a checkpoint written by `toolkit.mask_training` (default: the committed v2 weights)."""
        path = Path(path) if path is not None else DEFAULT_WEIGHTS
        if not path.is_file():
            raise FileNotFoundError(f"mask classifier weights not found at {path}")
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        if checkpoint.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"{path} is not a mask classifier checkpoint")
        model = MaskNet(NetworkConfig.from_dict(checkpoint["config"]))
        # Stored in float16 to keep the file small; computation stays in float32.
        model.load_state_dict({k: v.float() for k, v in checkpoint["state_dict"].items()})
        metadata = {k: v for k, v in checkpoint.items() if k not in ("state_dict", "config")}
        return cls(model, version=str(checkpoint["version"]), device=device, metadata=metadata)

    @torch.inference_mode()
    def predict_proba(self, crops: Sequence[np.ndarray], batch_size: int = 64) -> np.ndarray:
        """Probability that each chip shows a masked face, float32 of shape (N,)."""
        if len(crops) == 0:
            return np.zeros(0, dtype=np.float32)
        out = []
        for start in range(0, len(crops), batch_size):
            batch = preprocess(crops[start : start + batch_size], self.input_size).to(self.device)
            out.append(torch.sigmoid(self.model(batch)).float().cpu().numpy())
        return np.concatenate(out).astype(np.float32)

    def predict(self, crops: Sequence[np.ndarray], threshold: float = DEFAULT_MASK_THRESHOLD) -> np.ndarray:
        """Boolean mask decisions at `threshold`."""
        return np.array([is_masked(float(p), threshold) for p in self.predict_proba(crops)], dtype=bool)


_cache: dict[tuple[int, str, str], MaskClassifier] = {}
_cache_lock = threading.Lock()


def get_mask_classifier(
    path: str | os.PathLike | None = None, device: str | torch.device = "auto"
) -> MaskClassifier:
    """The classifier of this process, loaded once (keyed by pid: a forked worker loads its own)."""
    weights = str(Path(path) if path is not None else DEFAULT_WEIGHTS)
    key = (os.getpid(), weights, str(resolve_device(str(device))))
    with _cache_lock:
        classifier = _cache.get(key)
        if classifier is None:
            classifier = MaskClassifier.from_weights(path, device=device)
            _cache[key] = classifier
        return classifier
