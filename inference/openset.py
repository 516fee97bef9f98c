"""Open-set identification: thresholds for a false-positive identification rate per search, and the
1:N measures (FNIR at FPIR, rank-1 hit rate, the DET curve).

Pure numpy: the web process imports it (no torch, OpenCV or MediaPipe).

A 1:1 threshold is set for a false accept rate per comparison (FAR). A search compares a probe
with every one of the N persons of a gallery, so an unknown face is called someone when any of
them passes: with independent comparisons the false-positive identification rate per search is

    FPIR(t) = 1 - (1 - FAR(t))^N,   so the FAR a search needs is   1 - (1 - FPIR)^(1/N) ~ FPIR / N.

At 1,000 persons and FPIR 1% that is FAR ~ 1e-5: far in the tail of the impostor distribution.
FAR(t) comes from a model's reference impostor distribution (toolkit/dev/reference_impostors.py,
shipped as statistics in inference/weights/reference_impostors/<model>.json): its empirical upper
quantiles where the sample has them (down to 1/n of its n comparisons), and below that a
generalized Pareto tail (peaks over threshold, fitted to the top 1% of the scores by probability-
weighted moments). Why that tail: by the Pickands-Balkema-de Haan theorem the exceedances over a
high threshold of almost any distribution are GPD; its shape may be negative, which gives the
bounded upper end a cosine score has, where a normal or exponential tail would keep finite
probability above 1. The fit is used only where the sample cannot answer, and a threshold is
never set below the one the sample itself gives at its resolution (just above its highest
impostor score): the reported FAR then says it is extrapolated.

Where max-of-N impostor scores can be measured directly (an evaluation with enough non-mated
searches), `fpir_at` of the measures below counts them; independence is then not assumed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

REFERENCE_FOLDER = Path(__file__).resolve().parent / "weights" / "reference_impostors"
# The tail is fitted to the exceedances over this upper quantile of the impostor scores.
TAIL_FRACTION = 0.01
# Fewer exceedances than this and no tail is fitted (the moments would say nothing).
MIN_TAIL_POINTS = 50
# Stored quantiles: FAR = m * 10^-k for these mantissas, k = 1, 2, ... down to 1/n.
QUANTILE_MANTISSAS = (1.0, 1.25, 1.6, 2.0, 2.5, 3.2, 4.0, 5.0, 6.3, 8.0)
# A threshold is rounded up (never down: that would let more impostors through) to this grid.
THRESHOLD_DECIMALS = 4


# --- the stored statistics ------------------------------------------------------------------------
def fit_tail(scores: np.ndarray, fraction: float = TAIL_FRACTION) -> dict | None:
    """A generalized Pareto fit of the scores above their (1 - fraction) quantile.

    Probability-weighted moments (Hosking & Wallis 1987): closed form, no optimiser, and reliable
    for the negative shapes a bounded score has, where maximum likelihood is irregular.
    Returns {"u": threshold, "rate": share of scores above u, "shape": xi, "scale": sigma, "k": count}
    (P(score > u + y) = rate * (1 + xi y / sigma)^(-1/xi)), or None with too few exceedances.
    """
    values = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    values = values[np.isfinite(values)]
    count = int(math.floor(values.size * fraction))
    if count < MIN_TAIL_POINTS:
        return None
    u = float(values[values.size - count - 1])
    excess = values[values.size - count :] - u
    excess = excess[excess > 0]
    if excess.size < MIN_TAIL_POINTS:
        return None
    k = excess.size
    ranks = (np.arange(1, k + 1) - 0.35) / k
    a0 = float(excess.mean())
    a1 = float(np.mean((1.0 - ranks) * excess))
    denominator = a0 - 2.0 * a1
    if denominator <= 0:
        return None
    shape = 2.0 - a0 / denominator  # Hosking's k is -shape
    scale = 2.0 * a0 * a1 / denominator
    return {"u": u, "rate": k / values.size, "shape": shape, "scale": scale, "k": k}


def quantile_grid(n: int) -> list[float]:
    """The FARs whose scores are stored: ten per decade (0.8, 0.63, 0.5, ... 0.1, 0.08, ...) down to
    the sample's 1/n; between two of them a threshold is interpolated in log FAR."""
    grid = []
    exponent = 0
    while True:
        for mantissa in sorted(QUANTILE_MANTISSAS, reverse=True):
            far = mantissa * 10.0**exponent
            if far >= 1.0:
                continue
            if far * n < 1.0:
                return grid
            grid.append(far)
        exponent -= 1


