"""dlib's ResNet face descriptor (dlib_face_recognition_resnet_model_v1) in PyTorch, no dlib at run time.

The network (dlib's dnn_face_recognition_ex.cpp): a 7x7/2 convolution, 3x3/2 max pool, then 14
residual blocks (3 at 32 channels; 4 at 64, 3 at 128, 3 at 256, 1 at 256, each group opening
with a downsampling block), global average pool and a 256x128 linear layer without bias.
Two dlib behaviours decide parity: stride-2 convolutions and pools have no padding, so the two
branches of a downsampling block can differ in size (3x3 against 4x4), and dlib's add then
zero-pads the smaller tensor at the bottom/right, and in channels. Affine (frozen batch-norm)
layers are folded into the convolution before them.

Weights: the .dat file of the PyPI package face-recognition-models (CC0), located by the spec
(inference.embedders.registry) without importing that package (its __init__ needs pkg_resources).
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from inference.device import resolve_device
from inference.embedders.base import Embedder, cached_module
from inference.embedders.dlib_dat import DlibFormatError, DlibLayer, DlibNetwork, read_dlib_network
from inference.embedders.registry import embedder_spec
from inference.embedders.spec import EmbedderSpec

NAME = "dlib_resnet_v1"


def default_weights_path() -> Path:
    """The .dat file the registry's spec points at (WeightsUnavailableError when absent)."""
    return embedder_spec(NAME).weights_path()


def _add_zero_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if a.shape == b.shape:
        return a + b
    channels = max(a.shape[1], b.shape[1])
    height = max(a.shape[2], b.shape[2])
    width = max(a.shape[3], b.shape[3])

    def grow(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, width - t.shape[3], 0, height - t.shape[2], 0, channels - t.shape[1]))

    return grow(a) + grow(b)


class _ResidualBlock(nn.Module):
    def __init__(self, conv1: nn.Conv2d, conv2: nn.Conv2d, shortcut_pool: nn.AvgPool2d | None) -> None:
        super().__init__()
        self.conv1 = conv1
        self.conv2 = conv2
        self.shortcut_pool = shortcut_pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(F.relu(self.conv1(x)))
        shortcut = self.shortcut_pool(x) if self.shortcut_pool is not None else x
        return F.relu(_add_zero_padded(shortcut, y))


class DlibResNet(nn.Module):
    """Input: N x 3 x 150 x 150, (RGB - mean) / 256. Output: N x 128, not normalised (as dlib)."""

    def __init__(
        self, stem: nn.Conv2d, pool: nn.MaxPool2d, blocks: list[_ResidualBlock], fc: nn.Linear
    ) -> None:
        super().__init__()
        self.stem = stem
        self.pool = pool
        self.blocks = nn.Sequential(*blocks)
        self.fc = fc

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.stem(x)))
        x = self.blocks(x)
        return self.fc(x.mean(dim=(2, 3)))


def build_dlib_resnet(network: DlibNetwork) -> DlibResNet:
    """Wire the parsed layers (input outwards) into the dlib ResNet, checking the sequence as it goes."""
    layers = list(network.layers)
    position = 0

    def take(kind: str) -> DlibLayer:
        nonlocal position
        if position >= len(layers) or layers[position].kind != kind:
            found = layers[position].kind if position < len(layers) else "end of file"
            raise DlibFormatError(f"layer {position}: expected {kind}, found {found}")
        position += 1
        return layers[position - 1]

    def peek() -> str | None:
        return layers[position].kind if position < len(layers) else None

    stem = _folded_conv(take("con"), take("affine"))
    take("relu")
    pool = _pool(take("max_pool"), nn.MaxPool2d)
    blocks = []
    while peek() == "con":
        conv1 = _folded_conv(take("con"), take("affine"))
        take("relu")
        conv2 = _folded_conv(take("con"), take("affine"))
        shortcut = _pool(take("avg_pool"), nn.AvgPool2d) if peek() == "avg_pool" else None
        take("add_prev")
        take("relu")
        blocks.append(_ResidualBlock(conv1, conv2, shortcut))
    everything = take("avg_pool")
    if everything.fields["rows"] != 0 or everything.fields["cols"] != 0:
        raise DlibFormatError("expected a global average pool before the fully connected layer")
    fc_layer = take("fc")
    if position != len(layers):
        raise DlibFormatError(f"{len(layers) - position} unexpected layers after the fully connected layer")

    inputs, outputs = int(fc_layer.fields["num_inputs"]), int(fc_layer.fields["num_outputs"])
    fc = nn.Linear(inputs, outputs, bias=False)
    # dlib stores the weights as inputs x outputs and computes x @ W.
    weights = fc_layer.params[: inputs * outputs].reshape(inputs, outputs)
    fc.weight.data = torch.from_numpy(np.ascontiguousarray(weights.T))
    return DlibResNet(stem, pool, blocks, fc)


def _folded_conv(con: DlibLayer, affine: DlibLayer) -> nn.Conv2d:
    fields = con.fields
    out_ch, in_ch, rows, cols = fields["filters_shape"]
    count = out_ch * in_ch * rows * cols
    weight = con.params[:count].reshape(out_ch, in_ch, rows, cols).astype(np.float64)
    bias = con.params[count : count + out_ch].astype(np.float64)
    gamma = affine.params[:out_ch].astype(np.float64)
    beta = affine.params[out_ch : 2 * out_ch].astype(np.float64)
    conv = nn.Conv2d(
        in_ch,
        out_ch,
        (rows, cols),
        stride=(fields["stride_y"], fields["stride_x"]),
        padding=(fields["padding_y"], fields["padding_x"]),
        bias=True,
    )
    # affine(conv(x)) = gamma * (W x + b) + beta, folded in double precision.
    conv.weight.data = torch.from_numpy((weight * gamma[:, None, None, None]).astype(np.float32))
    conv.bias.data = torch.from_numpy((bias * gamma + beta).astype(np.float32))
    return conv


def _pool(layer: DlibLayer, cls: type[nn.Module]) -> nn.Module:
    fields = layer.fields
    return cls(
        kernel_size=(fields["rows"], fields["cols"]),
        stride=(fields["stride_y"], fields["stride_x"]),
        padding=(fields["padding_y"], fields["padding_x"]),
    )


def load_dlib_resnet(path: str | PathLike[str] | None = None) -> DlibResNet:
    network = read_dlib_network(path or default_weights_path())
    if network.input_size != (150, 150):
        raise DlibFormatError(f"expected a 150x150 input layer, found {network.input_size}")
    return build_dlib_resnet(network)


def create(
    spec: EmbedderSpec, *, device: str = "auto", weights: str | PathLike[str] | None = None
) -> Embedder:
    """The factory the registry names for dlib_resnet_v1."""
    path = Path(weights) if weights is not None else spec.weights_path()
    torch_device = resolve_device(device)
    module = cached_module((spec.name, str(path.resolve())), torch_device, lambda: load_dlib_resnet(path))
    return Embedder(spec, module, torch_device)
