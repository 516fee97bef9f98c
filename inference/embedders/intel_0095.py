"""Intel Open Model Zoo face-reidentification-retail-0095 in PyTorch, no OpenVINO at run time.

A MobileNetV2-style network with squeeze-excitation and PReLU (batch norms folded into the
convolutions by the exporter), 128x128 BGR 0-255 in, 256 values out. Its input normalisation
(a per-channel scale and shift: the exporter's /255 and the trained input batch norm) is part of
the IR graph, so the spec's mean and scale are 0 and 1. The graph is run by
inference.embedders.openvino_ir from the .xml/.bin shipped in inference/weights/intel_0095/
(Apache-2.0, LICENSE beside them); tests/inference/test_embedder_intel_0095.py checks it against
the OpenVINO runtime.
"""

from __future__ import annotations

from os import PathLike
from pathlib import Path

import torch
from torch import nn

from inference.device import resolve_device
from inference.embedders.base import Embedder, cached_module
from inference.embedders.openvino_ir import IRFormatError, IRModule, load_ir_module
from inference.embedders.registry import embedder_spec
from inference.embedders.spec import EmbedderSpec, files_digest, version_for_weights

NAME = "intel_0095"


def default_weights_path() -> Path:
    """The .xml the registry's spec points at (its .bin beside it)."""
    return embedder_spec(NAME).weights_path()


class Intel0095(nn.Module):
    """Input: N x 3 x 128 x 128, BGR 0-255. Output: N x 256, not normalised."""

    def __init__(self, graph: IRModule) -> None:
        super().__init__()
        # Channels-last tensors take oneDNN's kernels for the 1x1 and depthwise convolutions:
        # about 25% less time per face on one CPU thread than NCHW (same outputs within 2e-6).
        self.graph = graph.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The IR's output is N x 256 x 1 x 1 (a 1x1 convolution after global depthwise pooling).
        return torch.flatten(self.graph(x.contiguous(memory_format=torch.channels_last)), 1)


def load_intel_0095(xml_path: str | PathLike[str] | None = None) -> Intel0095:
    graph = load_ir_module(xml_path or default_weights_path(), strict=True)
    if graph.input_shape[1:] != (3, 128, 128):
        raise IRFormatError(f"expected a 3x128x128 input, the IR has {graph.input_shape}")
    return Intel0095(graph)


def create(
    spec: EmbedderSpec, *, device: str = "auto", weights: str | PathLike[str] | None = None
) -> Embedder:
    """The factory the registry names for intel_0095; weights= another .xml (its .bin beside it)."""
    if weights is None:
        path = spec.weights_path()
    else:
        path = Path(weights)
        if not path.is_file() or not path.with_suffix(".bin").is_file():
            raise FileNotFoundError(f"{spec.name}: {path} and the .bin beside it are needed")
    digest = files_digest(path, path.with_suffix(".bin"))
    source = f"{path} and its .bin"
    spec = version_for_weights(spec, digest, shipped=weights is None, source=source, error=IRFormatError)
    torch_device = resolve_device(device)
    module = cached_module((spec.name, digest), torch_device, lambda: load_intel_0095(path))
    return Embedder(spec, module, torch_device)