def impostor_summary(scores: np.ndarray) -> dict:
    """What is shipped of an impostor sample: its size, moments and upper quantiles (no scores).

    `quantiles` maps FAR to the lowest score s with (count of scores >= s) / n <= FAR, i.e. the
    (floor(FAR n) + 1)-th highest score, nudged up by one float step: a threshold at it keeps the
    sample's FAR at or under the key.
    """
    values = np.asarray(scores, dtype=np.float64).ravel()
    values = values[np.isfinite(values)]
    n = int(values.size)
    if n == 0:
        return {"n": 0, "quantiles": {}}
    ranked = np.sort(values)[::-1]
    quantiles = {}
    for far in quantile_grid(n):
        allowed = int(math.floor(far * n + 1e-9))
        if allowed >= n:
            continue
        quantiles[f"{far:.3g}"] = float(np.nextafter(ranked[allowed], np.inf))
    top = ranked[: min(n, 20)]
    return {
        "n": n,
        "mean": float(values.mean()),
        "std": float(values.std()),
        "max": float(ranked[0]),
        "top": [round(float(v), 6) for v in top],
        "quantiles": quantiles,
    }


# --- FAR per comparison <-> FPIR per search ---------------------------------------------------
def far_for_fpir(fpir: float, gallery_size: int) -> float:
    """The FAR per comparison at which N independent comparisons give this FPIR per search."""
    if not 0.0 < fpir < 1.0:
        raise ValueError(f"fpir must be within (0, 1), got {fpir}")
    if gallery_size < 1:
        raise ValueError(f"gallery_size must be at least 1, got {gallery_size}")
    return -math.expm1(math.log1p(-fpir) / gallery_size)  # 1 - (1 - fpir)^(1/N), without cancellation


def fpir_for_far(far: float, gallery_size: int) -> float:
    """FPIR(t) = 1 - (1 - FAR(t))^N: a search of N independent comparisons."""
    if far >= 1.0:
        return 1.0
    return -math.expm1(gallery_size * math.log1p(-far))


@dataclass(frozen=True)
class FarEstimate:
    """A threshold and the FAR per comparison it is estimated to give."""

    threshold: float
    far: float
    # "empirical": inside the sample's resolution; "tail": below 1/n, from the fitted tail (or the
    # sample's highest score, whichever is stricter); the sample alone cannot show FAR < 1/n.
    basis: str
    resolution: float  # 1/n of the reference sample


