"""Grad-CAM grids: where an embedder looks when it matches a probe, unmasked and with a mask on.

For each person an unmasked reference photo gives the reference embedding (the product's
template: aligned as the model's spec says, flip-averaged); the probe photo is explained twice,
as it is and with a synthetic mask rendered on it (inference.mask.render, a seeded style per
person), both crops warped by the same alignment so that the two heatmaps are pixel-comparable.
The target is the cosine with the reference (toolkit.gradcam.cam). A second model
(--compare-embedder / --compare-weights, e.g. a mask-tuned one) adds two columns.

    python -m toolkit.gradcam [--pairs-file docs/benchmarks/dev_pairs.txt --people 6 | --images REF PROBE ...]
        [--embedder intel_0095] [--weights PATH] [--compare-embedder NAME] [--compare-weights PATH]
        [--layer NAME|INDEX] [--compare-layer NAME|INDEX] [--list-layers] [--out docs/gradcam_<model>.png]

The JSON written beside the PNG holds, per person and column, the Grad-CAM target (one forward,
no mirror), the product's flip-averaged cosine, and the shares of heat mass in the eye region,
in the mask region (rows below the nose) and on the mask polygon itself (toolkit.gradcam.regions),
and how much the cosine falls when the hottest or the coldest window is blanked
(toolkit.gradcam.occlusion: a map worth reading has the first well above the second).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from inference.align import align_face, alignment_matrix, warp_to_template
from inference.decode import ImageDecodeError, load_image
from inference.detect import DetectedFace, FaceDetector, get_face_detector
from inference.embedders import UnknownEmbedderError, WeightsUnavailableError, create_embedder
from inference.embedders.base import Embedder
from inference.mask.render import MaskStyle, mask_polygon, render_synthetic_mask
from inference.pipeline import visible_area
from toolkit.gradcam.cam import LayerError, SimilarityGradCAM, list_activations
from toolkit.gradcam.figure import Panel, write_grid
from toolkit.gradcam.occlusion import occlusion_drops
from toolkit.gradcam.regions import face_bands, heat_mass, polygon_mask
from toolkit.json_output import print_and_save
from toolkit.pairs import PairsFormatError, image_path, read_pairs
from toolkit.paths import BENCHMARKS, REPO_ROOT, SHARED_DATA

# LFW identities that View-2 never names (toolkit/dev/make_dev_pairs.py): never test data.
DEFAULT_PAIRS = BENCHMARKS / "dev_pairs.txt"
DEFAULT_PEOPLE = 6


class InputError(ValueError):
    """Bad command-line input: reported as one line, never a traceback."""


@dataclass(frozen=True)
class Person:
    label: str
    reference: Path
    probe: Path


@dataclass
class Model:
    """One embedder under study and its Grad-CAM."""

    label: str
    embedder: Embedder
    cam: SimilarityGradCAM
    weights: str | None


def people_from_pairs(path: Path, root: Path, count: int) -> list[Person]:
    """The first `count` distinct identities among the file's same-person pairs."""
    if not path.is_file():
        raise InputError(f"pairs file not found: {path}")
    try:
        pairs, _ = read_pairs(path)
    except PairsFormatError as error:
        raise InputError(f"{path}: {error}") from None
    chosen: list[Person] = []
    seen: set[str] = set()
    for pair in pairs:
        name = pair.first[0]
        if not pair.same or name in seen:
            continue
        seen.add(name)
        chosen.append(Person(name, image_path(root, *pair.first), image_path(root, *pair.second)))
        if len(chosen) == count:
            break
    if not chosen:
        raise InputError(f"{path} has no same-person pairs")
    return chosen


def people_from_images(paths: Sequence[Path]) -> list[Person]:
    """REF PROBE REF PROBE ...: each pair labelled with the reference's folder or file name."""
    if len(paths) < 2 or len(paths) % 2:
        raise InputError(f"--images takes reference/probe pairs: an even number of paths, got {len(paths)}")
    people = []
    for reference, probe in zip(paths[::2], paths[1::2], strict=True):
        folder = reference.parent.name
        label = folder if folder and folder not in ("portraits", "images", ".") else reference.stem
        people.append(Person(f"{label} ({reference.name} / {probe.name})", reference, probe))
    return people


