"""SFace (OpenCV Zoo `face_recognition_sface_2021dec`, int8 block-quantized ONNX) in PyTorch.

The network is a MobileNetV1-style MobileFaceNet without residuals: a 3x3 convolution, then 13
depthwise 3x3 / pointwise 1x1 pairs (4 of the depthwise ones with stride 2, 112 -> 7), every
convolution followed by batch norm and PReLU; then batch norm over the 1024x7x7 map, flatten, a
50176x128 linear layer and a final batch norm: 128-d, compared by cosine. No convolution has a bias.

The file stores each convolution and the linear layer as int8 with one scale and zero point per
block of input values (ONNX opset 21 DequantizeLinear with `block_size`, then Reshape). They are
dequantized once here, at load time, into float32 weights: the forward pass is plain float math,
unlike OpenCV's dnn, which dequantizes on every call. The graph's input Sub/Mul, (x - 127.5) *
0.0078125, is left to the Embedder (the spec's InputConfig mean and scale), so it is done once:
the loader refuses a file whose constants differ from the spec's.

The ONNX protobuf is read with the `onnx` package (requirements/worker.txt); the weights come from
inference/weights/sface/ (Apache-2.0, see its LICENSE and inference/weights/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from os import PathLike
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from inference.device import resolve_device
from inference.embedders.base import Embedder, cached_module
from inference.embedders.spec import EmbedderSpec, files_digest, version_for_weights

NAME = "sface"
INPUT_SIZE = 112
EMBEDDING_DIM = 128
FEATURE_CHANNELS = 1024
FEATURE_SIZE = 7


class SFaceFormatError(ValueError):
    """The ONNX file is not the SFace graph this module re-implements."""


@dataclass(frozen=True)
class _ConvLayer:
    """One Conv + BatchNormalization + PRelu of the graph, named as in the ONNX file."""

    name: str
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    depthwise: bool


def _architecture() -> tuple[_ConvLayer, ...]:
    layers = [_ConvLayer("conv_1", 3, 32, 3, 1, False)]
    # (depthwise stride, pointwise output channels) for conv_2 .. conv_14.
    plan = [(1, 64), (2, 128), (1, 128), (2, 256), (1, 256), (2, 512)]
    plan += [(1, 512)] * 5 + [(2, 1024), (1, 1024)]
    channels = 32
    for index, (stride, out) in enumerate(plan, start=2):
        layers.append(_ConvLayer(f"conv_{index}_dw", channels, channels, 3, stride, True))
        layers.append(_ConvLayer(f"conv_{index}", channels, out, 1, 1, False))
        channels = out
    return tuple(layers)


ARCHITECTURE = _architecture()


class ConvBNPReLU(nn.Module):
    def __init__(self, layer: _ConvLayer, eps: float) -> None:
        super().__init__()
        self.conv = nn.Conv2d(
            layer.in_channels,
            layer.out_channels,
            layer.kernel,
            stride=layer.stride,
            padding=layer.kernel // 2,
            groups=layer.in_channels if layer.depthwise else 1,
            bias=False,
        )
        self.bn = nn.BatchNorm2d(layer.out_channels, eps=eps)
        self.prelu = nn.PReLU(layer.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.prelu(self.bn(self.conv(x)))


class SFaceNet(nn.Module):
    """Input: N x 3 x 112 x 112, (RGB - 127.5) / 128. Output: N x 128, not normalised (as the ONNX)."""

    def __init__(self, conv_eps: float = 1e-3, head_eps: float = 2e-5) -> None:
        super().__init__()
        self.layers = nn.Sequential(*(ConvBNPReLU(layer, conv_eps) for layer in ARCHITECTURE))
        self.bn = nn.BatchNorm2d(FEATURE_CHANNELS, eps=head_eps)
        # The graph's Dropout sits here: the identity at inference, so it has no module.
        self.fc = nn.Linear(FEATURE_CHANNELS * FEATURE_SIZE * FEATURE_SIZE, EMBEDDING_DIM)
        self.features = nn.BatchNorm1d(EMBEDDING_DIM, eps=head_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.layers(x))
        return self.features(self.fc(torch.flatten(x, 1)))


# --- reading the ONNX file --------------------------------------------------------------------


@dataclass(frozen=True)
class SFaceWeights:
    """What the file holds, as float32 arrays keyed like SFaceNet's state_dict."""

    state: dict[str, np.ndarray]
    input_mean: float  # the graph's Sub constant
    input_scale: float  # the graph's Mul constant
    conv_eps: float
    head_eps: float