@dataclass(frozen=True)
class ImpostorReference:
    """One model's impostor distribution in one matching space, as shipped (statistics only)."""

    model: str
    space: str
    n: int
    max_score: float
    quantiles: tuple[tuple[float, float], ...]  # (FAR, score), FAR decreasing, score increasing
    tail: dict | None

    @classmethod
    def from_summary(cls, model: str, space: str, summary: dict) -> ImpostorReference:
        points = sorted(
            ((float(far), float(score)) for far, score in summary["quantiles"].items()), reverse=True
        )
        return cls(model, space, int(summary["n"]), float(summary["max"]), tuple(points), summary.get("tail"))

    @property
    def resolution(self) -> float:
        return 1.0 / self.n

    def threshold_for_far(self, far: float) -> FarEstimate:
        """The threshold whose FAR per comparison is estimated not to exceed `far`."""
        if not 0.0 < far < 1.0:
            raise ValueError(f"far must be within (0, 1), got {far}")
        fars = [f for f, _ in self.quantiles]
        if self.quantiles and far >= fars[-1]:
            if far >= fars[0]:
                return self._estimate(self.quantiles[0][1], self.quantiles[0][0], "empirical")
            # Between two stored points, linear in log FAR: monotone, and exact at the points.
            index = next(i for i, f in enumerate(fars) if f <= far)
            (far_hi, score_lo), (far_lo, score_hi) = self.quantiles[index - 1], self.quantiles[index]
            if far == far_lo:
                return self._estimate(score_hi, far, "empirical")
            weight = (math.log(far_hi) - math.log(far)) / (math.log(far_hi) - math.log(far_lo))
            return self._estimate(score_lo + weight * (score_hi - score_lo), far, "empirical")
        # Below the sample's resolution: never under its highest impostor score (the sample shows
        # no more than "no false accept in n"), raised further where the tail says so.
        floor = float(np.nextafter(self.max_score, np.inf))
        modelled = self.tail_score(far)
        threshold = floor if modelled is None else max(floor, modelled)
        return self._estimate(threshold, far, "tail")

    def tail_score(self, far: float) -> float | None:
        """The score the fitted generalized Pareto tail puts at this FAR (None without a fit)."""
        if not self.tail:
            return None
        u, rate, shape, scale = (float(self.tail[k]) for k in ("u", "rate", "shape", "scale"))
        if far >= rate:
            return None
        ratio = far / rate
        if abs(shape) < 1e-9:
            return u - scale * math.log(ratio)
        return u + scale / shape * (ratio ** (-shape) - 1.0)

    def far_at(self, threshold: float) -> float:
        """The FAR per comparison estimated at a threshold (the inverse of threshold_for_far)."""
        scores = [s for _, s in self.quantiles]
        if not scores or threshold <= scores[0]:
            return self.quantiles[0][0] if self.quantiles else 1.0
        if threshold <= scores[-1]:
            index = next(i for i, s in enumerate(scores) if s >= threshold)
            (far_hi, score_lo), (far_lo, score_hi) = self.quantiles[index - 1], self.quantiles[index]
            weight = (threshold - score_lo) / (score_hi - score_lo) if score_hi > score_lo else 1.0
            return math.exp(math.log(far_hi) + weight * (math.log(far_lo) - math.log(far_hi)))
        if not self.tail:
            return self.resolution  # all the sample can say above its highest scores
        u, rate, shape, scale = (float(self.tail[k]) for k in ("u", "rate", "shape", "scale"))
        y = threshold - u
        if abs(shape) < 1e-9:
            return min(self.resolution, rate * math.exp(-y / scale))
        base = 1.0 + shape * y / scale
        if base <= 0:
            return 0.0  # beyond the fitted tail's upper end
        return min(self.resolution, rate * base ** (-1.0 / shape))

    def _estimate(self, threshold: float, far: float, basis: str) -> FarEstimate:
        rounded = math.ceil(threshold * 10**THRESHOLD_DECIMALS - 1e-9) / 10**THRESHOLD_DECIMALS
        return FarEstimate(min(rounded, 1.0), far, basis, self.resolution)


SPACE_UNMASKED = "unmasked"


def space_for(*, masked: bool, variant: str | None) -> str:
    """The reference space a probe is matched in: unmasked, or the mask-aware variant it uses."""
    return variant if masked and variant else SPACE_UNMASKED


@lru_cache(maxsize=32)
def load_references(model: str, folder: Path = REFERENCE_FOLDER) -> dict[str, ImpostorReference]:
    """The shipped reference distributions of a model by space ({} when the model has none yet)."""
    path = folder / f"{model}.json"
    if not path.is_file():
        return {}
    # Identify asks at every search: the file is parsed once per version of it (its mtime).
    return dict(_parsed_references(model, path, path.stat().st_mtime_ns))


@lru_cache(maxsize=32)
def _parsed_references(model: str, path: Path, mtime_ns: int) -> tuple[tuple[str, ImpostorReference], ...]:
    document = json.loads(path.read_text(encoding="utf-8"))
    return tuple(
        {
            space: ImpostorReference.from_summary(model, space, summary)
            for space, summary in document.get("spaces", {}).items()
            if summary.get("n") and summary.get("quantiles")
        }.items()
    )


@dataclass(frozen=True)
class OpenSetThreshold:
    """The identify threshold for one search, and how it was chosen."""

    threshold: float
    gallery_size: int
    target_fpir: float
    far_per_comparison: float | None  # the FAR the search needs (None where nothing was derived)
    basis: str  # "empirical" | "tail" | "verify" (the 1:1 threshold was stricter or no reference)
    resolution: float | None


