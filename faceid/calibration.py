"""Calibrate an organization's thresholds on its own enrolled templates, pooled with the model's
shipped reference impostor distribution.

Genuine scores: cosine similarities between templates of the same person made from different
photos; impostor scores: between templates of different persons. Unmasked probes are matched
against full-face templates, so the unmasked distributions compare `full` with `full`; masked
probes against the mask-aware variant of the policy's strategy, so the masked distributions compare
that variant with itself (a synthetic mask or a blanked lower face on both sides: the closest stand-in
for a real masked probe the stored templates allow).

Impostor rates are pooled with the model's reference distribution in the same space
(inference/weights/reference_impostors/<model>.json: score statistics of about a million impostor
pairs, no faces), weighted by pairs (`inference.threshold_search.PooledImpostors`): a small
organization's few pairs cannot support a target like 1e-4, the pooled sample can. (The reference's
masked spaces compare real masked probes with the variant's templates: nearer to production than
the organization's variant-against-variant stand-in.) The proposed threshold is the lowest on a
0.0001 grid whose pooled FAR does not exceed the target and whose FAR on the organization's own
pairs does not either (its own data, where it shows impostors scoring high, is never outvoted).
A model without a shipped reference is calibrated on the organization's pairs alone. A FAR below
1/(pairs) cannot be measured: ``resolved`` is false and the proposal says so, and a measured FAR of
0 is shown as "below 1/pairs", the smallest FAR the sample supports.

A proposal may be applied only when the sample can support the target (``applicable``): at least
3/target_far impostor pairs, pooled (the rule of three: with no false accept among n independent
pairs the FAR is below 3/n at 95% confidence, so fewer pairs cannot show that the target is met even
when none passes), and a threshold at or above the model's floor. The console and the
`calibrate_thresholds` command refuse any other proposal.

Beside each proposal, the research system's coarse-to-fine search (0.1, 0.01, 0.001 grids, on the
same fixed impostor sample) and how far it lands from the exact answer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from faceid import selectors
from inference.openset import ImpostorReference, load_references, space_for
from inference.threshold_search import (
    PooledImpostors,
    RateFunction,
    SearchComparison,
    compare_search,
    sorted_rate,
)
from inference.thresholds import THRESHOLD_DECIMALS, far_is_measurable, smallest_supported_far
from inference.variants import MASK_STRATEGIES, VARIANT_FULL
from tenants.models import Organization, OrganizationPolicy

# At most this many persons are read (most templates first): pairs grow with the square.
MAX_PERSONS = 2000
# Pairs beyond this are subsampled (uniformly, fixed seed) for the distributions.
MAX_PAIRS = 5_000_000
# Impostor pairs needed per 1/target_far before a proposal may be applied (the rule of three).
RULE_OF_THREE = 3


@dataclass
class Proposal:
    threshold: float | None
    far: float | None  # FAR at the proposed threshold: pooled with the reference where there is one
    tar: float | None  # measured TAR (1 - FRR) at the proposed threshold
    resolved: bool  # False when the target FAR is below what the impostor pairs can measure
    note: str = ""
    # Why the proposal must not be applied ("" when it may be): too few impostor pairs to support
    # the target FAR, or a threshold below the model's floor.
    refusal: str = ""
    organization_pairs: int = 0
    reference_pairs: int = 0  # 0: no shipped reference for this model and space
    organization_far: float | None = None  # FAR on the organization's own pairs at the threshold
    # The threshold the organization's own pairs alone would give (the lowest meeting the target).
    organization_threshold: float | None = None
    comparison: SearchComparison | None = None  # coarse-to-fine against the exact answer

    @property
    def applicable(self) -> bool:
        return self.threshold is not None and not self.refusal

    @property
    def pairs(self) -> int:
        return self.organization_pairs + self.reference_pairs

    @property
    def pooled(self) -> bool:
        return self.reference_pairs > 0

    @property
    def supported_far(self) -> float:
        """The smallest FAR the impostor sample supports: one false accept in all its pairs."""
        return smallest_supported_far(self.pairs)

    @property
    def far_text(self) -> str:
        """The FAR at the proposal, never a bare 0: with no impostor passing, below 1/pairs."""
        return far_text(self.far, self.pairs)


def far_text(far: float | None, pairs: int) -> str:
    if far is None:
        return "–"
    if pairs and far * pairs < 1.0:  # not one false accept among the pairs (pooled: a fraction)
        return f"< {smallest_supported_far(pairs):.2g}"
    return f"{far:.3g}"


@dataclass
class Distribution:
    name: str  # "unmasked" / "masked"
    variant: str
    genuine: np.ndarray
    impostor: np.ndarray
    persons: int
    templates: int
    current_threshold: float
    proposal: Proposal | None = None
    current_far: float | None = None  # pooled where there is a reference
    current_tar: float | None = None
    reference: ImpostorReference | None = None
    current_organization_far: float | None = None

    @property
    def usable(self) -> bool:
        return self.genuine.size > 0 and self.impostor.size > 0

    @property
    def current_far_text(self) -> str:
        pairs = self.impostor.size + (self.reference.n if self.reference else 0)
        return far_text(self.current_far, pairs)


@dataclass
class Calibration:
    model_name: str
    target_far: float
    distributions: list[Distribution] = field(default_factory=list)

    def by_name(self, name: str) -> Distribution | None:
        return next((d for d in self.distributions if d.name == name), None)


def pair_scores(
    person_ids: np.ndarray,
    sources: np.ndarray,
    vectors: np.ndarray,
    *,
    max_pairs: int = MAX_PAIRS,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """(genuine, impostor) cosine similarities over all pairs i < j (templates of one photo excluded).

    Computed in row blocks, so memory stays bounded; beyond `max_pairs` pairs the impostor pairs
    are subsampled uniformly (genuine pairs, far fewer, are all kept).
    """
    n = len(person_ids)
    if n < 2:
        return np.empty(0, np.float32), np.empty(0, np.float32)
    v = np.asarray(vectors, dtype=np.float32)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    persons = np.asarray(person_ids)
    codes = np.unique(np.asarray(sources, dtype=object).astype(str), return_inverse=True)[1]
    keep = min(1.0, max_pairs / (n * (n - 1) / 2))
    rng = np.random.default_rng(seed)
    genuine: list[np.ndarray] = []
    impostor: list[np.ndarray] = []
    block = 512
    for start in range(0, n - 1, block):
        stop = min(start + block, n - 1)
        scores = v[start:stop] @ v.T  # rows start..stop-1 against every template
        rows = np.arange(start, stop)[:, None]
        upper = np.arange(n)[None, :] > rows
        same_person = persons[start:stop, None] == persons[None, :]
        same_photo = codes[start:stop, None] == codes[None, :]
        genuine.append(scores[upper & same_person & ~same_photo])
        others = upper & ~same_person
        if keep < 1.0:
            others &= rng.random(others.shape) < keep
        impostor.append(scores[others])
    return np.concatenate(genuine), np.concatenate(impostor)


def impostor_pairs_needed(target_far: float) -> int:
    """Impostor pairs a calibration needs before its proposal for ``target_far`` may be applied."""
    return int(np.ceil(RULE_OF_THREE / target_far - 1e-9))


def reference_for(model_name: str, *, masked: bool, variant: str) -> ImpostorReference | None:
    """The model's shipped reference impostor distribution in this matching space (None: none)."""
    return load_references(model_name).get(space_for(masked=masked, variant=variant))


