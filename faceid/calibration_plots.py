"""Pictures of a calibration (PNG bytes): score histograms and the ROC, for the console's
calibration page and the calibrate_thresholds command alike."""

from __future__ import annotations

import io

import numpy as np

from faceid.calibration import Calibration, Distribution
from inference.threshold_search import PooledImpostors, sorted_rate
from inference.thresholds import roc_points

COLOURS = {"unmasked": "#2980b9", "masked": "#8e44ad"}
DENSITY_LOWEST_FAR = 1e-3


def _figure(width: float, height: float):
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100)


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def _score_range(dist: Distribution) -> tuple[float, float]:
    # Models differ in where their scores lie (dlib's impostors near 0.88, ArcFace's near 0): the
    # axis follows the scores, so that the thresholds are not squeezed into one corner.
    values = [dist.genuine, dist.impostor, np.array([dist.current_threshold])]
    if dist.reference is not None:
        values.append(np.array([s for _, s in dist.reference.quantiles]))
    both = np.concatenate([np.asarray(v, dtype=np.float64).ravel() for v in values])
    both = both[np.isfinite(both)]
    low = float(np.percentile(both, 0.5)) if both.size else -0.2
    return max(-1.0, low - 0.02), 1.0


def _reference_density(dist: Distribution) -> tuple[np.ndarray, np.ndarray] | None:
    """Step density of the reference impostors between their stored quantiles (FAR 0.8 to 1e-3)."""
    if dist.reference is None or len(dist.reference.quantiles) < 2:
        return None
    # Down to FAR 1e-3 only: further up the stored scores crowd together (a handful of pairs apart)
    # and their differences would draw spikes, not a density.
    kept = [(f, s) for f, s in dist.reference.quantiles if f >= DENSITY_LOWEST_FAR]
    if len(kept) < 2:
        return None
    fars = np.array([f for f, _ in kept])
    scores = np.array([s for _, s in kept])
    widths = np.maximum(np.diff(scores), 1e-9)
    return scores, np.append(-np.diff(fars) / widths, 0.0)


def histogram_png(calibration: Calibration) -> bytes:
    """Genuine and impostor score histograms, one panel per (unmasked, masked), with the reference
    impostor density where pooled, and the current, proposed and coarse-to-fine thresholds."""
    fig = _figure(10, 3.6)
    axes = fig.subplots(1, len(calibration.distributions), squeeze=False)[0]
    for ax, dist in zip(axes, calibration.distributions, strict=True):
        low, high = _score_range(dist)
        bins = np.linspace(low, high, 61)
        for scores, colour, label in (
            (dist.impostor, "#c0392b", "impostor"),
            (dist.genuine, "#27ae60", "genuine"),
        ):
            if scores.size:
                ax.hist(
                    np.clip(scores, low, high),
                    bins=bins,
                    density=True,
                    alpha=0.55,
                    color=colour,
                    label=f"{label} ({scores.size})",
                )
        density = _reference_density(dist)
        if density is not None:
            ax.step(
                density[0],
                density[1],
                where="post",
                color="#7f8c8d",
                linewidth=1,
                label=f"reference impostor ({dist.reference.n:,})",
            )
        ax.axvline(
            dist.current_threshold,
            color="#34495e",
            linestyle="--",
            label=f"current {dist.current_threshold:.3f}",
        )
        proposal = dist.proposal
        if proposal and proposal.threshold is not None:
            ax.axvline(proposal.threshold, color="#2c3e50", label=f"proposed {proposal.threshold:.4f}")
            search = proposal.comparison.search if proposal.comparison else None
            if search is not None and search.threshold is not None:
                ax.axvline(
                    search.threshold,
                    color="#e67e22",
                    linestyle=":",
                    label=f"coarse-to-fine {search.threshold:.3f}",
                )
        ax.set_xlim(low, high)
        ax.set_title(f"{dist.name} ({dist.variant})", fontsize=10)
        ax.set_xlabel("cosine similarity")
        if not dist.usable:
            ax.text(0.5, 0.5, "not enough templates", transform=ax.transAxes, ha="center", color="#7f8c8d")
        ax.legend(fontsize=7, loc="upper left")
    return _png(fig)


def roc_png(calibration: Calibration) -> bytes:
    """ROC (TAR against FAR, log scale) per distribution: on the organization's pairs (solid) and
    pooled with the reference (dashed), the proposal marked, and the target and supported FARs."""
    fig = _figure(5.6, 4.0)
    ax = fig.subplots()
    drawn = False
    smallest = 1e-5
    for dist in calibration.distributions:
        if not dist.usable:
            continue
        colour = COLOURS.get(dist.name)
        floor = 0.5 / max(dist.impostor.size, 1)
        far, tar = roc_points(dist.genuine, dist.impostor)
        ax.plot(np.maximum(far, floor), tar, color=colour, label=f"{dist.name}: own pairs")
        proposal = dist.proposal
        if dist.reference is not None:
            pool = PooledImpostors(dist.impostor, dist.reference)
            low = min(float(dist.genuine.min()), float(dist.impostor.min()))
            thresholds = np.linspace(low, 1.0, 400)
            pooled = np.array([pool.far(t) for t in thresholds])
            rate = sorted_rate(dist.genuine)
            floor = 0.5 * pool.supported_far
            ax.plot(
                np.maximum(pooled, floor),
                [rate(t) for t in thresholds],
                color=colour,
                linestyle="--",
                label=f"{dist.name}: pooled with reference",
            )
        if proposal and proposal.threshold is not None:
            ax.plot([max(proposal.far or 0, floor)], [proposal.tar or 0], "o", color=colour)
            ax.axvline(proposal.supported_far, color=colour, linestyle="-.", linewidth=0.8, alpha=0.6)
            smallest = min(smallest, 0.5 * proposal.supported_far)
        drawn = True
    ax.axvline(
        calibration.target_far, color="#7f8c8d", linestyle=":", label=f"target FAR {calibration.target_far:g}"
    )
    ax.set_xscale("log")
    ax.set_xlim(left=max(smallest, 1e-8), right=1.0)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false accept rate (dash-dot: smallest the sample supports)")
    ax.set_ylabel("true accept rate")
    ax.grid(alpha=0.3)
    if not drawn:
        ax.text(0.5, 0.5, "not enough templates", transform=ax.transAxes, ha="center", color="#7f8c8d")
    ax.legend(fontsize=7, loc="lower right")
    return _png(fig)
