"""Grad-CAM whose target is a similarity, not a class: where does the network look to match a face?

An embedding network has no classes; an argmax over embedding units (the original system's
target) names no decision the product makes. The product decides on the cosine similarity
between a probe's embedding and an enrolled one, so that is the scalar differentiated here:
s = cos(f(x), r) for a reference embedding r (for example the same person photographed without a
mask). Grad-CAM (Selvaraju et al., 2017) then weighs each channel k of a convolutional activation
A by the spatial mean of ds/dA_k and keeps ReLU(sum_k w_k A_k): the regions whose features raise
the similarity to r. Upsampled to the crop and divided by its maximum, it lies in [0, 1].

The embedders' modules are shared, frozen (requires_grad False) and run under inference_mode by
Embedder.embed; nothing of that is touched. The forward here is this module's own: the crops are
normalised exactly as base.Embedder does, the input tensor requires grad (so gradients reach the
activations with every parameter still frozen), and a forward hook, registered for one call and
removed after it, keeps the chosen activation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from inference.embedders.base import Embedder

# The default target layer is the last activation at least this many cells on its shorter side:
# later maps (intel_0095's 1x1 after its global depthwise pooling, dlib's 5x5 last stage) are too
# coarse to say eyes or mouth; the 7x7 of an iresnet is the classic Grad-CAM resolution.
MIN_CAM_SIZE = 7


class LayerError(ValueError):
    """The requested target layer does not exist in the network or has no spatial map."""


@dataclass(frozen=True)
class Activation:
    """One module call of a forward, in call order: its dotted name and output shape (N, C, H, W)."""

    name: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class CamResult:
    """Grad-CAM of one crop against one reference.

    heatmap: crop-sized (H, W) float32 in [0, 1]; all zeros when no region raises the score.
    coarse: the layer-resolution map before ReLU (h, w), unnormalised: its sign says which
      regions raise (positive) or lower (negative) the similarity.
    score: the target, cos(f(crop), reference), of one forward without the mirrored crop.
    """

    heatmap: np.ndarray
    coarse: np.ndarray
    score: float
    layer: str


def _check_hookable(embedder: Embedder) -> nn.Module:
    module = embedder.module
    if isinstance(module, torch.jit.ScriptModule) or not isinstance(module, nn.Module):
        raise LayerError(
            f"{embedder.spec.name}: Grad-CAM needs the eager nn.Module, not a TorchScript copy "
            "(build the embedder with create_embedder, not from an optimised pipeline)"
        )
    return module


def normalised_input(embedder: Embedder, crops: Sequence[np.ndarray]) -> torch.Tensor:
    """N x 3 x H x W float32, as base.Embedder.embed feeds its module: (pixel - mean) * scale,
    channels reversed first for a BGR network."""
    spec = embedder.spec
    width, height = spec.input_size
    for crop in crops:
        if crop.shape != (height, width, 3) or crop.dtype != np.uint8:
            raise ValueError(
                f"{spec.name} expects {width}x{height} uint8 RGB crops aligned to "
                f"{spec.template.name}, got {crop.dtype} {crop.shape}"
            )
    device = embedder.device
    pixels = torch.from_numpy(np.stack([np.asarray(c) for c in crops])).to(device).permute(0, 3, 1, 2)
    if spec.input.channel_order == "bgr":
        pixels = pixels.flip(1)
    mean = torch.tensor(spec.input.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    scale = torch.tensor(spec.input.scale, dtype=torch.float32, device=device).view(1, 3, 1, 1)
    return (pixels.float() - mean) * scale


def list_activations(embedder: Embedder) -> list[Activation]:
    """Every module call with a 4-D output during one forward of a blank crop, in call order.

    A module called twice appears twice; the hook keeps its last call, which is what a name
    selects. Containers appear after their children (a hook fires when a forward returns).
    """
    module = _check_hookable(embedder)
    width, height = embedder.spec.input_size
    found: list[Activation] = []
    handles = []
    for name, sub in module.named_modules():
        if not name or isinstance(sub, torch.jit.ScriptModule):
            continue  # a TorchScript submodule takes no Python hooks

        def record(_module: nn.Module, _inputs: object, output: object, name: str = name) -> None:
            if isinstance(output, torch.Tensor) and output.dim() == 4:
                found.append(Activation(name, tuple(output.shape)))

        handles.append(sub.register_forward_hook(record))
    try:
        with torch.inference_mode():
            module(normalised_input(embedder, [np.zeros((height, width, 3), dtype=np.uint8)]))
    finally:
        for handle in handles:
            handle.remove()
    return found


def default_layer(embedder: Embedder, min_size: int = MIN_CAM_SIZE) -> str:
    """The last activation of the forward whose map is at least min_size on its shorter side."""
    candidates = [a for a in list_activations(embedder) if min(a.shape[2:]) >= min_size]
    if not candidates:
        raise LayerError(
            f"{embedder.spec.name}: no hookable activation of at least {min_size}x{min_size} "
            "(TorchScript parts take no hooks: explain a member model instead)"
        )
    return candidates[-1].name


def resolve_layer(embedder: Embedder, layer: str | int | None) -> str:
    """A module name for `layer`: None picks default_layer; an integer (or a string of digits)
    is an op index of the IR graph interpreter (intel_0095's `graph.ops`)."""
    module = _check_hookable(embedder)
    if layer is None:
        return default_layer(embedder)
    names = dict(module.named_modules())
    text = str(layer).strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        lists = [
            n for n, m in names.items() if n.rsplit(".", 1)[-1] == "ops" and isinstance(m, nn.ModuleList)
        ]
        if not lists:
            raise LayerError(
                f"{embedder.spec.name}: an integer layer indexes an IR graph's ops and this network "
                "has none; give a module name (--list-layers shows them)"
            )
        ops = names[lists[0]]
        if not 0 <= index < len(ops):
            raise LayerError(f"{embedder.spec.name}: op index {index} outside 0..{len(ops) - 1}")
        text = f"{lists[0]}.{index}"
    if text not in names or text == "":
        raise LayerError(f"{embedder.spec.name}: no module named {text!r} (--list-layers shows them)")
    if isinstance(names[text], torch.jit.ScriptModule):
        raise LayerError(f"{embedder.spec.name}: {text!r} is TorchScript, which takes no hooks")
    return text


class SimilarityGradCAM:
    """Grad-CAM of an embedder at one layer, the target being the cosine with a reference.

    cam = SimilarityGradCAM(embedder)             # default layer
    reference = embedder.embed([reference_crop])  # the product's template (flip-averaged)
    result = cam([probe_crop], reference)[0]      # result.heatmap: H x W in [0, 1]
    """

    def __init__(self, embedder: Embedder, layer: str | int | None = None) -> None:
        self.embedder = embedder
        self.module = _check_hookable(embedder)
        self.layer = resolve_layer(embedder, layer)
        self._target = dict(self.module.named_modules())[self.layer]

    def __call__(self, crops: Sequence[np.ndarray], references: np.ndarray) -> list[CamResult]:
        """One result per crop; references: one vector for all crops, or one per crop (N x dim)."""
        if len(crops) == 0:
            return []
        refs = np.array(references, dtype=np.float32)  # a copy: torch wants a writable array
        if refs.ndim == 1:
            refs = np.tile(refs, (len(crops), 1))
        dim = self.embedder.spec.dim
        if refs.shape != (len(crops), dim):
            raise ValueError(f"references must be ({dim},) or ({len(crops)}, {dim}), got {refs.shape}")
        if not np.all(np.linalg.norm(refs, axis=1) > 0):
            raise ValueError("a reference embedding is all zeros: the cosine is undefined")
        kept: list[torch.Tensor] = []

        def keep(_module: nn.Module, _inputs: object, output: torch.Tensor) -> torch.Tensor:
            kept.append(output)
            # Downstream gets a copy: a later in-place op cannot alter the kept activation.
            return output.clone()

        handle = self._target.register_forward_hook(keep)
        try:
            with torch.enable_grad():
                batch = normalised_input(self.embedder, crops).requires_grad_(True)
                vectors = self.module(batch)
                target = torch.from_numpy(refs).to(vectors.device)
                scores = F.cosine_similarity(vectors.float(), target, dim=1)
                if not kept:
                    raise LayerError(f"layer {self.layer!r} was not called in the forward")
                activation = kept[-1]
                if activation.dim() != 4:
                    raise LayerError(
                        f"layer {self.layer!r} outputs {tuple(activation.shape)}: Grad-CAM needs a "
                        "convolutional map N x C x H x W"
                    )
                # Samples do not interact in an eval-mode forward: the gradient of the sum gives
                # each crop the gradient of its own score.
                (gradients,) = torch.autograd.grad(scores.sum(), activation)
        finally:
            handle.remove()
        weights = gradients.mean(dim=(2, 3), keepdim=True)
        coarse = (weights * activation).sum(dim=1, keepdim=True).detach().float()
        height, width = crops[0].shape[:2]
        upsampled = F.interpolate(
            coarse.clamp(min=0), size=(height, width), mode="bilinear", align_corners=False
        )
        results = []
        for index in range(len(crops)):
            heat = upsampled[index, 0].cpu().numpy()
            peak = float(heat.max())
            heat = heat / peak if peak > 0 else np.zeros_like(heat)
            results.append(
                CamResult(
                    heatmap=np.clip(heat, 0.0, 1.0).astype(np.float32),
                    coarse=coarse[index, 0].cpu().numpy(),
                    score=float(scores[index].detach()),
                    layer=self.layer,
                )
            )
        return results


def similarity_gradcam(
    embedder: Embedder, crop: np.ndarray, reference: np.ndarray, *, layer: str | int | None = None
) -> CamResult:
    """Grad-CAM of one aligned crop against one reference embedding (see SimilarityGradCAM)."""
    return SimilarityGradCAM(embedder, layer)([crop], reference)[0]
