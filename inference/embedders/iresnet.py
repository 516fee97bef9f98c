"""insightface arcface_torch IResNet backbones (iresnet18/34/50/100): 112x112 in, 512-d out.

The module and parameter names follow arcface_torch/backbones/iresnet.py exactly (conv1, bn1,
prelu, layer1..layer4 of IBasicBlock, bn2, dropout, fc, features), so a `backbone.pth` saved by
that toolkit, or by the project's later training toolkit, loads with strict key matching.
There are no bundled weights: the operator puts the file where the spec says
($INFERENCE_WEIGHTS_DIR/<name>.pth) or passes `weights=`.
"""

from __future__ import annotations

from dataclasses import replace
from os import PathLike
from pathlib import Path

import torch
from torch import nn

from inference.device import resolve_device
from inference.embedders.base import Embedder, cached_module
from inference.embedders.registry import embedder_spec
from inference.embedders.spec import EmbedderSpec, files_digest

LAYERS = {
    "iresnet18": (2, 2, 2, 2),
    "iresnet34": (3, 4, 6, 3),
    "iresnet50": (3, 4, 14, 3),
    "iresnet100": (3, 13, 30, 3),
}


def _conv3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    expansion = 1

    def __init__(
        self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-05)
        self.conv1 = _conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-05)
        self.prelu = nn.PReLU(planes)
        self.conv2 = _conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-05)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        identity = self.downsample(x) if self.downsample is not None else x
        return out + identity


class IResNet(nn.Module):
    fc_scale = 7 * 7

    def __init__(
        self, layers: tuple[int, int, int, int], dropout: float = 0.0, num_features: int = 512
    ) -> None:
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes, eps=1e-05)
        self.prelu = nn.PReLU(self.inplanes)
        self.layer1 = self._make_layer(64, layers[0], stride=2)
        self.layer2 = self._make_layer(128, layers[1], stride=2)
        self.layer3 = self._make_layer(256, layers[2], stride=2)
        self.layer4 = self._make_layer(512, layers[3], stride=2)
        self.bn2 = nn.BatchNorm2d(512 * IBasicBlock.expansion, eps=1e-05)
        self.dropout = nn.Dropout(p=dropout, inplace=True)
        self.fc = nn.Linear(512 * IBasicBlock.expansion * self.fc_scale, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-05)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * IBasicBlock.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(
                    self.inplanes, planes * IBasicBlock.expansion, kernel_size=1, stride=stride, bias=False
                ),
                nn.BatchNorm2d(planes * IBasicBlock.expansion, eps=1e-05),
            )
        layers = [IBasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * IBasicBlock.expansion
        layers.extend(IBasicBlock(self.inplanes, planes) for _ in range(1, blocks))
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        x = torch.flatten(self.bn2(x), 1)
        x = self.fc(self.dropout(x))
        return self.features(x)


def build_iresnet(name: str, *, dropout: float = 0.0, num_features: int | None = None) -> IResNet:
    """An untrained backbone; num_features defaults to the registered embedder's dimension."""
    try:
        layers = LAYERS[name]
    except KeyError:
        raise ValueError(f"unknown iresnet depth {name!r}; expected one of {sorted(LAYERS)}") from None
    features = num_features if num_features is not None else embedder_spec(name).dim
    return IResNet(layers, dropout=dropout, num_features=features)


def load_state_dict(path: Path) -> dict[str, torch.Tensor]:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path} does not hold a state_dict")
    # Checkpoints saved from DistributedDataParallel prefix every key with "module.".
    return {key.removeprefix("module."): value for key, value in state.items()}


def create(
    spec: EmbedderSpec,
    *,
    device: str = "auto",
    weights: str | PathLike[str] | None = None,
    dropout: float = 0.0,
) -> Embedder:
    """The factory the registry names for every iresnet depth (spec.name picks the layers)."""
    if weights is None:
        path = spec.weights_path()
    else:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"{spec.name} weights not found at {path}")
    digest = files_digest(path)

    def build() -> IResNet:
        module = build_iresnet(spec.name, dropout=dropout)
        module.load_state_dict(load_state_dict(path), strict=True)
        return module

    torch_device = resolve_device(device)
    module = cached_module((spec.name, digest), torch_device, build)
    # The version names the weights: vectors from different weights must never be compared.
    return Embedder(replace(spec, version=f"{spec.version}-{digest}"), module, torch_device)
