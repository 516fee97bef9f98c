"""OpenVINO IR (v10/v11 .xml graph + .bin weights) read without OpenVINO and run as a torch module.

Only the layer types plain convolutional networks use are understood (LAYER_VERSIONS); anything
else is refused by name, so a graph this reader cannot run exactly never loads half-way. The .xml
is parsed with ElementTree, the .bin with numpy: each Const is a slice of it (FP16 or FP32),
decompressed once at load time by the Convert layer after it.

The network is a small graph interpreter rather than a hand-written architecture: one torch
operation per IR layer, wired as the IR's edges say. For an exported graph this is the more
readable and the safer choice: nothing is guessed about block structure (which branch an SE
module multiplies, where a residual joins), every constant is looked up by the layer that uses
it, and a loader that refuses unused layers (`strict`) shows that nothing in the file was left
out. The forward loop over a fixed list of steps traces with torch.jit into a straight graph,
and the one rewrite made here (a bias Add folded into the convolution before it) is the one
torch.jit.freeze would make anyway; doing it at load keeps the untraced (GPU) path as fast.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# The layer types this reader runs, each with the opsets whose semantics it implements.
LAYER_VERSIONS: dict[str, frozenset[str]] = {
    "Parameter": frozenset({"opset1"}),
    "Result": frozenset({"opset1"}),
    "Const": frozenset({"opset1"}),
    "Convert": frozenset({"opset1"}),
    "Convolution": frozenset({"opset1"}),
    "GroupConvolution": frozenset({"opset1"}),
    "PReLU": frozenset({"opset1"}),
    "AvgPool": frozenset({"opset1"}),
    "Sigmoid": frozenset({"opset1"}),
    "Add": frozenset({"opset1"}),
    "Multiply": frozenset({"opset1"}),
}

_CONST_TYPES = {"f16": np.float16, "f32": np.float32}


class IRFormatError(ValueError):
    """The IR is malformed, or uses something this reader does not run."""


@dataclass(frozen=True)
class IRLayer:
    id: str
    name: str
    type: str
    version: str
    data: dict[str, str]
    # One (producing layer id, its output port id) per input port, in port order.
    inputs: tuple[tuple[str, str], ...]
    # Output port id -> the dims the IR declares for it.
    outputs: dict[str, tuple[int, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class IRGraph:
    name: str
    layers: dict[str, IRLayer]  # by id, in the file's order
    weights: bytes

    def consumers(self) -> dict[tuple[str, str], list[str]]:
        used: dict[tuple[str, str], list[str]] = {}
        for layer in self.layers.values():
            for source in layer.inputs:
                used.setdefault(source, []).append(layer.id)
        return used


def read_ir(xml_path: str | PathLike[str], bin_path: str | PathLike[str] | None = None) -> IRGraph:
    """Parse the graph; the weights default to the .bin beside the .xml."""
    xml_path = Path(xml_path)
    bin_path = Path(bin_path) if bin_path is not None else xml_path.with_suffix(".bin")
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as error:
        raise IRFormatError(f"{xml_path}: not valid XML ({error})") from None
    if root.tag != "net" or root.get("version") not in ("10", "11"):
        raise IRFormatError(f"{xml_path}: expected an OpenVINO IR v10/v11 <net>, found <{root.tag}>")
    edges: dict[tuple[str, str], tuple[str, str]] = {}
    for edge in root.iterfind("edges/edge"):
        target = (edge.get("to-layer", ""), edge.get("to-port", ""))
        if target in edges:
            raise IRFormatError(f"input port {target} has two incoming edges")
        edges[target] = (edge.get("from-layer", ""), edge.get("from-port", ""))
    layers: dict[str, IRLayer] = {}
    for element in root.iterfind("layers/layer"):
        layer_id = element.get("id", "")
        input_ports = [port.get("id", "") for port in element.iterfind("input/port")]
        missing = [port for port in input_ports if (layer_id, port) not in edges]
        if missing:
            raise IRFormatError(f"layer {element.get('name')!r}: input ports {missing} are not connected")
        data = element.find("data")
        layers[layer_id] = IRLayer(
            id=layer_id,
            name=element.get("name", ""),
            type=element.get("type", ""),
            version=element.get("version", ""),
            data=dict(data.attrib) if data is not None else {},
            inputs=tuple(edges[(layer_id, port)] for port in input_ports),
            outputs={
                port.get("id", ""): tuple(int(dim.text or 0) for dim in port.iterfind("dim"))
                for port in element.iterfind("output/port")
            },
        )
    for (target, _), (source, _) in edges.items():
        if target not in layers or source not in layers:
            raise IRFormatError(f"an edge joins unknown layers {source} -> {target}")
    return IRGraph(name=root.get("name", ""), layers=layers, weights=bin_path.read_bytes())


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.replace(" ", "").split(",") if v)


class _Convolution(nn.Module):
    """Convolution and GroupConvolution (explicit pads; asymmetric pads applied with F.pad)."""

    def __init__(self, weight: torch.Tensor, groups: int, data: dict[str, str]) -> None:
        super().__init__()
        self.register_buffer("weight", weight)
        self.register_buffer("bias", None)
        self.groups = groups
        self.stride = _ints(data["strides"])
        self.dilation = _ints(data["dilations"])
        auto_pad = data.get("auto_pad", "explicit")
        if auto_pad == "valid":
            begin, end = (0, 0), (0, 0)
        elif auto_pad in ("explicit", "notset"):
            begin, end = _ints(data["pads_begin"]), _ints(data["pads_end"])
        else:  # same_upper / same_lower depend on the input size: not needed by fixed-size graphs
            raise IRFormatError(f"auto_pad={auto_pad!r} is not supported")
        self.padding = begin if begin == end else (0, 0)
        # F.pad takes (left, right, top, bottom).
        self.extra_pad = () if begin == end else (begin[1], end[1], begin[0], end[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.extra_pad:
            x = F.pad(x, self.extra_pad)
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class _PReLU(nn.Module):
    def __init__(self, slope: torch.Tensor) -> None:
        super().__init__()
        # One slope for all channels (shape [1]) or one per channel (broadcast along axis 1).
        self.register_buffer("slope", slope.reshape(-1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.prelu(x, self.slope)


class _AvgPool(nn.Module):
    def __init__(self, data: dict[str, str]) -> None:
        super().__init__()
        begin, end = _ints(data["pads_begin"]), _ints(data["pads_end"])
        if begin != end or data.get("auto_pad", "explicit") not in ("explicit", "notset", "valid"):
            raise IRFormatError("AvgPool with asymmetric or automatic pads is not supported")
        self.kernel = _ints(data["kernel"])
        self.stride = _ints(data["strides"])
        self.padding = begin if data.get("auto_pad") != "valid" else (0, 0)
        self.ceil_mode = data.get("rounding_type", "floor") == "ceil"
        self.count_include_pad = data.get("exclude-pad", "false") != "true"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, self.kernel, self.stride, self.padding, self.ceil_mode, self.count_include_pad)


class _Sigmoid(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x)


class _Elementwise(nn.Module):
    """Add / Multiply with numpy broadcasting, of two tensors or of a tensor and a constant."""

    def __init__(self, kind: str, constant: torch.Tensor | None) -> None:
        super().__init__()
        self.multiply = kind == "Multiply"
        self.register_buffer("constant", constant)

    def forward(self, a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
        other = self.constant if b is None else b
        return a * other if self.multiply else a + other


@dataclass
class _Step:
    op: nn.Module
    sources: tuple[int, ...]  # value slots read
    declared: tuple[int, ...]  # output dims the IR declares (batch included)
    layer: str  # the IR layer's name, for error messages


class IRModule(nn.Module):
    """The IR's graph as a torch module: one input tensor (the Parameter), one output (the Result).

    Values live in numbered slots (slot 0 is the input); each step reads slots and writes the
    next one, and a slot is released after its last reader so batches do not hold every
    intermediate tensor at once.
    """

    def __init__(self, steps: Sequence[_Step], output_slot: int, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.ops = nn.ModuleList(step.op for step in steps)
        self.sources = [step.sources for step in steps]
        self.declared = [step.declared for step in steps]
        self.layer_names = [step.layer for step in steps]
        self.output_slot = output_slot
        self.input_shape = input_shape
        last_read: dict[int, int] = {}
        for index, sources in enumerate(self.sources):
            for slot in sources:
                last_read[slot] = index
        self.releases = [
            tuple(slot for slot in set(sources) if last_read[slot] == index and slot != output_slot)
            for index, sources in enumerate(self.sources)
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        values: list[torch.Tensor | None] = [x]
        for op, sources, releases in zip(self.ops, self.sources, self.releases, strict=True):
            values.append(op(*[values[slot] for slot in sources]))
            for slot in releases:
                values[slot] = None
        result = values[self.output_slot]
        assert result is not None
        return result

    def check_shapes(self) -> None:
        """Run a zero input of the IR's own shape and compare every step's output with the IR."""
        values: list[torch.Tensor] = [torch.zeros(self.input_shape)]
        with torch.no_grad():
            steps = zip(self.ops, self.sources, self.declared, self.layer_names, strict=True)
            for op, sources, declared, name in steps:
                values.append(op(*[values[slot] for slot in sources]))
                if tuple(values[-1].shape) != declared:
                    raise IRFormatError(
                        f"layer {name!r}: computed shape {tuple(values[-1].shape)}, the IR says {declared}"
                    )


def _constant(graph: IRGraph, layer: IRLayer) -> np.ndarray:
    data = layer.data
    dtype = _CONST_TYPES.get(data.get("element_type", ""))
    if dtype is None:
        raise IRFormatError(f"Const {layer.name!r}: element type {data.get('element_type')!r} not supported")
    shape = _ints(data.get("shape", ""))
    offset, size = int(data["offset"]), int(data["size"])
    count = int(np.prod(shape)) if shape else 1
    if size != count * np.dtype(dtype).itemsize or offset < 0 or offset + size > len(graph.weights):
        raise IRFormatError(f"Const {layer.name!r}: {size} bytes at {offset} do not hold shape {shape}")
    return np.frombuffer(graph.weights, dtype=dtype, count=count, offset=offset).reshape(shape)


def _reachable_from(graph: IRGraph, start: str) -> set[str]:
    seen, stack = set(), [start]
    while stack:
        layer_id = stack.pop()
        if layer_id not in seen:
            seen.add(layer_id)
            stack.extend(source for source, _ in graph.layers[layer_id].inputs)
    return seen


def build_ir_module(graph: IRGraph, *, strict: bool = True) -> IRModule:
    """Turn the parsed graph into a torch module.

    strict: every layer (every Const above all) must lead to the Result, and every step's output
    shape must match the IR's; a graph that leaves weights unused is not the network its file says.
    """
    for layer in graph.layers.values():
        versions = LAYER_VERSIONS.get(layer.type)
        if versions is None or layer.version not in versions:
            raise IRFormatError(f"layer {layer.name!r}: {layer.type} ({layer.version}) is not supported")
    parameters = [layer for layer in graph.layers.values() if layer.type == "Parameter"]
    results = [layer for layer in graph.layers.values() if layer.type == "Result"]
    if len(parameters) != 1 or len(results) != 1:
        raise IRFormatError(f"expected one input and one output, found {len(parameters)} and {len(results)}")
    parameter, result = parameters[0], results[0]
    if parameter.data.get("element_type") != "f32":
        raise IRFormatError(f"input element type {parameter.data.get('element_type')!r}: f32 expected")
    reachable = _reachable_from(graph, result.id)
    if strict and len(reachable) != len(graph.layers):
        unused = [layer.name for layer in graph.layers.values() if layer.id not in reachable]
        raise IRFormatError(f"{len(unused)} layers do not lead to the output: {unused[:5]}")

    consumers = graph.consumers()
    constants: dict[tuple[str, str], np.ndarray] = {}  # folded at load: Const and Convert(Const)
    slots: dict[tuple[str, str], int] = {}
    producers: dict[int, _Step] = {}  # slot -> the step writing it
    steps: list[_Step] = []
    (input_port,) = parameter.outputs
    slots[(parameter.id, input_port)] = 0
    input_shape = parameter.outputs[input_port]

    def add_step(layer: IRLayer, op: nn.Module, sources: tuple[int, ...]) -> None:
        (port,) = layer.outputs
        step = _Step(op, sources, layer.outputs[port], layer.name)
        steps.append(step)
        slots[(layer.id, port)] = len(steps)
        producers[len(steps)] = step

    for layer in _topological(graph, reachable):
        if layer.type in ("Parameter", "Result"):
            continue
        if layer.type == "Const":
            (port,) = layer.outputs
            constants[(layer.id, port)] = _constant(graph, layer)
            continue
        if layer.type == "Convert":
            if layer.inputs[0] not in constants or layer.data.get("destination_type") != "f32":
                raise IRFormatError(f"Convert {layer.name!r}: only constants converted to f32 are supported")
            (port,) = layer.outputs
            constants[(layer.id, port)] = constants[layer.inputs[0]].astype(np.float32)
            continue
        tensors = [source for source in layer.inputs if source not in constants]
        consts = [torch.from_numpy(constants[s].astype(np.float32)) for s in layer.inputs if s in constants]
        sources = tuple(slots[source] for source in tensors)
        if layer.type in ("Convolution", "GroupConvolution"):
            if len(tensors) != 1 or len(consts) != 1 or layer.inputs[1] not in constants:
                raise IRFormatError(f"{layer.name!r}: the weights must be a constant")
            weight = consts[0]
            groups = 1
            if layer.type == "GroupConvolution":  # [groups, out/groups, in/groups, kh, kw]
                groups = weight.shape[0]
                weight = weight.reshape(groups * weight.shape[1], *weight.shape[2:])
            if weight.dim() != 4:
                raise IRFormatError(f"{layer.name!r}: only 2-D convolutions are supported")
            add_step(layer, _Convolution(weight.contiguous(), groups, layer.data), sources)
        elif layer.type == "PReLU":
            if len(tensors) != 1 or len(consts) != 1:
                raise IRFormatError(f"PReLU {layer.name!r}: the slope must be a constant")
            add_step(layer, _PReLU(consts[0]), sources)
        elif layer.type == "AvgPool":
            add_step(layer, _AvgPool(layer.data), sources)
        elif layer.type == "Sigmoid":
            add_step(layer, _Sigmoid(), sources)
        else:  # Add, Multiply
            if layer.data.get("auto_broadcast", "numpy") != "numpy" or len(tensors) == 0:
                raise IRFormatError(f"{layer.name!r}: only numpy broadcasting of a tensor is supported")
            constant = consts[0] if consts else None
            producer = producers.get(sources[0])
            if (
                layer.type == "Add"
                and constant is not None
                and isinstance(producer.op if producer else None, _Convolution)
                and producer.op.bias is None
                and len(consumers[tensors[0]]) == 1
                and constant.shape == (1, producer.op.weight.shape[0], 1, 1)
            ):
                # conv(x) + b, b one value per output channel: the convolution's own bias.
                producer.op.bias = constant.reshape(-1).contiguous()
                (port,) = layer.outputs
                slots[(layer.id, port)] = sources[0]
                continue
            add_step(layer, _Elementwise(layer.type, constant), sources)

    module = IRModule(steps, slots[result.inputs[0]], input_shape)
    if strict:
        module.check_shapes()
    return module


def _topological(graph: IRGraph, keep: set[str]) -> list[IRLayer]:
    """The kept layers, each after every layer it reads (file order is usual but not promised)."""
    pending = {layer_id: {source for source, _ in graph.layers[layer_id].inputs} for layer_id in keep}
    ordered: list[IRLayer] = []
    done: set[str] = set()
    while pending:
        ready = [layer_id for layer_id in graph.layers if layer_id in pending and pending[layer_id] <= done]
        if not ready:
            raise IRFormatError("the graph has a cycle")
        for layer_id in ready:
            ordered.append(graph.layers[layer_id])
            done.add(layer_id)
            del pending[layer_id]
    return ordered


def constant_bytes(graph: IRGraph) -> int:
    """How many bytes of the .bin the Const layers read (each range once)."""
    ranges = {
        (int(layer.data["offset"]), int(layer.data["size"]))
        for layer in graph.layers.values()
        if layer.type == "Const"
    }
    return sum(size for _, size in ranges)


def load_ir_module(xml_path: str | PathLike[str], *, strict: bool = True) -> IRModule:
    return build_ir_module(read_ir(xml_path), strict=strict)
