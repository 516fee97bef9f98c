"""The training curves of a run as one PNG: losses per step, held-out verification per validation."""

from __future__ import annotations

import csv
from pathlib import Path


def _read(path: Path) -> dict[str, list[float]]:
    columns: dict[str, list[float]] = {}
    if not path.is_file():
        return columns
    with path.open() as handle:
        for row in csv.DictReader(handle):
            for key, value in row.items():
                columns.setdefault(key, []).append(float(value))
    return columns


def plot_run(run: Path, out: Path, title: str = "") -> None:
    """Draw run/metrics.csv and run/validation.csv (written by toolkit.training.loop) into out."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    metrics, validation = _read(run / "metrics.csv"), _read(run / "validation.csv")
    fig = Figure(figsize=(11, 3.6), dpi=100)
    losses, accuracy = fig.subplots(1, 2)
    for key, colour in (("ce", "#2980b9"), ("distill", "#8e44ad"), ("anchor", "#27ae60")):
        if metrics.get(key):
            losses.plot(metrics["step"], metrics[key], color=colour, linewidth=0.8, label=key)
    losses.set_xlabel("step")
    losses.set_title("training losses (before weighting)", fontsize=10)
    losses.legend(fontsize=8)
    for key, colour, style in (
        ("unmasked_accuracy", "#2980b9", "o-"),
        ("masked_accuracy", "#8e44ad", "o-"),
        ("unmasked_tar_at_far_1e-3_all", "#2980b9", "s--"),
        ("masked_tar_at_far_1e-3_all", "#8e44ad", "s--"),
    ):
        if validation.get(key):
            percent = [100 * v for v in validation[key]]
            accuracy.plot(validation["step"], percent, style, color=colour, label=key)
    accuracy.set_xlabel("step")
    accuracy.set_ylabel("%")
    accuracy.set_title("verification on held-out identities", fontsize=10)
    accuracy.legend(fontsize=8)
    accuracy.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight")