def load_model(name: str, weights: Path | None, layer: str | None, device: str) -> Model:
    if weights is not None and not weights.is_file():
        raise InputError(f"--weights file not found: {weights}")
    kwargs = {"weights": str(weights)} if weights is not None else {}
    try:
        embedder = create_embedder(name, device=device, **kwargs)
    except (UnknownEmbedderError, WeightsUnavailableError, FileNotFoundError) as error:
        raise InputError(str(error)) from None
    except (RuntimeError, ValueError) as error:  # weights of another architecture, malformed files
        text = " ".join(str(error).split()) or type(error).__name__
        short = text if len(text) <= 300 else text[:300] + "..."
        raise InputError(f"{name}: cannot load {weights or 'its weights'}: {short}") from None
    try:
        cam = SimilarityGradCAM(embedder, layer)
    except LayerError as error:
        raise InputError(str(error)) from None
    label = name if weights is None else f"{name} ({weights.name})"
    return Model(label, embedder, cam, None if weights is None else str(weights))


def _largest_face(detector: FaceDetector, path: Path) -> tuple[np.ndarray, DetectedFace]:
    if not path.is_file():
        raise InputError(f"image not found: {path}")
    try:
        rgb = load_image(path)
    except ImageDecodeError as error:
        raise InputError(f"{path}: {error}") from None
    faces = detector.detect(rgb)
    if not faces:
        raise InputError(f"{path}: no face found")
    return rgb, max(faces, key=lambda face: visible_area(face, rgb.shape))


def _shown(path: Path) -> str:
    """A path as the report records it: relative to the repository (../shared/data/...)."""
    return os.path.relpath(path.resolve(), REPO_ROOT)


def explain_person(person: Person, models: Sequence[Model], detector: FaceDetector, seed: int) -> dict:
    """Crops, heatmaps and numbers of one person for every model."""
    reference_rgb, reference_face = _largest_face(detector, person.reference)
    probe_rgb, probe_face = _largest_face(detector, person.probe)
    style = MaskStyle.random(np.random.default_rng(seed))
    masked_rgb = render_synthetic_mask(probe_rgb, probe_face, rng=np.random.default_rng(seed), style=style)
    polygon = mask_polygon(probe_face, style)
    out: dict = {"label": person.label, "reference": _shown(person.reference), "probe": _shown(person.probe)}
    out["mask_style"] = {
        "seed": seed,
        "kind": style.kind,
        "color": list(style.color),
        "top": round(style.top, 3),
    }
    out["models"] = []
    for model in models:
        spec = model.embedder.spec
        mode = spec.input.align_mode
        reference_crop = align_face(reference_rgb, reference_face, spec.template, mode=mode)
        matrix = alignment_matrix(probe_face, spec.template, mode=mode)
        crops = {
            "unmasked": warp_to_template(probe_rgb, matrix, spec.template.size),
            "masked": warp_to_template(masked_rgb, matrix, spec.template.size),
        }
        reference = model.embedder.embed([reference_crop])[0]
        product = model.embedder.embed(list(crops.values()))
        cams = model.cam(list(crops.values()), reference)
        bands = face_bands(spec.template)
        covered = polygon_mask(polygon, matrix, spec.template.size)
        entry = {"reference_crop": reference_crop, "bands": bands, "probes": {}}
        for (kind, crop), vector, cam in zip(crops.items(), product, cams, strict=True):
            entry["probes"][kind] = {
                "crop": crop,
                "heatmap": cam.heatmap,
                "score": cam.score,
                "score_flip_averaged": float(np.dot(vector, reference)),
                "heat": heat_mass(cam.heatmap, bands, covered if kind == "masked" else None),
                "occlusion": occlusion_drops(model.embedder, crop, cam.heatmap, reference),
            }
        out["models"].append(entry)
    return out


