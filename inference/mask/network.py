"""A width-reduced MobileNetV2 for the mask / no-mask decision on aligned face chips.

The original system used MobileNetV2; at 112 px and width 0.5 the same design keeps a
few hundred thousand parameters, runs in a few milliseconds on a CPU core and is stored
in well under the few megabytes the weights may take.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class NetworkConfig:
    """Everything needed to rebuild the network from a checkpoint."""

    input_size: int = 112
    width: float = 0.5
    last_channels: int = 256
    dropout: float = 0.2
    # (expansion, output channels at width 1.0, repeats, first stride): MobileNetV2's table
    # without its last 320-channel stage, which a two-class problem at 112 px does not need.
    stages: tuple[tuple[int, int, int, int], ...] = (
        (1, 16, 1, 1),
        (6, 24, 2, 2),
        (6, 32, 3, 2),
        (6, 64, 3, 2),
        (6, 96, 2, 1),
        (6, 160, 2, 2),
    )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> NetworkConfig:
        data = dict(data)
        data["stages"] = tuple(tuple(stage) for stage in data.get("stages", cls.stages))
        return cls(**data)


def _channels(value: float, divisor: int = 8) -> int:
    # MobileNetV2 rounds widths to multiples of 8 and never drops more than 10% of a layer.
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def _conv_bn(
    in_ch: int, out_ch: int, kernel: int, stride: int, groups: int = 1, act: bool = True
) -> nn.Sequential:
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if act:
        layers.append(nn.ReLU6(inplace=True))
    return nn.Sequential(*layers)


class InvertedResidual(nn.Module):
    """Expand (1x1), depthwise 3x3, project (1x1, linear); residual when shapes allow."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_ch * expansion
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(_conv_bn(in_ch, hidden, 1, 1))
        layers.append(_conv_bn(hidden, hidden, 3, stride, groups=hidden))
        layers.append(_conv_bn(hidden, out_ch, 1, 1, act=False))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.residual else out


class MaskNet(nn.Module):
    """Input: (N, 3, S, S) float, RGB scaled to [0, 1] then normalised inside; output: (N,) logits."""

    # Normalising inside the network keeps callers from having to know the statistics.
    MEAN = (0.485, 0.456, 0.406)
    STD = (0.229, 0.224, 0.225)

    def __init__(self, config: NetworkConfig | None = None) -> None:
        super().__init__()
        self.config = config or NetworkConfig()
        width = self.config.width
        in_ch = _channels(32 * width)
        layers: list[nn.Module] = [_conv_bn(3, in_ch, 3, 2)]
        for expansion, channels, repeats, stride in self.config.stages:
            out_ch = _channels(channels * width)
            for index in range(repeats):
                layers.append(InvertedResidual(in_ch, out_ch, stride if index == 0 else 1, expansion))
                in_ch = out_ch
        layers.append(_conv_bn(in_ch, self.config.last_channels, 1, 1))
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(nn.Dropout(self.config.dropout), nn.Linear(self.config.last_channels, 1))
        self.register_buffer("mean", torch.tensor(self.MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.STD).view(1, 3, 1, 1), persistent=False)
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        x = self.features(x)
        x = x.mean(dim=(2, 3))
        return self.head(x).squeeze(1)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