def grid_threshold(far: RateFunction, exact: float, target_far: float) -> float:
    """The lowest threshold on the 0.0001 grid meeting the target, from the exact one: rounded up,
    and checked with `far` itself so float rounding never leaves it over the target."""
    if not math.isfinite(exact):
        return -1.0 if exact < 0 else exact
    scale = 10**THRESHOLD_DECIMALS
    step = max(math.floor(exact * scale) - 1, -scale)
    while far(round(step / scale, THRESHOLD_DECIMALS)) > target_far and step <= scale:
        step += 1
    return round(step / scale, THRESHOLD_DECIMALS)


def propose(
    genuine: np.ndarray,
    impostor: np.ndarray,
    target_far: float,
    *,
    floor: float | None = None,
    reference: ImpostorReference | None = None,
) -> Proposal:
    """The threshold for `target_far` on these pairs, pooled with `reference` where given; the one
    rule behind the console's calibration page and the calibrate_thresholds command."""
    if impostor.size == 0 and reference is None:
        return Proposal(
            None, None, None, False, "No impostor pairs: enroll at least two persons.", "no impostor pairs"
        )
    pool = PooledImpostors(impostor, reference)
    tar = sorted_rate(genuine)
    exact = pool.exact_threshold(target_far)
    threshold = grid_threshold(pool.far, exact, target_far)
    own_exact = PooledImpostors(impostor).exact_threshold(target_far) if impostor.size else None
    resolved = far_is_measurable(pool.pairs, target_far)
    notes = []
    if not resolved:
        need = int(np.ceil(1.0 / target_far))
        notes.append(
            f"Only {pool.pairs} impostor pairs: a FAR of {target_far:g} needs at least {need} to be "
            "measured. The proposal is the lowest threshold with no false accept among them; enroll more "
            "persons for a calibrated value."
        )
    if reference is not None and impostor.size == 0:
        notes.append("No impostor pairs of the organization's own: the reference distribution alone.")
    if genuine.size == 0:
        notes.append("No genuine pairs: enroll at least two photos of some persons.")
    refusals = []
    needed = impostor_pairs_needed(target_far)
    if pool.pairs < needed:
        refusals.append(
            f"{pool.pairs} impostor pairs cannot support a FAR of {target_far:g}: at least {needed} "
            f"are needed ({RULE_OF_THREE}/target FAR)"
        )
    if floor is not None and threshold < floor:
        refusals.append(f"{threshold:.4f} is below the model's floor {floor:g}")
    return Proposal(
        threshold,
        pool.pooled_far(threshold),
        tar(threshold) if genuine.size else None,
        resolved,
        " ".join(notes),
        "; ".join(refusals),
        organization_pairs=pool.organization_pairs,
        reference_pairs=pool.reference_pairs,
        organization_far=pool.organization_far(threshold) if impostor.size else None,
        organization_threshold=(
            grid_threshold(pool.organization_far, own_exact, target_far) if own_exact is not None else None
        ),
        comparison=compare_search(pool.far, tar, target_far, exact),
    )


