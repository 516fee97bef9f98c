"""What every embedder is at run time: a batched torch forward over aligned crops.

Its spec (inference.embedders.spec) is known without this module; the factories import it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable, Sequence

import numpy as np
import torch
from torch import nn

from inference.embedders.spec import EmbedderSpec


class Embedder:
    """A face network on one device: aligned uint8 RGB crops in, L2-normalised vectors out."""

    def __init__(self, spec: EmbedderSpec, module: nn.Module, device: torch.device) -> None:
        self.spec = spec
        self.device = device
        self.module = module
        # Input normalisation, from the spec: (pixel - mean) * scale per RGB channel.
        self._mean = torch.tensor(spec.input.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self._scale = torch.tensor(spec.input.scale, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self._bgr = spec.input.channel_order == "bgr"

    def embed(
        self, crops: Sequence[np.ndarray], *, flip: bool = True, batch_size: int = 32, normalize: bool = True
    ) -> np.ndarray:
        """N x dim float32. flip: average with the mirrored crop's embedding (a steady accuracy gain).

        normalize=False returns the network's raw output (the parity test compares it with dlib).
        """
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        width, height = self.spec.input_size
        if len(crops) == 0:
            return np.zeros((0, self.spec.dim), dtype=np.float32)
        for crop in crops:
            if crop.shape != (height, width, 3) or crop.dtype != np.uint8:
                raise ValueError(
                    f"{self.spec.name} expects {width}x{height} uint8 RGB crops aligned to "
                    f"{self.spec.template.name}, got {crop.dtype} {crop.shape}"
                )
        outputs = []
        with torch.inference_mode():
            for start in range(0, len(crops), batch_size):
                chunk = np.stack([np.asarray(c) for c in crops[start : start + batch_size]])
                pixels = torch.from_numpy(chunk).to(self.device, non_blocking=True).permute(0, 3, 1, 2)
                if self._bgr:
                    pixels = pixels.flip(1)
                batch = (pixels.float() - self._mean) * self._scale
                if flip:
                    # One forward over crops and mirrors together keeps the batch large.
                    both = self.module(torch.cat([batch, torch.flip(batch, dims=[3])]))
                    vectors = (both[: len(chunk)] + both[len(chunk) :]) / 2
                else:
                    vectors = self.module(batch)
                if normalize:
                    vectors = torch.nn.functional.normalize(vectors, dim=1)
                outputs.append(vectors.float().cpu())
        return torch.cat(outputs).numpy()

    def __repr__(self) -> str:
        return f"<Embedder {self.spec.name} {self.spec.version} on {self.device}>"


_modules: dict[Hashable, nn.Module] = {}
_modules_lock = threading.Lock()


def cached_module(key: Hashable, device: torch.device, build: Callable[[], nn.Module]) -> nn.Module:
    """One built network per (key, device) in this process: weights are parsed and moved once."""
    full_key = (key, str(device))
    with _modules_lock:
        module = _modules.get(full_key)
        if module is None:
            module = build().to(device).eval()
            for parameter in module.parameters():
                parameter.requires_grad_(False)
            _modules[full_key] = module
        return module
