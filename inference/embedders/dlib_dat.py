"""Reader for dlib's serialised DNN files (the `.dat` of dlib_face_recognition_resnet_model_v1).

dlib writes a network from the loss layer inwards: first every wrapper's version number
(2 for a computational layer, 1 for a tag or skip, 3 for the innermost layer above the input),
then the input layer, then each computational layer's details from the input outwards, each
followed by three '0'/'1' state characters and three (empty) gradient/cache tensors. Tags and
skips write nothing but their version, so the wiring is recovered from the layer sequence by
the network builder (dlib_resnet.py), which knows the architecture.

Encodings: an integer is one control byte (low 4 bits: how many bytes follow; 0x80: negative)
then the magnitude little-endian; a float is an integer mantissa and an integer exponent
(value = mantissa * 2**exponent); a string is its length then its bytes; a tensor is version 2,
four integers (n, k, rows, cols), then n*k*rows*cols little-endian float32.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

import numpy as np

INPUT_LAYERS = ("input_rgb_image_sized", "input_rgb_image")


class DlibFormatError(ValueError):
    """The file is not a dlib DNN in the layout this reader understands."""


@dataclass
class DlibLayer:
    kind: str  # "con", "affine", "relu", "max_pool", "avg_pool", "add_prev", "fc"
    params: np.ndarray | None = None
    fields: dict[str, object] = field(default_factory=dict)


@dataclass
class DlibNetwork:
    loss: str
    input_kind: str
    input_mean: tuple[float, float, float]  # RGB, subtracted before dividing by 256
    input_size: tuple[int, int]  # rows, cols
    layers: list[DlibLayer]  # from the input outwards
    wrapper_versions: list[int]

    @property
    def parameter_count(self) -> int:
        return sum(layer.params.size for layer in self.layers if layer.params is not None)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.data)

    def integer(self) -> int:
        if self.pos >= len(self.data):
            raise DlibFormatError("unexpected end of file")
        control = self.data[self.pos]
        size = control & 0x0F
        if size > 8:
            raise DlibFormatError(f"bad integer control byte {control:#x} at offset {self.pos}")
        raw = self.data[self.pos + 1 : self.pos + 1 + size]
        if len(raw) != size:
            raise DlibFormatError("unexpected end of file")
        self.pos += 1 + size
        value = int.from_bytes(raw, "little")
        return -value if control & 0x80 else value

    def real(self) -> float:
        mantissa = self.integer()
        exponent = self.integer()
        return float(np.ldexp(np.float64(mantissa), exponent))

    def string(self) -> str:
        length = self.integer()
        raw = self.data[self.pos : self.pos + length]
        if len(raw) != length:
            raise DlibFormatError("unexpected end of file")
        self.pos += length
        return raw.decode("latin-1")

    def peek_string(self, candidates: tuple[str, ...]) -> str | None:
        for name in candidates:
            encoded = bytes([1, len(name)]) + name.encode()
            if self.data.startswith(encoded, self.pos):
                return name
        return None

    def tensor(self) -> np.ndarray:
        version = self.integer()
        if version != 2:
            raise DlibFormatError(f"unsupported tensor version {version} at offset {self.pos}")
        shape = tuple(self.integer() for _ in range(4))
        count = int(np.prod(shape))
        end = self.pos + 4 * count
        if end > len(self.data):
            raise DlibFormatError("unexpected end of file inside a tensor")
        values = np.frombuffer(self.data, dtype="<f4", count=count, offset=self.pos).reshape(shape)
        self.pos = end
        return values.astype(np.float32)

    def alias(self) -> tuple[int, int, int, int]:
        version = self.integer()
        if version != 1:
            raise DlibFormatError(f"unsupported alias_tensor version {version}")
        return tuple(self.integer() for _ in range(4))  # type: ignore[return-value]

    def flags(self, count: int) -> str:
        raw = self.data[self.pos : self.pos + count].decode("latin-1")
        if len(raw) != count or set(raw) - {"0", "1"}:
            raise DlibFormatError(f"expected {count} state characters at offset {self.pos}")
        self.pos += count
        return raw


def _read_con(reader: _Reader) -> DlibLayer:
    params = reader.tensor()
    fields: dict[str, object] = {
        "num_filters": reader.integer(),
        "rows": reader.integer(),
        "cols": reader.integer(),
        "stride_y": reader.integer(),
        "stride_x": reader.integer(),
        "padding_y": reader.integer(),
        "padding_x": reader.integer(),
    }
    fields["filters_shape"] = reader.alias()
    fields["biases_shape"] = reader.alias()
    for name in ("lr_mult", "wd_mult", "bias_lr_mult", "bias_wd_mult"):
        fields[name] = reader.real()
    return DlibLayer("con", params.reshape(-1), fields)


def _read_affine(reader: _Reader) -> DlibLayer:
    params = reader.tensor()
    fields: dict[str, object] = {
        "gamma_shape": reader.alias(),
        "beta_shape": reader.alias(),
        "mode": reader.integer(),
    }
    return DlibLayer("affine", params.reshape(-1), fields)


def _read_pool(kind: str) -> callable:
    def read(reader: _Reader) -> DlibLayer:
        names = ("rows", "cols", "stride_y", "stride_x", "padding_y", "padding_x")
        return DlibLayer(kind, None, {name: reader.integer() for name in names})

    return read


def _read_fc(reader: _Reader) -> DlibLayer:
    fields: dict[str, object] = {"num_outputs": reader.integer(), "num_inputs": reader.integer()}
    params = reader.tensor()
    fields["weights_shape"] = reader.alias()
    fields["biases_shape"] = reader.alias()
    fields["bias_mode"] = reader.integer()  # 1: no bias
    for name in ("lr_mult", "wd_mult", "bias_lr_mult", "bias_wd_mult"):
        fields[name] = reader.real()
    return DlibLayer("fc", params.reshape(-1), fields)


_LAYER_READERS = {
    "con_4": _read_con,
    "affine_": _read_affine,
    "relu_": lambda reader: DlibLayer("relu"),
    "max_pool_2": _read_pool("max_pool"),
    "avg_pool_2": _read_pool("avg_pool"),
    "add_prev_": lambda reader: DlibLayer("add_prev"),
    "fc_2": _read_fc,
}


def read_dlib_network(path: str | PathLike[str]) -> DlibNetwork:
    """Parse a dlib DNN file with a metric loss, an RGB input and the layer types above."""
    reader = _Reader(Path(path).read_bytes())
    if reader.integer() != 1:
        raise DlibFormatError("not a dlib loss-layer file (unexpected leading version)")
    loss = reader.string()
    if not loss.startswith("loss_metric"):
        raise DlibFormatError(f"unsupported loss layer {loss!r}")
    reader.real()  # margin
    reader.real()  # distance threshold

    versions = []
    while (input_kind := reader.peek_string(INPUT_LAYERS)) is None:
        versions.append(reader.integer())
        if len(versions) > 10_000:
            raise DlibFormatError("no input layer found")
    reader.string()
    mean = (reader.real(), reader.real(), reader.real())
    size = (reader.integer(), reader.integer()) if input_kind == "input_rgb_image_sized" else (0, 0)

    layers = []
    while not reader.at_end():
        name = reader.string()
        read = _LAYER_READERS.get(name)
        if read is None:
            raise DlibFormatError(f"unsupported layer type {name!r}")
        layers.append(read(reader))
        reader.flags(3)
        for _ in range(3):
            if reader.tensor().size:
                raise DlibFormatError("expected empty gradient tensors")
        if len(layers) == 1 and versions and versions[-1] == 3:
            reader.integer()  # the innermost layer's sample expansion factor (version 3 only)
    return DlibNetwork(loss, input_kind, mean, size, layers, versions)
