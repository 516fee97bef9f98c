"""Prepare a face pack: every listed image detected, meshed and aligned as the product does it.

For each image: the product's detector (`get_face_detector`, the face with the most visible
pixels, as the pipeline picks it), the clean chip warped to the model's template with its align
mode, K renders of synthetic masks (`inference.mask.render`: random kind, colour, texture and
shape; optionally MaskTheFace overlays) warped with the masked align mode the pipeline uses for
masked faces, the mesh projected into both chips and the rows a mask covers (below the nose to
the chin). Images without a face, or unreadable, are skipped and counted. Each image's random
draws come from (seed, its relative path), so the pack does not depend on --workers or --limit.
The format is in `toolkit.training.data.pack`.

    python -m toolkit.training.data.prepare --root ../shared/data/lfw/images \
        --pairs ../shared/data/lfw/pairs.txt --template INTEL_128 --synthetic-masks 2 --out lfw_train.npz

--set train (default): the mask-tuning identities (toolkit.training.data.lfw: folds 1-5 and
identities pairs.txt never names, without folds 6-10 and the development pairs). --set held-out:
the images the pairs of folds 6-10 and the development pairs name, for evaluation only.
--set folder: every image of ROOT/<identity>/ (any data set).
MaskTheFace overlays (--overlays) are the masks toolkit.evaluate puts on masked LFW: training
on them makes masked figures measured with them optimistic, hence off by default.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import sys
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from inference.align import ALIGN_MODES, alignment_matrix, transform_points
from inference.decode import ImageDecodeError, load_image
from inference.detect import NUM_LANDMARKS, DetectedFace, FaceDetector, get_face_detector
from inference.mask.render import MaskStyle, render_synthetic_mask
from inference.templates import TEMPLATES, AlignTemplate
from toolkit.training.data.pack import MASK_KINDS, FacePack, save_pack

# Mesh points bounding the mask region: the lowest of the nose's base (subnasale, the alae's
# bottoms) and the chin.
NOSE_BASE = (2, 98, 327)
CHIN = 152
DEFAULT_MASKED_ALIGN_MODE = "mesh"  # inference.pipeline.Pipeline's masked_align_mode
SETS = ("train", "held-out", "folder")
_LFW_NAME = re.compile(r"^(?P<name>.+)_(?P<number>\d{4})$")


@dataclass(frozen=True)
class Item:
    """One image to prepare: its file, identity and LFW number (-1 when not LFW-named)."""

    path: Path
    relative: str
    identity: str
    number: int


@dataclass(frozen=True)
class Settings:
    template: AlignTemplate
    align_mode: str
    masked_align_mode: str
    synthetic_masks: int
    seed: int
    overlays: Path | None
    overlay_fraction: float


@dataclass
class Prepared:
    """One image's chips and geometry (error is "" on success, else why it was skipped)."""

    error: str
    chip: np.ndarray | None = None
    masked: np.ndarray | None = None
    kinds: np.ndarray | None = None
    landmarks: np.ndarray | None = None
    masked_landmarks: np.ndarray | None = None
    rows: tuple[int, int] = (0, 0)
    masked_rows: tuple[int, int] = (0, 0)


def resolve_template(name: str) -> AlignTemplate:
    """INTEL_128, intel_128, ARCFACE_112, DLIB_150, ... (case-insensitive)."""
    template = TEMPLATES.get(name.lower())
    if template is None:
        known = ", ".join(t.upper() for t in sorted(TEMPLATES))
        raise SystemExit(f"unknown template {name!r}; known: {known}")
    return template


def warp(image: np.ndarray, matrix: np.ndarray, template: AlignTemplate) -> np.ndarray:
    """The pipeline's crop warp (inference.pipeline.Pipeline._crops): bilinear, borders replicated."""
    return cv2.warpAffine(
        np.ascontiguousarray(image),
        matrix,
        template.size,
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )


def mask_rows(points: np.ndarray, height: int) -> tuple[int, int]:
    """[top, bottom) chip rows from the base of the nose down to the chin, clipped to the chip."""
    top = int(np.ceil(points[list(NOSE_BASE), 1].max()))
    bottom = int(np.floor(points[CHIN, 1])) + 1
    top, bottom = int(np.clip(top, 0, height)), int(np.clip(bottom, 0, height))
    return top, max(top, bottom)