def open_set_threshold(
    reference: ImpostorReference | None, *, target_fpir: float, gallery_size: int, verify_threshold: float
) -> OpenSetThreshold:
    """The threshold that keeps FPIR per search at the target for a gallery of `gallery_size`,
    never below the 1:1 threshold (a search must not accept what a verification would refuse)."""
    if gallery_size < 1 or reference is None:
        return OpenSetThreshold(verify_threshold, max(gallery_size, 0), target_fpir, None, "verify", None)
    far = far_for_fpir(target_fpir, gallery_size)
    estimate = reference.threshold_for_far(far)
    if estimate.threshold <= verify_threshold:
        return OpenSetThreshold(
            verify_threshold, gallery_size, target_fpir, far, "verify", estimate.resolution
        )
    return OpenSetThreshold(
        estimate.threshold, gallery_size, target_fpir, far, estimate.basis, estimate.resolution
    )


# --- the 1:N measures (NIST FRVT 1:N) ----------------------------------------------------------
# A search returns the gallery's candidates ranked by score. Mated searches (the probe's person is
# enrolled) are described by the mate's score and whether the mate ranked first; non-mated
# searches by their top score (the max of N impostor scores, measured: no independence assumed).
# A search without a face (no score) is a miss when mated and no false positive when non-mated.


def fpir_at(nonmated_top: np.ndarray, threshold: float) -> float:
    """Share of non-mated searches with any candidate at or above the threshold."""
    top = np.asarray(nonmated_top, dtype=np.float64)
    return float(np.count_nonzero(top >= threshold)) / top.size if top.size else 0.0


def fnir_at(mate_scores: np.ndarray, mate_rank1: np.ndarray, threshold: float) -> float:
    """Share of mated searches whose mate is not returned first at or above the threshold (R = 1)."""
    scores = np.asarray(mate_scores, dtype=np.float64)
    if not scores.size:
        return 0.0
    hit = np.asarray(mate_rank1, dtype=bool) & (np.nan_to_num(scores, nan=-np.inf) >= threshold)
    return 1.0 - float(np.count_nonzero(hit)) / scores.size


def threshold_for_fpir(nonmated_top: np.ndarray, fpir: float) -> float:
    """The lowest threshold whose measured FPIR does not exceed the target (above every non-mated
    top score when the target is below 1/searches: see `fpir_is_measurable`)."""
    top = np.asarray(nonmated_top, dtype=np.float64)
    top = np.where(np.isnan(top), -np.inf, top)
    if not top.size:
        return -math.inf
    allowed = int(math.floor(fpir * top.size + 1e-9))
    if allowed >= top.size:
        return -math.inf
    ranked = np.sort(top)[::-1]
    return float(np.nextafter(ranked[allowed], np.inf))


def fpir_is_measurable(nonmated_searches: int, fpir: float) -> bool:
    return nonmated_searches * fpir >= 1.0


def rank1_hit_rate(mate_rank1: np.ndarray) -> float:
    hits = np.asarray(mate_rank1, dtype=bool)
    return float(hits.mean()) if hits.size else 0.0


def det_curve(
    mate_scores: np.ndarray, mate_rank1: np.ndarray, nonmated_top: np.ndarray, points: int = 200
) -> list[dict[str, float]]:
    """(threshold, FPIR, FNIR) at thresholds through every non-mated top score's quantiles."""
    top = np.asarray(nonmated_top, dtype=np.float64)
    top = top[np.isfinite(top)]
    mates = np.asarray(mate_scores, dtype=np.float64)
    candidates = np.concatenate([top, mates[np.isfinite(mates)]])
    if not candidates.size:
        return []
    thresholds = np.unique(np.quantile(candidates, np.linspace(0.0, 1.0, points)))
    if top.size:
        thresholds = np.unique(
            np.concatenate([thresholds, np.nextafter(np.sort(top)[-min(top.size, 50) :], np.inf)])
        )
    return [
        {
            "threshold": round(float(t), 6),
            "fpir": fpir_at(top, float(t)),
            "fnir": fnir_at(mate_scores, mate_rank1, float(t)),
        }
        for t in thresholds
    ]


def fnir_at_fpir(
    mate_scores: np.ndarray, mate_rank1: np.ndarray, nonmated_top: np.ndarray, fpir: float
) -> dict[str, float | bool]:
    """FNIR at the threshold that holds FPIR at the target on these non-mated searches."""
    threshold = threshold_for_fpir(nonmated_top, fpir)
    return {
        "threshold": threshold,
        "fnir": fnir_at(mate_scores, mate_rank1, threshold),
        "fpir_measured": fpir_at(nonmated_top, threshold),
        "measurable": fpir_is_measurable(int(np.asarray(nonmated_top).size), fpir),
    }