def _caption(probe: dict) -> str:
    heat = probe["heat"]
    if heat["eye_region"] is None:
        return f"cos {probe['score']:.3f} | no positive heat"
    return f"cos {probe['score']:.3f} | eyes {heat['eye_region']:.0%} mask {heat['mask_region']:.0%}"


def _mean(values: list[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return float(np.mean(kept)) if kept else None


def build_report(explained: list[dict], models: Sequence[Model], command: str) -> dict:
    """The JSON: models, per-person numbers and their means per column."""
    report: dict = {"command": command, "target": "cosine(embedding(probe crop), embedding(reference photo))"}
    report["models"] = [
        {
            "label": m.label,
            "embedder": m.embedder.spec.name,
            "version": m.embedder.spec.version,
            "weights": m.weights,
            "layer": m.cam.layer,
            "bands": vars(face_bands(m.embedder.spec.template)),
        }
        for m in models
    ]
    report["people"] = []
    for person in explained:
        row = {k: person[k] for k in ("label", "reference", "probe", "mask_style")}
        row["columns"] = {}
        for model, entry in zip(models, person["models"], strict=True):
            for kind, probe in entry["probes"].items():
                row["columns"][f"{model.label}: {kind}"] = {
                    "score": round(probe["score"], 4),
                    "score_flip_averaged": round(probe["score_flip_averaged"], 4),
                    **{k: None if v is None else round(v, 4) for k, v in probe["heat"].items()},
                    **{k: round(v, 4) for k, v in probe["occlusion"].items()},
                }
        report["people"].append(row)
    columns = list(report["people"][0]["columns"]) if report["people"] else []
    report["mean"] = {
        column: {
            key: _mean([p["columns"][column][key] for p in report["people"]])
            for key in (
                "score",
                "score_flip_averaged",
                "above_eyes",
                "eye_region",
                "between",
                "mask_region",
                "mask_polygon",
                "occlusion_drop_hot",
                "occlusion_drop_cold",
            )
        }
        for column in columns
    }
    for column in columns:
        hot_wins = [
            p["columns"][column]["occlusion_drop_hot"] > p["columns"][column]["occlusion_drop_cold"]
            for p in report["people"]
        ]
        report["mean"][column]["occlusion_hot_above_cold"] = float(np.mean(hot_wins))
    return report


def draw(explained: list[dict], models: Sequence[Model], path: Path) -> None:
    columns = ["reference (unmasked)"]
    for model in models:
        columns += [f"{model.label}\nprobe", f"{model.label}\nprobe + synthetic mask"]
    rows = []
    for person in explained:
        first = person["models"][0]
        panels = [Panel(first["reference_crop"], None, "reference embedding")]
        for entry in person["models"]:
            bands = entry["bands"]
            guides = (bands.eye_top, bands.eye_bottom, bands.mask_row)
            for probe in entry["probes"].values():
                panels.append(Panel(probe["crop"], probe["heatmap"], _caption(probe), guides))
        rows.append((person["label"].split(" (")[0], panels))
    if len(explained) > 1:
        rows.append((f"mean of {len(explained)}", _mean_panels(explained)))
    layers = ", ".join(f"{m.label} at {m.cam.layer}" for m in models)
    title = (
        "Grad-CAM of cos(probe, reference) — " + layers + "\n"
        "dashed: eye band (top two) and the mask region's first row (below the nose)"
    )
    write_grid(path, rows, columns, title=title)


def _mean_panels(explained: list[dict]) -> list[Panel]:
    """The average crop and average heatmap of each column: the crops are aligned, so the mean
    shows where a model looks on a typical face rather than on one photo."""
    first = [person["models"][0]["reference_crop"] for person in explained]
    panels = [Panel(np.mean(first, axis=0).astype(np.uint8), None, "mean reference crop")]
    for index, entry in enumerate(explained[0]["models"]):
        bands = entry["bands"]
        for kind in entry["probes"]:
            probes = [person["models"][index]["probes"][kind] for person in explained]
            heat = np.mean([p["heatmap"] for p in probes], axis=0)
            heat = heat / heat.max() if heat.max() > 0 else heat
            shares = heat_mass(heat, bands)
            score = float(np.mean([p["score"] for p in probes]))
            caption = f"mean cos {score:.3f}"
            if shares["eye_region"] is not None:
                caption += f" | eyes {shares['eye_region']:.0%} mask {shares['mask_region']:.0%}"
            crop = np.mean([p["crop"] for p in probes], axis=0).astype(np.uint8)
            panels.append(Panel(crop, heat, caption, (bands.eye_top, bands.eye_bottom, bands.mask_row)))
    return panels


def _default_out(args: argparse.Namespace) -> Path:
    name = args.embedder if args.compare_embedder is None else f"{args.embedder}_vs_{args.compare_embedder}"
    return REPO_ROOT / "docs" / f"gradcam_{name}.png"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m toolkit.gradcam",
        description="Grad-CAM of embedders on the cosine with a reference: masked vs unmasked probes.",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--pairs-file", type=Path, default=None, help=f"View-2 pairs (default {DEFAULT_PAIRS.name})"
    )
    source.add_argument("--images", type=Path, nargs="+", default=None, help="REF PROBE [REF PROBE ...]")
    parser.add_argument("--lfw-root", type=Path, default=SHARED_DATA / "lfw" / "images")
    parser.add_argument("--people", type=int, default=DEFAULT_PEOPLE, help="identities from the pairs file")
    parser.add_argument("--embedder", default="intel_0095")
    parser.add_argument("--weights", type=Path, default=None, help="weights overriding the registry's")
    parser.add_argument("--layer", default=None, help="module name or IR op index (default: last >= 7x7 map)")
    parser.add_argument("--compare-embedder", default=None, help="a second model, e.g. the mask-tuned one")
    parser.add_argument("--compare-weights", type=Path, default=None)
    parser.add_argument("--compare-layer", default=None)
    parser.add_argument("--list-layers", action="store_true", help="print the activations and exit")
    parser.add_argument("--seed", type=int, default=0, help="mask styles: person i gets seed + i")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", type=Path, default=None, help="PNG (default docs/gradcam_<model>.png)")
    args = parser.parse_args(argv)
    if args.people < 1:
        parser.error("--people must be at least 1")
    if args.compare_weights is not None and args.compare_embedder is None:
        args.compare_embedder = args.embedder  # other weights of the same architecture
    if args.out is not None and args.out.suffix.lower() != ".png":
        parser.error(f"--out must name a .png file, got {args.out}")
    return args


def run(args: argparse.Namespace, command: str) -> dict:
    people: list[Person] = []
    if not args.list_layers:
        if args.images is not None:
            people = people_from_images(args.images)
        else:
            people = people_from_pairs(args.pairs_file or DEFAULT_PAIRS, args.lfw_root, args.people)
        missing = [str(p) for person in people for p in (person.reference, person.probe) if not p.is_file()]
        if missing:
            raise InputError(f"image not found: {', '.join(missing)}")
    models = [load_model(args.embedder, args.weights, args.layer, args.device)]
    if args.compare_embedder is not None:
        models.append(
            load_model(args.compare_embedder, args.compare_weights, args.compare_layer, args.device)
        )
        if models[1].label == models[0].label:  # the JSON's columns are keyed by label
            models[1].label += " #2"
    if args.list_layers:
        for model in models:
            print(f"{model.label} (default: {model.cam.layer})")
            for activation in list_activations(model.embedder):
                print(f"  {activation.name:32s} {'x'.join(str(d) for d in activation.shape[1:])}")
        return {}
    detector = get_face_detector()
    explained = [
        explain_person(person, models, detector, args.seed + index)
        for index, person in enumerate(tqdm(people, desc="grad-cam", unit="person"))
    ]
    out = args.out or _default_out(args)
    draw(explained, models, out)
    report = build_report(explained, models, command)
    report["png"] = str(out)
    print_and_save(report, out.with_suffix(".json"))
    return report


def main(argv: Sequence[str] | None = None) -> dict:
    args = parse_args(argv)
    command = "python -m toolkit.gradcam " + " ".join(sys.argv[1:] if argv is None else argv)
    try:
        return run(args, command)
    except InputError as error:
        raise SystemExit(f"error: {error}") from None