def choose_face(faces: Sequence[DetectedFace], shape: tuple[int, ...]) -> DetectedFace | None:
    """The face the pipeline embeds: the most landmark-box pixels inside the frame."""
    from inference.pipeline import visible_area

    if not faces:
        return None
    return max(faces, key=lambda face: visible_area(face, shape))


def prepare_image(
    item: Item, settings: Settings, detector: FaceDetector, overlay_templates: list | None = None
) -> Prepared:
    try:
        rgb = load_image(item.path)
    except (ImageDecodeError, OSError) as exc:
        return Prepared(error=f"unreadable: {exc}")
    modes = (settings.align_mode, settings.masked_align_mode)
    face = choose_face(detector.detect(rgb, points5="yunet" in modes), rgb.shape)
    if face is None:
        return Prepared(error="no_face")
    template = settings.template
    height = template.size[1]
    matrix = alignment_matrix(face, template, mode=settings.align_mode)
    masked_matrix = alignment_matrix(face, template, mode=settings.masked_align_mode)
    landmarks = transform_points(face.landmarks, matrix).astype(np.float32)
    masked_landmarks = transform_points(face.landmarks, masked_matrix).astype(np.float32)
    rng = np.random.default_rng([settings.seed, zlib.crc32(item.relative.encode())])
    count = settings.synthetic_masks
    masked = np.empty((count, height, template.size[0], 3), dtype=np.uint8)
    kinds = np.empty(count, dtype=np.int8)
    for k in range(count):
        if overlay_templates and rng.random() < settings.overlay_fraction:
            from toolkit.overlay import random_overlay

            rendered = random_overlay(rgb, face, overlay_templates, rng)
            kinds[k] = MASK_KINDS.index("overlay")
        else:
            style = MaskStyle.random(rng)
            rendered = render_synthetic_mask(rgb, face, rng=rng, style=style)
            kinds[k] = MASK_KINDS.index(style.kind)
        masked[k] = warp(rendered, masked_matrix, template)
    return Prepared(
        error="",
        chip=warp(rgb, matrix, template),
        masked=masked,
        kinds=kinds,
        landmarks=landmarks,
        masked_landmarks=masked_landmarks,
        rows=mask_rows(landmarks, height),
        masked_rows=mask_rows(masked_landmarks, height),
    )


# -- worker processes -------------------------------------------------------------------------
_worker: dict[str, object] = {}


def _init_worker(settings: Settings) -> None:
    cv2.setNumThreads(1)
    _worker["settings"] = settings
    _worker["detector"] = get_face_detector()
    _worker["overlays"] = _overlay_templates(settings)


def _run_worker(item: Item) -> Prepared:
    return prepare_image(item, _worker["settings"], _worker["detector"], _worker["overlays"])  # type: ignore[arg-type]


def _overlay_templates(settings: Settings) -> list | None:
    if settings.overlays is None or settings.overlay_fraction <= 0:
        return None
    from toolkit.overlay import load_templates

    return load_templates(settings.overlays)


def _results(items: Sequence[Item], settings: Settings, workers: int) -> Iterator[Prepared]:
    if workers <= 1:
        detector = get_face_detector()
        overlays = _overlay_templates(settings)
        for item in items:
            yield prepare_image(item, settings, detector, overlays)
        return
    # spawn: a fork would copy the parent's MediaPipe and torch threads into every child.
    context = multiprocessing.get_context("spawn")
    with context.Pool(workers, initializer=_init_worker, initargs=(settings,)) as pool:
        yield from pool.imap(_run_worker, items, chunksize=8)


