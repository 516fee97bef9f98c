"""The one scoring rule: which space a probe and an enrolled photo are compared in, and the decision.

A pair is compared in the full-face space only when neither side is masked. When either side is
(the probe's mask decision, or an enrolled photo that has no full-face template because it was
taken with a mask on) it is compared in the mask-aware space on both sides, against the masked
threshold: no pair goes unscored because of which side wore the mask. When a mask decision is
unsure (inference.variants.UNSURE_BAND), an enrolled photo that has both spaces is compared in
both and must pass both: the stricter decision wins.

A person's decision is the best of their photos' decisions, ranked by the margin over the
threshold of the space each was decided in (similarities of different spaces are not comparable;
margins against their own thresholds are). The same rule serves the verify flow, identify's
re-ranking and the evaluation CLI. Pure Python and numpy, for the web process too.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from inference.variants import SPACE_FULL, SPACE_MASKED, VARIANT_FULL, mask_aware_variant

Vectors = Sequence[Sequence[float]] | np.ndarray


@dataclass(frozen=True)
class Thresholds:
    """The organization's (or a benchmark's) cosine thresholds per comparison space."""

    unmasked: float
    masked: float

    def for_space(self, space: str) -> float:
        return self.masked if space == SPACE_MASKED else self.unmasked


@dataclass(frozen=True)
class ProbeSide:
    """What a probe frame carries: vectors per template variant and its mask decision."""

    vectors: Mapping[str, Vectors]
    masked: bool
    unsure: bool = False


@dataclass(frozen=True)
class EnrolledPhoto:
    """One enrollment photo's templates (variant -> vectors); `unsure`: its mask decision was."""

    key: Hashable
    templates: Mapping[str, Vectors]
    unsure: bool = False

    @property
    def has_full(self) -> bool:
        return _count(self.templates.get(VARIANT_FULL)) > 0


@dataclass(frozen=True)
class Comparison:
    space: str
    variant: str
    similarity: float
    threshold: float

    @property
    def accepted(self) -> bool:
        return self.similarity >= self.threshold

    @property
    def margin(self) -> float:
        return self.similarity - self.threshold


@dataclass(frozen=True)
class Decision:
    """The deciding comparison of the best photo, and every comparison made with that photo."""

    deciding: Comparison
    comparisons: tuple[Comparison, ...]
    photo: Hashable | None = None

    @property
    def accepted(self) -> bool:
        return all(c.accepted for c in self.comparisons)

    @property
    def similarity(self) -> float:
        return self.deciding.similarity

    @property
    def threshold(self) -> float:
        return self.deciding.threshold

    @property
    def space(self) -> str:
        return self.deciding.space

    def describe(self) -> str:
        """For the audit row's reason: the space, its variant, and the other comparison if any."""
        text = f"compared in the {self.space} space ({self.deciding.variant})"
        others = [c for c in self.comparisons if c is not self.deciding]
        if others:
            other = others[0]
            text += (
                f"; unsure mask decision, also {other.space} {other.similarity:.4f} vs {other.threshold:.4f}"
                ", the stricter decides"
            )
        return text


def spaces_for(
    *, probe_masked: bool, probe_unsure: bool, photo_has_full: bool, photo_unsure: bool
) -> tuple[str, ...]:
    """The spaces one probe and one enrolled photo must be compared in (all must accept)."""
    if not photo_has_full:
        # A photo taken with a mask on is never a full-face template (see the pipeline's
        # _enrollment_crops): it is compared mask-aware, whatever the probe.
        return (SPACE_MASKED,)
    if probe_unsure or photo_unsure:
        return (SPACE_FULL, SPACE_MASKED)
    return (SPACE_MASKED,) if probe_masked else (SPACE_FULL,)


def probe_spaces(*, masked: bool, unsure: bool, mask_aware: bool = False) -> tuple[str, ...]:
    """The spaces a probe frame carries vectors for. `mask_aware`: the caller knows it will meet
    photos that exist only in the mask-aware space (or whose own mask decision was unsure)."""
    spaces = []
    if not masked or unsure:
        spaces.append(SPACE_FULL)
    if masked or unsure or mask_aware:
        spaces.append(SPACE_MASKED)
    return tuple(spaces)


def space_variant(space: str, strategy: str) -> str:
    """The template variant compared in a space under the organization's mask strategy."""
    return VARIANT_FULL if space == SPACE_FULL else mask_aware_variant(strategy)


def score_photo(
    probe: ProbeSide, photo: EnrolledPhoto, *, strategy: str, thresholds: Thresholds
) -> Decision | None:
    """The probe against one photo; None when no comparison its spaces call for can be made."""
    comparisons = []
    spaces = spaces_for(
        probe_masked=probe.masked,
        probe_unsure=probe.unsure,
        photo_has_full=photo.has_full,
        photo_unsure=photo.unsure,
    )
    for space in spaces:
        variant = space_variant(space, strategy)
        similarity = _best_cosine(probe.vectors.get(variant), photo.templates.get(variant))
        if similarity is not None:
            comparisons.append(Comparison(space, variant, similarity, thresholds.for_space(space)))
    if not comparisons:
        return None
    deciding = min(comparisons, key=lambda c: c.margin)  # the stricter one
    return Decision(deciding=deciding, comparisons=tuple(comparisons), photo=photo.key)


def decide(
    probe: ProbeSide, photos: Iterable[EnrolledPhoto], *, strategy: str, thresholds: Thresholds
) -> Decision | None:
    """The probe against a person's photos: the photo decision with the largest margin (None: no
    photo could be compared)."""
    best: Decision | None = None
    for photo in photos:
        decision = score_photo(probe, photo, strategy=strategy, thresholds=thresholds)
        if decision is not None and (best is None or decision.deciding.margin > best.deciding.margin):
            best = decision
    return best


def _count(vectors: Vectors | None) -> int:
    return 0 if vectors is None else len(vectors)


def _best_cosine(probe: Vectors | None, enrolled: Vectors | None) -> float | None:
    if _count(probe) == 0 or _count(enrolled) == 0:
        return None
    scores = np.asarray(enrolled, dtype=np.float32) @ np.asarray(probe, dtype=np.float32).T
    return float(scores.max())
