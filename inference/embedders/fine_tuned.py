"""Embedders fine-tuned from a registry model by the training toolkit (`toolkit.training.export`).

A fine-tuned weights file holds the base model's name and version and the trained state_dict
(float16); the network is the base's, built from the base's own shipped files and then given
the trained tensors, strictly: every key of the base must be there and nothing else. The spec's
version carries the digest of the trained file, so its vectors never mix with the base's.
"""

from __future__ import annotations

from collections.abc import Callable
from os import PathLike
from pathlib import Path

import torch
from torch import nn

from inference.device import resolve_device
from inference.embedders.base import Embedder, cached_module
from inference.embedders.registry import embedder_spec
from inference.embedders.spec import EmbedderSpec, files_digest, version_for_weights

FORMAT = "faceid-fine-tuned-1"


class FineTunedFormatError(ValueError):
    pass


def _intel_0095() -> nn.Module:
    from inference.embedders.intel_0095 import load_intel_0095

    return load_intel_0095()


def _dlib_resnet_v1() -> nn.Module:
    from inference.embedders.dlib_resnet import load_dlib_resnet

    return load_dlib_resnet()


# The bases a fine-tuned file may name: each builds the base network from its shipped weights.
BASES: dict[str, Callable[[], nn.Module]] = {"intel_0095": _intel_0095, "dlib_resnet_v1": _dlib_resnet_v1}


def read_fine_tuned(path: Path) -> dict:
    payload = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise FineTunedFormatError(f"{path} is not a fine-tuned weights file ({FORMAT})")
    base = payload.get("base")
    if base not in BASES:
        raise FineTunedFormatError(f"{path}: unknown base model {base!r}; known: {sorted(BASES)}")
    current = embedder_spec(base).version
    if payload.get("base_version") != current:
        # The file holds every tensor, but the network's wiring comes from the base's files:
        # another base version may be wired differently.
        raise FineTunedFormatError(
            f"{path} was trained from {base} {payload.get('base_version')}, this registry ships {current}"
        )
    return payload


def build_fine_tuned(path: Path) -> nn.Module:
    payload = read_fine_tuned(path)
    module = BASES[payload["base"]]()
    state = {key: value.float() for key, value in payload["state_dict"].items()}
    module.load_state_dict(state, strict=True)
    return module


def create(
    spec: EmbedderSpec, *, device: str = "auto", weights: str | PathLike[str] | None = None
) -> Embedder:
    """The factory of registered fine-tuned models; weights= another fine-tuned file."""
    path = spec.weights_path() if weights is None else Path(weights)
    if not path.is_file():
        raise FileNotFoundError(f"{spec.name} weights not found at {path}")
    digest = files_digest(path)
    spec = version_for_weights(spec, digest, shipped=weights is None, source=path, error=FineTunedFormatError)
    torch_device = resolve_device(device)
    module = cached_module((spec.name, digest), torch_device, lambda: build_fine_tuned(path))
    return Embedder(spec, module, torch_device)