def prepare_pack(
    items: Sequence[Item], settings: Settings, *, workers: int = 1, progress: bool = True
) -> FacePack:
    """Run every item through detection, alignment and mask rendering; the pack of those with a face."""
    width, height = settings.template.size
    count, k = len(items), settings.synthetic_masks
    chips = np.zeros((count, height, width, 3), dtype=np.uint8)
    masked = np.zeros((count, k, height, width, 3), dtype=np.uint8)
    kinds = np.zeros((count, k), dtype=np.int8)
    landmarks = np.zeros((count, NUM_LANDMARKS, 2), dtype=np.float32)
    masked_landmarks = np.zeros((count, NUM_LANDMARKS, 2), dtype=np.float32)
    rows = np.zeros((count, 2), dtype=np.int16)
    masked_rows = np.zeros((count, 2), dtype=np.int16)
    found = np.zeros(count, dtype=bool)
    skipped: list[dict[str, str]] = []
    results = _results(items, settings, workers)
    bar = tqdm(results, total=count, desc="prepare", unit="img", file=sys.stderr, disable=not progress)
    for index, result in enumerate(bar):
        if result.error:
            skipped.append({"path": items[index].relative, "reason": result.error})
            bar.set_postfix(skipped=len(skipped), refresh=False)
            continue
        found[index] = True
        chips[index] = result.chip
        masked[index] = result.masked
        kinds[index] = result.kinds
        landmarks[index] = result.landmarks
        masked_landmarks[index] = result.masked_landmarks
        rows[index] = result.rows
        masked_rows[index] = result.masked_rows
    keep = np.nonzero(found)[0]
    identities = [items[i].identity for i in keep]
    names = sorted(set(identities))
    label_of = {name: label for label, name in enumerate(names)}
    labels = np.array([label_of[n] for n in identities], dtype=np.int64)
    per_label = np.bincount(labels, minlength=len(names)) if len(labels) else np.zeros(0, dtype=np.int64)
    meta = {
        "template": settings.template.name,
        "size": [width, height],
        "align_mode": settings.align_mode,
        "masked_align_mode": settings.masked_align_mode,
        "synthetic_masks": k,
        "mask_kinds": list(MASK_KINDS),
        "seed": settings.seed,
        "overlays": str(settings.overlays) if settings.overlays else None,
        "overlay_fraction": settings.overlay_fraction if settings.overlays else 0.0,
        "listed": count,
        "with_face": int(found.sum()),
        "no_face": sum(s["reason"] == "no_face" for s in skipped),
        "unreadable": sum(s["reason"] != "no_face" for s in skipped),
        "identities": len(names),
        "single_image_identities": int((per_label == 1).sum()),
        "skipped": skipped,
    }
    return FacePack(
        chips=chips[keep],
        masked=masked[keep],
        mask_kind=kinds[keep],
        landmarks=landmarks[keep],
        masked_landmarks=masked_landmarks[keep],
        mask_rows=rows[keep],
        masked_mask_rows=masked_rows[keep],
        labels=labels,
        names=np.array(names, dtype=str),
        numbers=np.array([items[i].number for i in keep], dtype=np.int32),
        paths=np.array([items[i].relative for i in keep], dtype=str),
        single=per_label[labels] == 1 if len(labels) else np.zeros(0, dtype=bool),
        meta=meta,
    )


# -- listing ----------------------------------------------------------------------------------
def list_items(root: Path, which: str, pairs: Path, dev_pairs: Path) -> list[Item]:
    """The images of a set (see the module docstring), sorted by identity then image."""
    from toolkit.training.data import folders, lfw

    def item(path: Path, identity: str, number: int) -> Item:
        return Item(path, path.relative_to(root).as_posix(), identity, number)

    if which == "train":
        return [item(i.path, i.name, i.number) for i in lfw.training_images(root, pairs, dev_pairs)]
    if which == "held-out":
        return [item(i.path, i.name, i.number) for i in lfw.held_out_images(root, pairs, dev_pairs)]
    names, samples = folders.list_identities(root)
    result = []
    for path, label in samples:
        match = _LFW_NAME.match(path.stem)
        number = int(match["number"]) if match and match["name"] == names[label] else -1
        result.append(item(path, names[label], number))
    return result


