"""The embedding models the database knows about: name -> dimension and default thresholds.

This is the single place that ties a model name to its vector dimension. The database stores
every model's vectors in one dimensionless ``vector`` column; each model gets its own partial
HNSW index over ``embedding::vector(<dim>)`` (see the faceid migrations), and the 1:N selector
casts to the same dimension so the planner can use that index. Adding a model therefore means:
an entry here AND a migration creating its index (a test fails when one is missing).

Default thresholds are cosine similarities (1 - cosine distance) used for a new organization's
policy, measured at a false-accept rate of 1e-3 for the models we can evaluate (the iresnets'
are typical ArcFace operating points until weights are trained); change them here only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Model names end up inlined in SQL (partial-index predicates must be literals, see selectors),
# so they are restricted to a safe alphabet.
_SAFE_NAME = re.compile(r"^[a-z0-9_]{1,48}$")


@dataclass(frozen=True)
class EmbeddingModelSpec:
    name: str
    dim: int
    # Cosine-similarity thresholds for a new organization's policy (see module docstring).
    default_threshold_unmasked: float
    default_threshold_masked: float

    @property
    def index_name(self) -> str:
        """Name of this model's partial HNSW index (created by a migration)."""
        return f"faceid_tpl_hnsw_{self.name}"


DEFAULT_EMBEDDING_MODEL = "dlib_resnet_v1"

EMBEDDING_MODELS: dict[str, EmbeddingModelSpec] = {
    spec.name: spec
    for spec in (
        # dlib's ResNet descriptor through our pipeline (flip-averaged, cosine). Chosen on the
        # development pairs (LFW identities absent from View-2, inference/tools/make_dev_pairs.py;
        # docs/benchmarks/dev_*.json) where their FAR reaches 1e-3, rounded up: unmasked 0.942 ->
        # 0.94, masked probes matched on the cutout variant 0.960 -> 0.96. Never from View-2.
        # Conservative on purpose: each organization refines them on the calibration page.
        EmbeddingModelSpec("dlib_resnet_v1", 128, 0.94, 0.96),
        # ArcFace-style iresnets: typical cosine operating points at FAR 1e-3 sit around 0.3-0.4.
        EmbeddingModelSpec("iresnet18", 512, 0.36, 0.30),
        EmbeddingModelSpec("iresnet34", 512, 0.36, 0.30),
        EmbeddingModelSpec("iresnet50", 512, 0.36, 0.30),
        EmbeddingModelSpec("iresnet100", 512, 0.36, 0.30),
    )
}

assert all(_SAFE_NAME.match(name) for name in EMBEDDING_MODELS), "model names must be SQL-safe"


class UnknownEmbeddingModel(ValueError):
    pass


def get_embedding_model(name: str) -> EmbeddingModelSpec:
    try:
        return EMBEDDING_MODELS[name]
    except KeyError:
        raise UnknownEmbeddingModel(
            f"unknown embedding model {name!r}; known: {', '.join(sorted(EMBEDDING_MODELS))}"
        ) from None


def embedding_model_choices() -> list[tuple[str, str]]:
    return [(name, f"{name} ({spec.dim}-d)") for name, spec in EMBEDDING_MODELS.items()]
