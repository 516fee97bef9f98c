"""Identify's thresholds: chosen per search for the organization's FPIR target at its gallery's size.

A 1:1 threshold holds a false accept rate per comparison; a search makes one comparison per
enrolled person, so at the same threshold an unknown face is called someone far more often as the
gallery grows. Each search therefore takes, per comparison space (unmasked, and the mask-aware
variant of the policy's strategy), the threshold that keeps the false-positive identification
rate per search at the policy's `identify_fpir` for the number of persons it searches
(inference.openset, from the model's shipped reference impostor distribution), and never less
than the policy's 1:1 threshold. Counting the gallery is one indexed COUNT per search, so the
thresholds follow the gallery as it grows without anything to recompute or store.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from faceid.models import FaceTemplate
from inference.openset import OpenSetThreshold, load_references, open_set_threshold, space_for
from inference.variants import MASK_STRATEGIES
from tenants.models import DEFAULT_IDENTIFY_FPIR, Organization


def gallery_size(organization: Organization, model_name: str) -> int:
    """How many persons a search compares with: the active persons with templates of the model."""
    return (
        FaceTemplate.objects.filter(organization=organization, model_name=model_name, person__active=True)
        .values("person_id")
        .distinct()
        .count()
    )


class PolicyLike(Protocol):
    """What is read of a policy: an OrganizationPolicy or a flow's PolicySnapshot."""

    embedding_model: str
    mask_strategy: str

    def threshold_for(self, *, masked: bool) -> float: ...


@dataclass(frozen=True)
class IdentifyThresholds:
    """One search's thresholds. It reads like a policy (`threshold_for`, `threshold_unmasked`,
    `threshold_masked`), so any scoring code that takes a policy's thresholds takes these."""

    model_name: str
    gallery_size: int
    target_fpir: float
    unmasked: OpenSetThreshold
    masked: OpenSetThreshold

    @property
    def threshold_unmasked(self) -> float:
        return self.unmasked.threshold

    @property
    def threshold_masked(self) -> float:
        return self.masked.threshold

    def threshold_for(self, *, masked: bool) -> float:
        return self.threshold_masked if masked else self.threshold_unmasked

    def describe(self, *, masked: bool) -> str:
        """For the audit row: what the threshold was chosen for, and how."""
        chosen = self.masked if masked else self.unmasked
        text = f"searched {self.gallery_size} person(s); identify threshold {chosen.threshold:.4f} for FPIR "
        text += f"{self.target_fpir:g} per search"
        if chosen.basis == "verify":
            return text + " (the 1:1 threshold: as strict or stricter)"
        return text + f" (FAR {chosen.far_per_comparison:.2e} per comparison, {chosen.basis})"


def identify_thresholds(
    organization: Organization, policy: PolicyLike, *, model_name: str | None = None, size: int | None = None
) -> IdentifyThresholds:
    """The thresholds of a search by this organization under `policy` (an OrganizationPolicy or a
    PolicySnapshot) with `model_name` (default: the policy's model); `size`: the gallery size when
    the caller has counted it already."""
    model = model_name or policy.embedding_model
    persons = gallery_size(organization, model) if size is None else size
    fpir = float(getattr(policy, "identify_fpir", DEFAULT_IDENTIFY_FPIR))
    references = load_references(model)
    variant = MASK_STRATEGIES.get(policy.mask_strategy)
    chosen = {
        masked: open_set_threshold(
            references.get(space_for(masked=masked, variant=variant)),
            target_fpir=fpir,
            gallery_size=persons,
            verify_threshold=float(policy.threshold_for(masked=masked)),
        )
        for masked in (False, True)
    }
    return IdentifyThresholds(model, persons, fpir, chosen[False], chosen[True])
