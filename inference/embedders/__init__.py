"""Face embedders by name, like timm's model registry.

spec = embedder_spec("dlib_resnet_v1")        # dimension, template, version: no weights read
embedder = create_embedder("dlib_resnet_v1")  # network built once per process and device
vectors = embedder.embed(crops)               # crops: align_face(rgb, face, spec.template)
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass

import torch
from torch import nn

from inference.align import AlignTemplate
from inference.device import resolve_device
from inference.embedders.base import Embedder, EmbedderSpec

DEFAULT_EMBEDDER = "dlib_resnet_v1"

Factory = Callable[..., Embedder]


class UnknownEmbedderError(ValueError):
    pass


@dataclass(frozen=True)
class _Entry:
    spec: EmbedderSpec
    factory: Factory


_registry: dict[str, _Entry] = {}


def register_embedder(
    name: str, *, version: str, dim: int, template: AlignTemplate, description: str = ""
) -> Callable[[Factory], Factory]:
    """Register `factory(spec, device, **kwargs) -> Embedder` under name."""

    def decorator(factory: Factory) -> Factory:
        if name in _registry:
            raise ValueError(f"embedder {name!r} is already registered")
        spec = EmbedderSpec(
            name=name,
            version=version,
            dim=dim,
            template=template,
            input_size=template.size,
            description=description,
        )
        _registry[name] = _Entry(spec, factory)
        return factory

    return decorator


def available_embedders() -> list[str]:
    return sorted(_registry)


def embedder_spec(name: str = DEFAULT_EMBEDDER) -> EmbedderSpec:
    """The embedder's dimension, template, input size and version, without building it."""
    return _entry(name).spec


def create_embedder(name: str = DEFAULT_EMBEDDER, *, device: str = "auto", **kwargs: object) -> Embedder:
    entry = _entry(name)
    return entry.factory(entry.spec, resolve_device(device), **kwargs)


_modules: dict[Hashable, nn.Module] = {}
_modules_lock = threading.Lock()


def cached_module(key: Hashable, device: torch.device, build: Callable[[], nn.Module]) -> nn.Module:
    """One built network per (key, device) in this process: weights are parsed and moved once."""
    full_key = (key, str(device))
    with _modules_lock:
        module = _modules.get(full_key)
        if module is None:
            module = build().to(device).eval()
            for parameter in module.parameters():
                parameter.requires_grad_(False)
            _modules[full_key] = module
        return module


def _entry(name: str) -> _Entry:
    try:
        return _registry[name]
    except KeyError:
        known = ", ".join(available_embedders())
        raise UnknownEmbedderError(f"unknown embedder {name!r}; available: {known}") from None


# Registration happens on import of the implementations.
from inference.embedders import dlib_resnet, iresnet  # noqa: E402, F401

__all__ = [
    "DEFAULT_EMBEDDER",
    "Embedder",
    "EmbedderSpec",
    "UnknownEmbedderError",
    "available_embedders",
    "cached_module",
    "create_embedder",
    "embedder_spec",
    "register_embedder",
]
