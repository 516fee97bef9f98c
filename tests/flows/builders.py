"""Builders for the flow tests: pipeline outputs constructed by hand, and a gallery of people
enrolled with known vectors, so that a probe can sit at a chosen cosine similarity to one of them."""

from __future__ import annotations

import hashlib
import itertools
from dataclasses import dataclass, field

import numpy as np

from faceid import services
from faceid.contracts import FrameResult, PipelineOutput, Quality
from faceid.flows import ImageInput
from faceid.models import Person
from inference.embedders import embedder_spec
from inference.variants import VARIANT_CUTOUT, VARIANT_FULL
from tenants.models import Organization

MODEL = "dlib_resnet_v1"
DIM = embedder_spec(MODEL).dim
# Explicit thresholds: the tests check the flows' decisions, not the defaults' calibration.
# dlib_resnet_v1's scale, at or above its floors (the flow tests pin that model).
THRESHOLDS = {"embedding_model": "dlib_resnet_v1", "threshold_unmasked": 0.92, "threshold_masked": 0.96}
_serial = itertools.count(1)


def unit(vector: np.ndarray) -> list[float]:
    return (vector / np.linalg.norm(vector)).astype(np.float32).tolist()


def at_similarity(target: list[float], similarity: float, rng: np.random.Generator) -> list[float]:
    """A unit vector whose cosine similarity with `target` (a unit vector) is `similarity`."""
    t = np.asarray(target, dtype=np.float64)
    noise = rng.standard_normal(t.size)
    orthogonal = noise - noise.dot(t) * t
    orthogonal /= np.linalg.norm(orthogonal)
    return unit(similarity * t + np.sqrt(1.0 - similarity**2) * orthogonal)


def frame(
    embeddings: dict[str, list[list[float]]] | None = None,
    *,
    masked: bool = False,
    refusal: str | None = None,
) -> FrameResult:
    found = refusal != "no_face"
    return FrameResult(
        refusal=refusal,
        face_found=found,
        bbox=(10.0, 10.0, 110.0, 130.0) if found else None,
        quality=Quality(0.9, 120.0, 80.0, 2.0, 1.0, 0.5, True) if found else None,
        masked=masked if found else None,
        mask_probability=(0.97 if masked else 0.02) if found else None,
        embeddings=embeddings or {},
        timings_ms={"detect": 5.0, "embed": 20.0},
    )


def output(*frames: FrameResult) -> PipelineOutput:
    return PipelineOutput(model_name=MODEL, model_version="test-v1", device="cpu", results=frames)


def images(n: int = 1) -> list[ImageInput]:
    return [ImageInput(f"photo {next(_serial)}".encode(), f"p{i}.jpg", "image/jpeg") for i in range(n)]


@dataclass
class Enrolled:
    person: Person
    full: list[float]
    cutout: list[float]


@dataclass
class Gallery:
    organization: Organization
    rng: np.random.Generator
    people: dict[str, Enrolled] = field(default_factory=dict)

    def enroll(
        self, external_id: str, *, variants: tuple[str, ...] = (VARIANT_FULL, VARIANT_CUTOUT)
    ) -> Enrolled:
        person = services.create_person(self.organization, external_id=external_id, display_name=external_id)
        vectors = {variant: unit(self.rng.standard_normal(DIM)) for variant in (VARIANT_FULL, VARIANT_CUTOUT)}
        services.store_templates(
            self.organization,
            person,
            [
                services.TemplateData(
                    model_name=MODEL,
                    model_version="test-v1",
                    variant=variant,
                    embedding=vectors[variant],
                    source_sha256=hashlib.sha256(external_id.encode()).hexdigest(),
                    quality=0.9,
                    mask_probability=0.02,
                )
                for variant in variants
            ],
        )
        enrolled = Enrolled(person, vectors[VARIANT_FULL], vectors[VARIANT_CUTOUT])
        self.people[external_id] = enrolled
        return enrolled

    def probe_vector(self) -> list[float]:
        """A vector of nobody enrolled."""
        return unit(self.rng.standard_normal(DIM))

    def probe(self, external_id: str, similarity: float, *, variant: str = VARIANT_FULL) -> list[float]:
        enrolled = self.people[external_id]
        target = enrolled.full if variant == VARIANT_FULL else enrolled.cutout
        return at_similarity(target, similarity, self.rng)