def _attributes(node: onnx.NodeProto) -> dict[str, object]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def dequantize_blocked(
    quantized: np.ndarray, scales: np.ndarray, zero_points: np.ndarray, *, axis: int, block_size: int
) -> np.ndarray:
    """ONNX DequantizeLinear (opset 21) with blocked quantization: (q - zp) * scale, per block.

    Along `axis`, values i*block_size .. (i+1)*block_size-1 share scales[..., i, ...]; the
    product of a small integer and a float32 is computed exactly in float64 and rounded once to
    float32, which is what a float32 runtime computes.
    """
    if scales.shape != zero_points.shape or scales.ndim != quantized.ndim:
        raise SFaceFormatError(
            f"scale {scales.shape} / zero point {zero_points.shape} do not fit {quantized.shape}"
        )
    blocks = -(-quantized.shape[axis] // block_size)
    if scales.shape[axis] != blocks:
        raise SFaceFormatError(
            f"{quantized.shape[axis]} values in blocks of {block_size} need {blocks} scales, "
            f"got {scales.shape[axis]}"
        )
    length = quantized.shape[axis]
    scale = np.repeat(scales.astype(np.float64), block_size, axis=axis).take(range(length), axis=axis)
    zero = np.repeat(zero_points.astype(np.int32), block_size, axis=axis).take(range(length), axis=axis)
    return ((quantized.astype(np.int32) - zero) * scale).astype(np.float32)


def _constant_folded(
    graph: onnx.GraphProto, initializers: dict[str, np.ndarray], used: set[str]
) -> dict[str, np.ndarray]:
    """Evaluate the weight-only nodes (DequantizeLinear, Reshape) once; names -> float32 arrays."""
    values: dict[str, np.ndarray] = {}

    def value(name: str) -> np.ndarray:
        if name in values:
            return values[name]
        if name in initializers:
            used.add(name)
            return initializers[name]
        raise SFaceFormatError(f"{name!r} is neither an initializer nor a weight computed before it")

    for node in graph.node:
        if node.op_type == "DequantizeLinear":
            quantized, scales, zero_points = (value(name) for name in node.input)
            attrs = _attributes(node)
            if "block_size" not in attrs:
                raise SFaceFormatError(f"{node.output[0]}: expected blocked quantization (block_size)")
            values[node.output[0]] = dequantize_blocked(
                quantized,
                scales,
                zero_points,
                axis=int(attrs.get("axis", 1)),
                block_size=int(attrs["block_size"]),
            )
        elif node.op_type == "Reshape" and all(name in values or name in initializers for name in node.input):
            data, shape = (value(name) for name in node.input)
            values[node.output[0]] = data.reshape(tuple(int(v) for v in shape))
    return values


def read_sface_onnx(path: str | PathLike[str]) -> SFaceWeights:
    """Parse the ONNX file into SFaceNet's state_dict, checking the graph node by node.

    Every initializer must be used (a file with extra or missing tensors is a different network)
    and every computing node must be the one the architecture expects, with its attributes.
    """
    model = onnx.load(str(path))
    graph = model.graph
    initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    used: set[str] = set()
    weights = _constant_folded(graph, initializers, used)

    def tensor(name: str) -> np.ndarray:
        if name in weights:
            return weights[name]
        if name in initializers:
            used.add(name)
            return initializers[name]
        raise SFaceFormatError(f"missing tensor {name!r}")

    compute = [n for n in graph.node if n.op_type not in ("DequantizeLinear", "Reshape", "Constant")]
    position = 0

    def take(op_type: str) -> onnx.NodeProto:
        nonlocal position
        if position >= len(compute) or compute[position].op_type != op_type:
            found = compute[position].op_type if position < len(compute) else "end of graph"
            raise SFaceFormatError(f"node {position}: expected {op_type}, found {found}")
        position += 1
        return compute[position - 1]

    def scalar(name: str) -> float:
        array = tensor(name)
        if array.size != 1:
            raise SFaceFormatError(f"{name!r}: expected one value, got shape {array.shape}")
        return float(array.reshape(()))

    input_mean = scalar(take("Sub").input[1])
    input_scale = scalar(take("Mul").input[1])

    state: dict[str, np.ndarray] = {}
    conv_eps: float | None = None

    def batch_norm(node: onnx.NodeProto, prefix: str) -> float:
        for key, name in zip(("weight", "bias", "running_mean", "running_var"), node.input[1:], strict=True):
            state[f"{prefix}.{key}"] = tensor(name).astype(np.float32)
        state[f"{prefix}.num_batches_tracked"] = np.array(0, dtype=np.int64)
        return float(_attributes(node).get("epsilon", 1e-5))

    for index, layer in enumerate(ARCHITECTURE):
        conv = take("Conv")
        attrs = _attributes(conv)
        weight = tensor(conv.input[1])
        expected_shape = (
            layer.out_channels,
            1 if layer.depthwise else layer.in_channels,
            layer.kernel,
            layer.kernel,
        )
        pad = layer.kernel // 2
        expected = {
            "kernel_shape": [layer.kernel] * 2,
            "strides": [layer.stride] * 2,
            "pads": [pad] * 4,
            "group": layer.in_channels if layer.depthwise else 1,
            "dilations": [1, 1],
        }
        found = {key: attrs.get(key) for key in expected}
        if weight.shape != expected_shape or found != expected or len(conv.input) != 2:
            raise SFaceFormatError(
                f"{layer.name}: expected weight {expected_shape} and {expected}, "
                f"got {weight.shape} and {found}"
            )
        state[f"layers.{index}.conv.weight"] = weight
        eps = batch_norm(take("BatchNormalization"), f"layers.{index}.bn")
        if conv_eps is None:
            conv_eps = eps
        elif eps != conv_eps:
            raise SFaceFormatError(f"{layer.name}: batch norm epsilon {eps} differs from {conv_eps}")
        prelu = take("PRelu")
        state[f"layers.{index}.prelu.weight"] = tensor(prelu.input[1]).reshape(-1)

    head_eps = batch_norm(take("BatchNormalization"), "bn")
    take("Dropout")
    flatten = take("Flatten")
    if int(_attributes(flatten).get("axis", 1)) != 1:
        raise SFaceFormatError("expected Flatten over every axis after the batch")
    gemm = take("Gemm")
    gemm_attrs = _attributes(gemm)
    if (gemm_attrs.get("transA", 0), gemm_attrs.get("transB", 0)) != (0, 1) or (
        float(gemm_attrs.get("alpha", 1.0)),
        float(gemm_attrs.get("beta", 1.0)),
    ) != (1.0, 1.0):
        raise SFaceFormatError(f"unexpected Gemm attributes {gemm_attrs}")
    for key, name in (("fc.weight", gemm.input[1]), ("fc.bias", gemm.input[2])):
        state[key] = tensor(name)
        # The file keeps the linear layer's shapes beside its quantized tensors although no
        # Reshape reads them: they are checked here, so that they count as used.
        shape_name = name.removesuffix("_dequantized") + "_shape"
        if shape_name in initializers:
            if tuple(int(v) for v in tensor(shape_name)) != state[key].shape:
                raise SFaceFormatError(
                    f"{name}: shape {state[key].shape}, the file says {tensor(shape_name)}"
                )
    if batch_norm(take("BatchNormalization"), "features") != head_eps:
        raise SFaceFormatError("the two head batch norms have different epsilons")
    if position != len(compute):
        raise SFaceFormatError(f"{len(compute) - position} unexpected nodes after the last batch norm")
    unused = sorted(set(initializers) - used)
    if unused:
        raise SFaceFormatError(f"initializers the network does not use: {', '.join(unused)}")
    assert conv_eps is not None  # ARCHITECTURE is not empty
    return SFaceWeights(state, input_mean, input_scale, conv_eps, head_eps)


def load_sface(path: str | PathLike[str], spec: EmbedderSpec | None = None) -> SFaceNet:
    """The network with the file's weights, loaded strictly (every key, every shape).

    With `spec`, the file's input normalisation must be the spec's mean and scale: the Embedder
    applies those, and the module must not apply them a second time.
    """
    weights = read_sface_onnx(path)
    if spec is not None:
        mean, scale = set(spec.input.mean), set(spec.input.scale)
        if mean != {weights.input_mean} or not np.allclose(
            sorted(scale), [weights.input_scale], rtol=1e-7, atol=0
        ):
            raise SFaceFormatError(
                f"the file normalises by (x - {weights.input_mean}) * {weights.input_scale}; "
                f"the spec says mean {spec.input.mean}, scale {spec.input.scale}"
            )
    module = SFaceNet(conv_eps=weights.conv_eps, head_eps=weights.head_eps)
    module.load_state_dict(
        {key: torch.from_numpy(np.ascontiguousarray(v)) for key, v in weights.state.items()}, strict=True
    )
    return module.eval()


def create(
    spec: EmbedderSpec, *, device: str = "auto", weights: str | PathLike[str] | None = None
) -> Embedder:
    """The factory the registry names for sface.

    The registered version ends with the bundled file's digest, so the web process knows it
    without reading the file; a bundled file with another digest is refused (update the spec's
    version with the weights). Weights passed explicitly get a version naming their own digest.
    """
    if weights is None:
        path = spec.weights_path()
    else:
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"{spec.name} weights not found at {path}")
    digest = files_digest(path)
    spec = version_for_weights(spec, digest, shipped=weights is None, source=path, error=SFaceFormatError)
    torch_device = resolve_device(device)
    module = cached_module((spec.name, digest), torch_device, lambda: load_sface(path, spec))
    return Embedder(spec, module, torch_device)
