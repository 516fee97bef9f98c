"""Calibrate an organization's thresholds on its own enrolled templates.

Genuine scores: cosine similarities between templates of the same person made from different
photos; impostor scores: between templates of different persons. Unmasked probes are matched
against full-face templates, so the unmasked distributions compare `full` with `full`; masked
probes against the mask-aware variant of the policy's strategy, so the masked distributions compare
that variant with itself (a synthetic mask or a blanked lower face on both sides: the closest stand-in
for a real masked probe the stored templates allow).

The proposed threshold for a target false-accept rate is the lowest one on a 0.0001 grid whose
measured FAR does not exceed the target (`inference.thresholds.threshold_for_far`, the one
implementation the evaluation tooling uses too). A FAR below 1/(number of impostor pairs) cannot be
measured: the proposal then sits just above the highest impostor score and says so (``resolved`` false).

A proposal may be applied only when the impostor sample can support the target (``applicable``): at
least 3/target_far impostor pairs (the rule of three: with no false accept among n independent pairs
the FAR is below 3/n at 95% confidence, so fewer pairs cannot show that the target is met even when
none passes), and a threshold at or above the model's floor. The console refuses any other
proposal when asked to apply it.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np

from faceid import selectors
from inference.thresholds import far_at, far_is_measurable, roc_points, tar_at, threshold_for_far
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
    far: float | None  # measured FAR at the proposed threshold
    tar: float | None  # measured TAR (1 - FRR) at the proposed threshold
    resolved: bool  # False when the target FAR is below what the impostor pairs can measure
    note: str = ""
    # Why the proposal must not be applied ("" when it may be): too few impostor pairs to support
    # the target FAR, or a threshold below the model's floor.
    refusal: str = ""

    @property
    def applicable(self) -> bool:
        return self.threshold is not None and not self.refusal


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
    current_far: float | None = None
    current_tar: float | None = None

    @property
    def usable(self) -> bool:
        return self.genuine.size > 0 and self.impostor.size > 0


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


def propose(
    genuine: np.ndarray, impostor: np.ndarray, target_far: float, *, floor: float | None = None
) -> Proposal:
    if impostor.size == 0:
        return Proposal(
            None, None, None, False, "No impostor pairs: enroll at least two persons.", "no impostor pairs"
        )
    threshold = threshold_for_far(impostor, target_far)
    resolved = far_is_measurable(impostor.size, target_far)
    note = ""
    if not resolved:
        need = int(np.ceil(1.0 / target_far))
        note = (
            f"Only {impostor.size} impostor pairs: a FAR of {target_far:g} needs at least {need} to be "
            "measured. The proposal is the lowest threshold with no false accept among them; enroll more "
            "persons for a calibrated value."
        )
    if genuine.size == 0:
        note = (note + " " if note else "") + "No genuine pairs: enroll at least two photos of some persons."
    threshold = round(threshold, 4)
    refusals = []
    needed = impostor_pairs_needed(target_far)
    if impostor.size < needed:
        refusals.append(
            f"{impostor.size} impostor pairs cannot support a FAR of {target_far:g}: at least {needed} "
            f"are needed ({RULE_OF_THREE}/target FAR)"
        )
    if floor is not None and threshold < floor:
        refusals.append(f"{threshold:.4f} is below the model's floor {floor:g}")
    return Proposal(
        threshold,
        far_at(impostor, threshold),
        tar_at(genuine, threshold) if genuine.size else None,
        resolved,
        note,
        "; ".join(refusals),
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


def calibrate(organization: Organization, policy: OrganizationPolicy) -> Calibration:
    """Score distributions, current operating points and proposed thresholds for the policy's model."""
    result = Calibration(model_name=policy.embedding_model, target_far=policy.target_far)
    for name, variant, current, masked in (
        ("unmasked", VARIANT_FULL, policy.threshold_unmasked, False),
        ("masked", MASK_STRATEGIES[policy.mask_strategy], policy.threshold_masked, True),
    ):
        persons, sources, vectors = _load(organization, policy.embedding_model, variant)
        genuine, impostor = pair_scores(persons, sources, vectors)
        dist = Distribution(
            name=name,
            variant=str(variant),
            genuine=genuine,
            impostor=impostor,
            persons=len(set(persons.tolist())),
            templates=len(persons),
            current_threshold=current,
        )
        if impostor.size:
            dist.proposal = propose(
                genuine, impostor, policy.target_far, floor=policy.floor_for(masked=masked)
            )
            dist.current_far = far_at(impostor, current)
        if genuine.size:
            dist.current_tar = tar_at(genuine, current)
        result.distributions.append(dist)
    return result


