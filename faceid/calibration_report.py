"""A calibration in words and numbers: one row per distribution, shown by the console's calibration
page and printed as a table by the calibrate_thresholds command, so both say the same thing."""

from __future__ import annotations

from typing import Any

from faceid.calibration import Calibration, Distribution, far_text


def _threshold(value: float | None, decimals: int = 4) -> str:
    return "–" if value is None else f"{value:.{decimals}f}"


def _rate(value: float | None) -> str:
    return "–" if value is None else f"{value:.4f}"


def _far(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


def row(dist: Distribution) -> dict[str, Any]:
    """Display strings for one distribution (and the distribution itself, as `dist`)."""
    proposal = dist.proposal
    reference_pairs = dist.reference.n if dist.reference is not None else 0
    if dist.reference is not None:
        basis = f"pooled: {dist.impostor.size:,} own + {reference_pairs:,} reference ({dist.reference.space})"
    else:
        basis = "own pairs only (no shipped reference)"
    values: dict[str, Any] = {
        "dist": dist,
        "name": dist.name,
        "variant": dist.variant,
        "persons": f"{dist.persons} / {dist.templates}",
        "pairs": f"{dist.genuine.size:,} / {dist.impostor.size:,}",
        "basis": basis,
        "current": _threshold(dist.current_threshold),
        "current_far": dist.current_far_text,
        "current_tar": _rate(dist.current_tar),
        "proposed": "–",
        "proposed_far": "–",
        "proposed_own_far": "–",
        "proposed_tar": "–",
        "supported_far": "–",
        "own_only": "–",
        "search": "–",
        "search_far": "–",
        "search_tar": "–",
        "exact": "–",
        "exact_far": "–",
        "exact_tar": "–",
        "difference": "–",
        "scored": "–",
        "status": "no proposal: enroll at least two persons" if proposal is None else "",
    }
    if proposal is None:
        return values
    values.update(
        proposed=_threshold(proposal.threshold),
        proposed_far=proposal.far_text,
        proposed_own_far=far_text(proposal.organization_far, proposal.organization_pairs),
        proposed_tar=_rate(proposal.tar),
        supported_far=f"{proposal.supported_far:.2g}",
        own_only=_threshold(proposal.organization_threshold),
        status="may be applied" if proposal.applicable else f"cannot apply: {proposal.refusal}",
    )
    comparison = proposal.comparison
    if comparison is not None:
        search = comparison.search
        values.update(
            search=_threshold(search.threshold, 3) if search.met else "none in [0, 1]",
            search_far=far_text(search.far, proposal.pairs) if search.met else "–",
            search_tar=_rate(search.tar),
            exact=_threshold(comparison.exact_threshold, 6),
            exact_far=far_text(comparison.exact_far, proposal.pairs),
            exact_tar=_rate(comparison.exact_tar),
            difference="–" if comparison.difference is None else f"{comparison.difference:+.6f}",
            scored=str(len(search.trace)),
        )
    return values


def rows(calibration: Calibration) -> list[dict[str, Any]]:
    return [row(dist) for dist in calibration.distributions]


COLUMNS = (
    ("", "name"),
    ("persons / templates", "persons"),
    ("genuine / impostor pairs", "pairs"),
    ("current", "current"),
    ("FAR now", "current_far"),
    ("TAR now", "current_tar"),
    ("proposed", "proposed"),
    ("FAR", "proposed_far"),
    ("FAR own pairs", "proposed_own_far"),
    ("TAR", "proposed_tar"),
    ("supported FAR", "supported_far"),
    ("own pairs alone", "own_only"),
)
SEARCH_COLUMNS = (
    ("", "name"),
    ("coarse-to-fine", "search"),
    ("FAR", "search_far"),
    ("TAR", "search_tar"),
    ("exact", "exact"),
    ("FAR", "exact_far"),
    ("TAR", "exact_tar"),
    ("difference", "difference"),
    ("thresholds scored", "scored"),
)


def _table(columns: tuple[tuple[str, str], ...], lines: list[dict[str, Any]]) -> list[str]:
    cells = [[title for title, _ in columns]] + [[str(line[key]) for _, key in columns] for line in lines]
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    text = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    text.insert(1, "  ".join("-" * w for w in widths))
    return text


def text_table(calibration: Calibration) -> str:
    """The calibration as plain text: thresholds, the basis of each, the search comparison."""
    lines = rows(calibration)
    out = [f"Model {calibration.model_name}, target FAR {calibration.target_far:g}", ""]
    out += _table(COLUMNS, lines)
    out.append("")
    for line in lines:
        out.append(f"{line['name']}: {line['basis']}; {line['status']}")
        if line["dist"].proposal is not None and line["dist"].proposal.note:
            out.append(f"  note: {line['dist'].proposal.note}")
    out += [
        "",
        "Coarse-to-fine search (0.1, 0.01, 0.001 grids, one fixed impostor sample) against the exact answer:",
    ]
    out += _table(SEARCH_COLUMNS, lines)
    return "\n".join(out)