def main(argv: list[str] | None = None) -> int:
    from inference.embedders.registry import embedder_spec
    from inference.embedders.spec import UnknownEmbedderError
    from toolkit.training.data import lfw

    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--root", type=Path, default=lfw.DEFAULT_ROOT, help="images: ROOT/<identity>/<files>")
    parser.add_argument("--pairs", type=Path, default=lfw.DEFAULT_PAIRS, help="LFW View-2 pairs.txt")
    parser.add_argument("--dev-pairs", type=Path, default=lfw.DEFAULT_DEV_PAIRS)
    parser.add_argument("--set", dest="which", choices=SETS, default="train")
    parser.add_argument("--embedder", default=None, help="template and align mode of this model")
    parser.add_argument(
        "--template", default=None, help="INTEL_128, ARCFACE_112, DLIB_150, FUSION_CANVAS_144"
    )
    parser.add_argument(
        "--align-mode", choices=ALIGN_MODES, default=None, help="default: the model's or five_point"
    )
    parser.add_argument("--masked-align-mode", choices=ALIGN_MODES, default=DEFAULT_MASKED_ALIGN_MODE)
    parser.add_argument(
        "--synthetic-masks", type=int, default=2, metavar="K", help="masked renders per image"
    )
    parser.add_argument("--overlays", type=Path, default=None, help="MaskTheFace templates folder (opt-in)")
    parser.add_argument(
        "--overlay-fraction", type=float, default=0.3, help="share of renders that are overlays"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--limit", type=int, default=None, help="only the first N listed images")
    parser.add_argument("--workers", type=int, default=1, help="processes (each loads its own detector)")
    parser.add_argument("--compress", action="store_true", help="np.savez_compressed (slower, smaller)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)

    if args.synthetic_masks < 0 or args.workers < 1 or (args.limit is not None and args.limit < 1):
        parser.error("--synthetic-masks must be >= 0, --workers and --limit >= 1")
    if not 0.0 <= args.overlay_fraction <= 1.0:
        parser.error("--overlay-fraction must be in [0, 1]")
    align_mode = args.align_mode
    template = resolve_template(args.template) if args.template else None
    if args.embedder:
        try:
            spec = embedder_spec(args.embedder)
        except UnknownEmbedderError as exc:
            raise SystemExit(str(exc)) from None
        if template is not None and template.name != spec.input.template.name:
            raise SystemExit(
                f"--template {args.template} is not {args.embedder}'s {spec.input.template.name}"
            )
        template = spec.input.template
        align_mode = align_mode or spec.input.align_mode
    if template is None:
        parser.error("give --template or --embedder")
    if not args.root.is_dir():
        raise SystemExit(f"image root {args.root} not found")
    for name, path in (("--pairs", args.pairs), ("--dev-pairs", args.dev_pairs)):
        if args.which != "folder" and not path.is_file():
            raise SystemExit(f"{name} file {path} not found")
    if args.overlays is not None and not args.overlays.is_dir():
        raise SystemExit(f"overlay folder {args.overlays} not found")

    from toolkit.pairs import PairsFormatError

    try:
        items = list_items(args.root, args.which, args.pairs, args.dev_pairs)
    except (PairsFormatError, ValueError, FileNotFoundError) as exc:
        raise SystemExit(f"error: {exc}") from None
    missing = [i.relative for i in items if not i.path.is_file()]
    if missing:
        first = missing[0]
        print(f"{len(missing)} listed images are not under {args.root} (first: {first})", file=sys.stderr)
        items = [i for i in items if i.path.is_file()]
    items = items[: args.limit] if args.limit else items
    if not items:
        raise SystemExit("no images to prepare")
    settings = Settings(
        template=template,
        align_mode=align_mode or "five_point",
        masked_align_mode=args.masked_align_mode,
        synthetic_masks=args.synthetic_masks,
        seed=args.seed,
        overlays=args.overlays,
        overlay_fraction=args.overlay_fraction,
    )
    started = time.perf_counter()
    pack = prepare_pack(items, settings, workers=args.workers)
    elapsed = time.perf_counter() - started
    pack.meta.update(
        set=args.which,
        root=str(args.root),
        embedder=args.embedder,
        missing_files=len(missing),
        seconds=round(elapsed, 1),
        command="python -m toolkit.training.data.prepare " + " ".join(sys.argv[1:] if argv is None else argv),
    )
    save_pack(args.out, pack, compress=args.compress)
    meta = pack.meta
    print(
        f"{meta['with_face']} of {meta['listed']} images with a face ({meta['no_face']} without, "
        f"{meta['unreadable']} unreadable), {meta['identities']} identities "
        f"({meta['single_image_identities']} with a single image), {args.synthetic_masks} masked renders "
        f"each, {template.name} {settings.align_mode}/{settings.masked_align_mode}, {elapsed:.0f} s "
        f"-> {args.out} ({os.path.getsize(args.out) / 1e6:.0f} MB)",
        file=sys.stderr,
    )
    print(json.dumps({k: v for k, v in meta.items() if k != "skipped"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