# --- plots ----------------------------------------------------------------------------------------------


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def histogram_png(calibration: Calibration) -> bytes:
    """Genuine and impostor score histograms, one panel per (unmasked, masked), thresholds marked."""
    fig = _figure(9, 3.4)
    axes = fig.subplots(1, len(calibration.distributions), squeeze=False)[0]
    for ax, dist in zip(axes, calibration.distributions, strict=True):
        bins = np.linspace(-0.2, 1.0, 61)
        if dist.impostor.size:
            ax.hist(
                np.clip(dist.impostor, -0.2, 1.0),
                bins=bins,
                density=True,
                alpha=0.55,
                color="#c0392b",
                label=f"impostor ({dist.impostor.size})",
            )
        if dist.genuine.size:
            ax.hist(
                np.clip(dist.genuine, -0.2, 1.0),
                bins=bins,
                density=True,
                alpha=0.55,
                color="#27ae60",
                label=f"genuine ({dist.genuine.size})",
            )
        ax.axvline(
            dist.current_threshold,
            color="#34495e",
            linestyle="--",
            label=f"current {dist.current_threshold:.3f}",
        )
        if dist.proposal and dist.proposal.threshold is not None:
            ax.axvline(
                dist.proposal.threshold, color="#2c3e50", label=f"proposed {dist.proposal.threshold:.3f}"
            )
        ax.set_title(f"{dist.name} ({dist.variant})", fontsize=10)
        ax.set_xlabel("cosine similarity")
        if not dist.usable:
            ax.text(0.5, 0.5, "not enough templates", transform=ax.transAxes, ha="center", color="#7f8c8d")
        ax.legend(fontsize=7, loc="upper left")
    return _png(fig)


def roc_png(calibration: Calibration) -> bytes:
    """ROC (TAR against FAR, log scale) per distribution with the target FAR marked."""
    fig = _figure(5.2, 3.8)
    ax = fig.subplots()
    colours = {"unmasked": "#2980b9", "masked": "#8e44ad"}
    drawn = False
    for dist in calibration.distributions:
        if not dist.usable:
            continue
        far, tar = roc_points(dist.genuine, dist.impostor)
        floor = 0.5 / max(dist.impostor.size, 1)
        ax.plot(
            np.maximum(far, floor), tar, color=colours.get(dist.name), label=f"{dist.name} ({dist.variant})"
        )
        if dist.proposal and dist.proposal.threshold is not None:
            ax.plot(
                [max(dist.proposal.far or 0, floor)],
                [dist.proposal.tar or 0],
                "o",
                color=colours.get(dist.name),
            )
        drawn = True
    ax.axvline(
        calibration.target_far, color="#7f8c8d", linestyle=":", label=f"target FAR {calibration.target_far:g}"
    )
    ax.set_xscale("log")
    ax.set_xlim(left=1e-5, right=1.0)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.grid(alpha=0.3)
    if not drawn:
        ax.text(0.5, 0.5, "not enough templates", transform=ax.transAxes, ha="center", color="#7f8c8d")
    ax.legend(fontsize=7, loc="lower right")
    return _png(fig)
