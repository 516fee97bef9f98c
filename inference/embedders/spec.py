"""What the registry knows about an embedder before building it (like timm's pretrained config).

Plain data: reading a spec imports neither torch nor OpenCV, so the web process, the database
models and the policy forms use the same specs as the worker that runs the networks.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
from dataclasses import dataclass, replace
from pathlib import Path

from inference.templates import AlignTemplate

# Operator-provided weights (the iresnets) are looked up here; the environment variable is read
# by the inference package itself, so workers and tools agree without Django settings.
WEIGHTS_DIR_ENV = "INFERENCE_WEIGHTS_DIR"
_BUNDLED_WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"

# Model names end up inlined in SQL (a partial index's predicate must be a literal, see
# faceid.selectors), so they are restricted to a safe alphabet.
_SQL_SAFE_NAME = re.compile(r"^[a-z0-9_]{1,48}$")


class UnknownEmbedderError(ValueError):
    pass


class WeightsUnavailableError(ValueError):
    """The embedder is registered but its weights are not on this machine."""


def files_digest(*paths: Path) -> str:
    """The first 12 hex digits of the sha256 of the files' bytes, in order: part of a model's
    version, so that new weights cannot arrive under an old version."""
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:12]


def weights_dir() -> Path:
    """Where operator-provided weights live: $INFERENCE_WEIGHTS_DIR, else inference/weights/."""
    configured = os.environ.get(WEIGHTS_DIR_ENV)
    return Path(configured) if configured else _BUNDLED_WEIGHTS_DIR


@dataclass(frozen=True)
class WeightsSource:
    """Where an embedder's weights come from.

    With `package`, `file` is a path inside that installed package's directory (found without
    importing the package); without, a path inside weights_dir().
    """

    file: str
    package: str | None = None
    origin: str = ""  # how a person obtains the file

    def path(self) -> Path | None:
        """Where the file is, or would be; None when the package holding it is not installed."""
        if self.package is None:
            return weights_dir() / self.file
        found = importlib.util.find_spec(self.package)
        if found is None or found.origin is None:
            return None
        return Path(found.origin).parent / self.file

    @property
    def available(self) -> bool:
        path = self.path()
        return path is not None and path.is_file()


@dataclass(frozen=True)
class InputConfig:
    """The crop an embedder takes: aligned to `template`, then (pixel - mean) * scale per channel.

    The pipeline always hands RGB crops; `channel_order="bgr"` makes the embedder reverse the
    channels first (mean and scale are then given in BGR order, as the network's authors give
    them). `align_mode` names the landmark fit for full-face crops (inference.align.ALIGN_MODES):
    the best source of the five points differs per model and is chosen by measurement.
    """

    template: AlignTemplate
    mean: tuple[float, float, float]
    scale: tuple[float, float, float]
    channel_order: str = "rgb"
    align_mode: str = "five_point"

    def __post_init__(self) -> None:
        if self.channel_order not in ("rgb", "bgr"):
            raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {self.channel_order!r}")


@dataclass(frozen=True)
class EmbedderSpec:
    name: str
    version: str  # changes whenever the vectors would; stored beside every template
    dim: int
    input: InputConfig
    # Cosine-similarity thresholds a policy starts from when it selects this model.
    default_threshold_unmasked: float
    default_threshold_masked: float
    # The lowest thresholds a policy may set for this model (tenants.models.OrganizationPolicy
    # refuses anything below, the database too): a guard against a threshold that lets through a
    # share of impostors no organization wants, whatever its calibration proposes.
    floor_threshold_unmasked: float
    floor_threshold_masked: float
    weights: WeightsSource
    licence: str
    # "module:function" building the network: imported only when create_embedder needs it.
    factory: str
    description: str = ""

    def __post_init__(self) -> None:
        if not _SQL_SAFE_NAME.match(self.name):
            raise ValueError(
                f"embedder name {self.name!r} must match {_SQL_SAFE_NAME.pattern} (it is inlined in SQL)"
            )
        if ":" not in self.factory:
            raise ValueError(f"factory {self.factory!r} must be 'module:function'")
        for kind in ("unmasked", "masked"):
            floor = getattr(self, f"floor_threshold_{kind}")
            default = getattr(self, f"default_threshold_{kind}")
            if not -1.0 <= floor <= default <= 1.0:
                raise ValueError(
                    f"{self.name}: the {kind} floor {floor} must lie in [-1, the default {default}]"
                )

    def floor_for(self, *, masked: bool) -> float:
        return self.floor_threshold_masked if masked else self.floor_threshold_unmasked

    @property
    def template(self) -> AlignTemplate:
        """The crops embed() expects come from align_face(..., template)."""
        return self.input.template

    @property
    def input_size(self) -> tuple[int, int]:
        """Width, height: the template's size."""
        return self.input.template.size

    @property
    def index_name(self) -> str:
        """This model's partial HNSW index over its templates (created by a faceid migration)."""
        return f"faceid_tpl_hnsw_{self.name}"

    @property
    def available(self) -> bool:
        """Whether the weights are on this machine (checked on each call: a file can appear)."""
        return self.weights.available

    def weights_path(self) -> Path:
        """The weights file, or WeightsUnavailableError saying where to put it."""
        path = self.weights.path()
        if path is None or not path.is_file():
            where = f"package {self.weights.package}" if path is None else str(path)
            raise WeightsUnavailableError(
                f"{self.name} weights not found ({where}); they come from: {self.weights.origin}"
            )
        return path


def version_for_weights(
    spec: EmbedderSpec, digest: str, *, shipped: bool, source: object, error: type[ValueError]
) -> EmbedderSpec:
    """The spec whose version names the weights in use (`digest`: files_digest of them).

    Shipped weights must carry the digest the registered version ends with, so the web process
    knows a model's version without reading its files; other bytes under an old version are
    refused with `error` (new weights need a new version). Weights passed explicitly get a
    version of their own: their vectors must never be compared with the shipped ones'.
    """
    if spec.version.endswith(f"-{digest}"):
        return spec
    if shipped:
        raise error(
            f"{source} has digest {digest}, but the registered version is {spec.version}: "
            "weights changed without a new model version"
        )
    return replace(spec, version=f"{spec.name}-{digest}")
