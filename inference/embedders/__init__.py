"""Face embedders by name, like timm's model registry.

spec = embedder_spec("dlib_resnet_v1")        # dimension, input, thresholds, weights: plain data
deployable_embedders()                        # the models whose weights are on this machine
embedder = create_embedder("dlib_resnet_v1")  # network built once per process and device
vectors = embedder.embed(crops)               # crops: align_face(rgb, face, spec.template)

Importing this package imports neither torch nor OpenCV: specs are plain data, and the module that
builds a network (the spec's `factory`, "module:function") is imported by create_embedder, the
way timm resolves a model's entry point.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from inference.embedders.registry import (
    DEFAULT_EMBEDDER,
    available_embedders,
    deployable_embedders,
    embedder_spec,
    register_embedder,
)
from inference.embedders.spec import (
    EmbedderSpec,
    InputConfig,
    UnknownEmbedderError,
    WeightsSource,
    WeightsUnavailableError,
    weights_dir,
)

if TYPE_CHECKING:
    from inference.embedders.base import Embedder


def create_embedder(name: str = DEFAULT_EMBEDDER, *, device: str = "auto", **kwargs: object) -> Embedder:
    """Build (or reuse) the named network on a device; kwargs go to its factory (e.g. weights=PATH)."""
    spec = embedder_spec(name)
    module_name, _, function = spec.factory.partition(":")
    factory = getattr(importlib.import_module(module_name), function)
    return factory(spec, device=device, **kwargs)


__all__ = [
    "DEFAULT_EMBEDDER",
    "EmbedderSpec",
    "InputConfig",
    "UnknownEmbedderError",
    "WeightsSource",
    "WeightsUnavailableError",
    "available_embedders",
    "create_embedder",
    "deployable_embedders",
    "embedder_spec",
    "register_embedder",
    "weights_dir",
]