def _load(organization: Organization, model_name: str, variant: str):
    rows = selectors.template_vectors_for_calibration(
        organization, model_name, variant, max_persons=MAX_PERSONS
    )
    if not rows:
        return np.empty(0, np.int64), np.empty(0, object), np.empty((0, 1), np.float32)
    persons = np.array([r[0] for r in rows], dtype=np.int64)
    sources = np.array([r[1] for r in rows], dtype=object)
    vectors = np.array([r[2] for r in rows], dtype=np.float32)
    return persons, sources, vectors


def calibrate(
    organization: Organization, policy: OrganizationPolicy, *, target_far: float | None = None
) -> Calibration:
    """Score distributions, current operating points and proposed thresholds for the policy's model
    (at the policy's target FAR unless `target_far` is given)."""
    target = policy.target_far if target_far is None else target_far
    result = Calibration(model_name=policy.embedding_model, target_far=target)
    for name, variant, current, masked in (
        ("unmasked", VARIANT_FULL, policy.threshold_unmasked, False),
        ("masked", MASK_STRATEGIES[policy.mask_strategy], policy.threshold_masked, True),
    ):
        persons, sources, vectors = _load(organization, policy.embedding_model, variant)
        genuine, impostor = pair_scores(persons, sources, vectors)
        reference = reference_for(policy.embedding_model, masked=masked, variant=str(variant))
        dist = Distribution(
            name=name,
            variant=str(variant),
            genuine=genuine,
            impostor=impostor,
            persons=len(set(persons.tolist())),
            templates=len(persons),
            current_threshold=current,
            reference=reference,
        )
        if impostor.size:
            # Without pairs of its own an organization gets no proposal, even with a reference: the
            # reference stands in for its missing pairs, not for its missing enrollments.
            dist.proposal = propose(
                genuine, impostor, target, floor=policy.floor_for(masked=masked), reference=reference
            )
            pool = PooledImpostors(impostor, reference)
            dist.current_far = pool.pooled_far(current)
            dist.current_organization_far = pool.organization_far(current)
        if genuine.size:
            dist.current_tar = sorted_rate(genuine)(current)
        result.distributions.append(dist)
    return result
