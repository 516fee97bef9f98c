"""What every embedder is: a spec (known without loading weights) and a batched torch forward."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from inference.align import AlignTemplate


@dataclass(frozen=True)
class EmbedderSpec:
    name: str
    version: str  # changes whenever the vectors would; stored beside every template
    dim: int
    template: AlignTemplate  # the crops embed() expects come from align_face(..., template)
    input_size: tuple[int, int]  # width, height (the template's size)
    description: str = ""


class Embedder:
    """A face network on one device: aligned uint8 RGB crops in, L2-normalised vectors out."""

    def __init__(
        self,
        spec: EmbedderSpec,
        module: nn.Module,
        device: torch.device,
        *,
        mean: Sequence[float],
        scale: Sequence[float],
    ) -> None:
        self.spec = spec
        self.device = device
        self.module = module
        # Input normalisation: (pixel - mean) * scale per RGB channel.
        self._mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
        self._scale = torch.tensor(scale, dtype=torch.float32, device=device).view(1, 3, 1, 1)

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
                pixels = torch.from_numpy(chunk).to(self.device, non_blocking=True)
                batch = (pixels.permute(0, 3, 1, 2).float() - self._mean) * self._scale
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
