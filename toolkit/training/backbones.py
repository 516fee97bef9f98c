"""Networks the training toolkit can train or fine-tune, each with the input it expects.

`create_backbone("iresnet50")` builds an arcface_torch IResNet (random weights, or a backbone.pth
loaded strictly); `create_backbone("intel_0095")` or `"dlib_resnet_v1"` starts from a shipped
embedder of the model registry. The runtime builds its networks frozen (buffers, no gradients):
here they are copied and their convolution, linear and PReLU tensors turned back into
parameters, so the same state_dict keys load into the runtime module after training.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from inference.embedders import create_embedder, embedder_spec
from inference.embedders.iresnet import LAYERS, build_iresnet, load_state_dict
from inference.embedders.spec import InputConfig

# Buffers of the runtime's graph modules that are learned weights (the rest, e.g. the IR's input
# scale and shift constants, stay fixed).
TRAINABLE_BUFFERS = ("weight", "bias", "slope")
# Registry models whose runtime module holds float tensors that can be trained.
FINE_TUNABLE = ("intel_0095", "dlib_resnet_v1")


@dataclass
class Backbone:
    name: str  # the registry name it starts from (the architecture of what it exports)
    module: nn.Module
    input: InputConfig
    dim: int

    def preprocess(self, pixels: torch.Tensor) -> torch.Tensor:
        """N x H x W x 3 uint8 RGB chips -> the network's normalised N x 3 x H x W float input,
        exactly as the runtime's Embedder prepares them."""
        x = pixels.permute(0, 3, 1, 2).float()
        if self.input.channel_order == "bgr":
            x = x.flip(1)
        mean = torch.tensor(self.input.mean, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        scale = torch.tensor(self.input.scale, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x - mean) * scale

    def forward_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.module(self.preprocess(pixels))


def make_trainable(module: nn.Module) -> nn.Module:
    """A copy of a frozen runtime module whose learned tensors are parameters with gradients."""
    trainable = copy.deepcopy(module)
    for sub in trainable.modules():
        for name in TRAINABLE_BUFFERS:
            tensor = sub._buffers.get(name)
            if tensor is not None and tensor.is_floating_point():
                del sub._buffers[name]
                sub.register_parameter(name, nn.Parameter(tensor.detach().float().clone()))
    for parameter in trainable.parameters():
        parameter.requires_grad_(True)
    # The IResNet's final batch norm scale is fixed by design (arcface_torch).
    features = getattr(trainable, "features", None)
    if isinstance(features, nn.BatchNorm1d) and features.weight is not None:
        features.weight.requires_grad_(False)
    return trainable.float().train()


def available_backbones() -> list[str]:
    return sorted(LAYERS) + list(FINE_TUNABLE)


def create_backbone(name: str, *, weights: str | Path | None = None) -> Backbone:
    """A trainable network: an iresnet (random, or `weights` loaded strictly) or a registry model
    (its shipped weights, or `weights` in the registry's own format)."""
    spec = embedder_spec(name)
    if name in LAYERS:
        module = build_iresnet(name)
        if weights is not None:
            module.load_state_dict(load_state_dict(Path(weights)), strict=True)
        return Backbone(name, module.float().train(), spec.input, spec.dim)
    if name not in FINE_TUNABLE:
        raise ValueError(
            f"{name} cannot be trained here (quantised or fused weights); choose one of "
            f"{', '.join(available_backbones())}"
        )
    kwargs = {"weights": str(weights)} if weights is not None else {}
    runtime = create_embedder(name, device="cpu", **kwargs)
    return Backbone(name, make_trainable(runtime.module), spec.input, spec.dim)


def frozen_teacher(backbone: Backbone) -> Backbone:
    """A frozen copy (evaluation mode, no gradients): the distillation teacher."""
    module = copy.deepcopy(backbone.module).eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return Backbone(backbone.name, module, backbone.input, backbone.dim)
