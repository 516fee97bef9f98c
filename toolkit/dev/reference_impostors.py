"""A model's reference impostor score distribution, shipped as statistics for open-set thresholds.

    python -m toolkit.dev.reference_impostors --embedder NAME [--data ../shared/data] [--out FILE]

Identify needs the false accept rate per comparison far below what an organization can measure
on its own gallery (at 1,000 persons and FPIR 1%, about 1e-5). This script measures it once per
model on real photos that are not LFW (LFW is where the benchmarks are measured):
../shared/data/mask-classification/without_mask and with_mask, and ../shared/data/portraits.
Every photo goes through the product's pipeline once (every vector kind either side could need,
whatever face is found: `toolkit.eval_jobs`, cached on disk) and is then, by its own mask
decision, either
- unmasked: its full-face template meets every other unmasked photo's full-face template
  (space "unmasked", each unordered pair once), or
- masked: its probe vector for a strategy (`probe_kinds`) meets every unmasked photo's enrolled
  template of that variant (`enrollment_kinds`: spaces "masked_cutout" and "masked_synthetic"),
  as a masked probe meets a gallery enrolled without masks (the default policy's).

Near-duplicates (the data set holds copies such as "0_0_0 copy 10.jpg", and re-encodes) are
grouped by difference hash (`toolkit.mask_training.data.duplicate_groups`) and one photo per group
is kept; "augmented_image_N" files (rotated or shifted copies, which a whole-image hash misses)
are left out; photos that name their person ("<n>_<n>_<name>_<n>.jpg", and the portraits'
identities.txt) never meet that person's other photos. The rest of the mask data names nobody: a
few same-person pairs (one person masked and unmasked, or in two photos) may remain among the
"impostors". They sit in the top tail, so they can only raise the thresholds taken from this
distribution: the safe side (fewer false positives, a few more misses); `max_of_n_check` in the
output shows how far (searches of N photos drawn from the sample, measured against the formula).

Stored (inference/weights/reference_impostors/<model>.json): per space the number of
comparisons n, summary moments, the score at FAR 10^-k/m for a fine grid down to 1/n
(`quantiles`, the empirical upper quantiles) and a generalized Pareto fit of the exceedances over
the top 1% (`inference.openset.fit_tail`), which `inference.openset` uses only below 1/n.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import platform
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from inference.embedders import DEFAULT_EMBEDDER, embedder_spec
from inference.openset import (
    REFERENCE_FOLDER,
    SPACE_UNMASKED,
    ImpostorReference,
    fit_tail,
    impostor_summary,
    open_set_threshold,
)
from inference.variants import MASK_STRATEGIES
from inference.vector_kinds import KIND_FULL, enrollment_kinds, probe_kinds
from toolkit.eval_jobs import DEFAULT_CACHE, EvalConfig, ImageJob, ResultCache, pipeline_fingerprint, run_jobs
from toolkit.json_output import print_and_save
from toolkit.mask_training.data import duplicate_groups, list_images
from toolkit.paths import SHARED_DATA

FOLDERS = ("mask-classification/without_mask", "mask-classification/with_mask", "portraits")
# Rotated, shifted or flipped copies of other photos of the folder (the data set's own name for them):
# a difference hash of the whole image does not see through a rotation, so they are left out.
AUGMENTED = re.compile(r"^augmented_image_\d+\.", re.IGNORECASE)
# Photos named "<n>_<n>_<person>_<n>.jpg" (without_mask) name their person: hundreds of photos of a
# few people, whose pairs are genuine, not impostors.
NAMED_PERSON = re.compile(r"^\d+_\d+_([a-z]+)_\d+\.", re.IGNORECASE)
# Comparisons are scored in blocks of this many probes: a 2,000 x 2,000 float32 matrix at most.
BLOCK = 512


def collect_photos(data: Path, folders: Sequence[str] = FOLDERS) -> tuple[list[str], list[str]]:
    """(paths, identity keys): one photo per near-duplicate group, augmentations left out; photos
    with the same key are the same person (or the same photo) and never count as impostors."""
    paths: list[str] = []
    for folder in folders:
        paths.extend(str(p) for p in list_images(data / folder) if not AUGMENTED.match(p.name))
    if not paths:
        raise SystemExit(f"no photos under {data} ({', '.join(folders)})")
    groups = duplicate_groups(paths)
    named = _portrait_identities(data / "portraits")
    kept, keys, seen = [], [], set()
    for path, group in zip(paths, groups.tolist(), strict=True):
        if group in seen:
            continue
        seen.add(group)
        kept.append(path)
        person = named.get(os.path.abspath(path))
        if person is None and (match := NAMED_PERSON.match(Path(path).name)):
            person = match.group(1)
        keys.append(f"person:{person}" if person else f"group:{group}")
    return kept, keys


def _portrait_identities(folder: Path) -> dict[str, str]:
    listing = folder / "identities.txt"
    if not listing.is_file():
        return {}
    names = {}
    for line in listing.read_text(encoding="utf-8").splitlines():
        person, *files = line.split()
        names.update({os.path.abspath(folder / f): person for f in files})
    return names


def impostor_scores(
    vectors: dict[str, dict[str, np.ndarray]], masked: dict[str, bool], keys: dict[str, str]
) -> dict[str, np.ndarray]:
    """Every impostor comparison per space (see the module docstring), as float32 arrays.

    vectors: path -> vector kind -> (1, d) (inference.pipeline.KINDS); the enrolled template and
    the probe vector of a variant are the kinds the product takes (`enrollment_kinds`, `probe_kinds`).
    """
    paths = sorted(vectors)
    out: dict[str, np.ndarray] = {}
    unmasked = [p for p in paths if not masked[p] and KIND_FULL in vectors[p]]
    full = np.stack([vectors[p][KIND_FULL][0] for p in unmasked]) if unmasked else np.zeros((0, 1))
    key_ids = _key_ids([keys[p] for p in unmasked])
    parts = []
    for start in range(0, len(unmasked), BLOCK):
        block = full[start : start + BLOCK] @ full.T
        rows = np.arange(start, min(start + BLOCK, len(unmasked)))[:, None]
        cols = np.arange(len(unmasked))[None, :]
        keep = (cols > rows) & (key_ids[rows] != key_ids[cols])
        parts.append(block[keep])
    out[SPACE_UNMASKED] = np.concatenate(parts).astype(np.float32) if parts else np.zeros(0, np.float32)
    probes = [p for p in paths if masked[p]]
    for strategy, variant in MASK_STRATEGIES.items():
        probe_kind = probe_kinds(strategy, masked=True, unsure=False)[variant]
        # The gallery: photos enrolled unmasked (what the default policy enrolls). Masked photos
        # against masked photos are left out: the with_mask folder holds unnamed series of one
        # person (screenshots of one video, renamed copies) that no rule outside the face model
        # can separate, and they would fill the top tail with genuine pairs.
        gallery = [
            p for p in paths if not masked[p] and enrollment_kinds(masked=False)[variant] in vectors[p]
        ]
        users = [p for p in probes if probe_kind in vectors[p]]
        if not gallery or not users:
            out[variant] = np.zeros(0, np.float32)
            continue
        templates = np.stack([vectors[p][enrollment_kinds(masked=False)[variant]][0] for p in gallery])
        gallery_ids = _key_ids([keys[p] for p in gallery], extra=[keys[p] for p in users])
        probe_ids = _key_ids([keys[p] for p in users], extra=[keys[p] for p in gallery], first=False)
        parts = []
        for start in range(0, len(users), BLOCK):
            chunk = users[start : start + BLOCK]
            block = np.stack([vectors[p][probe_kind][0] for p in chunk]) @ templates.T
            # A photo never meets itself (its key is its own near-duplicate group).
            keep = probe_ids[start : start + len(chunk), None] != gallery_ids[None, :]
            parts.append(block[keep])
        out[variant] = np.concatenate(parts).astype(np.float32)
    return out


def _key_ids(keys: list[str], extra: list[str] | None = None, first: bool = True) -> np.ndarray:
    """Integer ids of identity keys, numbered over keys and extra together (so both sides agree)."""
    both = keys + (extra or []) if first else (extra or []) + keys
    numbering = {key: index for index, key in enumerate(dict.fromkeys(sorted(both)))}
    return np.array([numbering[k] for k in keys], dtype=np.int64)


def embed_photos(
    config: EvalConfig, photos: list[str], *, cache_dir: Path | None, progress: bool, refresh: bool = False
) -> dict:
    """Every photo embedded once: {"vectors": {path: {kind: (1, d)}}, "masked": {path: bool},
    "no_face": [paths], ...}.

    Kept in one pickle per model and pipeline settings, besides the per-image results of
    eval_jobs: those die with any change of the inference code, and this pass (about 4,000
    photos on one thread) is only worth redoing when the model or its pipeline changes
    (`--refresh`). Photos not in it yet are embedded and added.
    """
    digest = hashlib.sha1(json.dumps(config.cache_identity(), default=str).encode()).hexdigest()[:16]
    # The version names the weights: new weights under the same model name must not reuse vectors.
    version = embedder_spec(config.embedder).version
    name = (
        f"{config.embedder}-{version}-kinds-{digest}.pkl"  # vectors keyed by kind (inference.pipeline.KINDS)
    )
    stored = cache_dir / "reference_impostors" / name if cache_dir else None
    embedded: dict = {"vectors": {}, "masked": {}, "no_face": [], "model_versions": []}
    if stored is not None and stored.is_file() and not refresh:
        with open(stored, "rb") as handle:
            embedded = pickle.load(handle)
    known = set(embedded["vectors"]) | set(embedded["no_face"])
    jobs = [ImageJob(path, "enroll", False) for path in photos if path not in known]
    if not jobs:
        return embedded
    records = run_jobs(jobs, config, ResultCache(cache_dir, config), workers=1, progress=progress)
    embedded["code"] = pipeline_fingerprint()
    for job in jobs:
        record = records[job]
        if not record.face or not record.embeddings.get("kinds"):
            embedded["no_face"].append(job.path)
            continue
        embedded["vectors"][job.path] = record.embeddings["kinds"]
        embedded["masked"][job.path] = bool(record.masked)
        if record.model_version and record.model_version not in embedded["model_versions"]:
            embedded["model_versions"].append(record.model_version)
    if stored is not None:
        stored.parent.mkdir(parents=True, exist_ok=True)
        with open(stored.with_suffix(".tmp"), "wb") as handle:
            pickle.dump(embedded, handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(stored.with_suffix(".tmp"), stored)
    return embedded


def max_of_n_check(
    vectors: dict[str, dict[str, np.ndarray]],
    masked: dict[str, bool],
    keys: dict[str, str],
    reference: ImpostorReference,
    *,
    sizes: Sequence[int] = (10, 100, 1000),
    target_fpir: float = 0.01,
    draws: int = 20,
    seed: int = 0,
) -> dict[str, dict]:
    """The independence assumption checked on the sample itself (unmasked space): searches of N
    other photos drawn at random, each search's top score against the threshold the formula
    1 - (1 - FAR)^N chose for the target. Same-person pairs left in the data make it pessimistic."""
    unmasked = sorted(p for p in vectors if not masked[p] and KIND_FULL in vectors[p])
    full = np.stack([vectors[p][KIND_FULL][0] for p in unmasked])
    ids = _key_ids([keys[p] for p in unmasked])
    scores = full @ full.T
    scores[ids[:, None] == ids[None, :]] = -np.inf  # itself, and the same person
    rng = np.random.default_rng(seed)
    out = {}
    for size in sizes:
        if size >= len(unmasked) - 1:
            continue
        chosen = open_set_threshold(
            reference, target_fpir=target_fpir, gallery_size=size, verify_threshold=-1.0
        )
        tops = []
        for _ in range(draws):
            columns = np.argsort(rng.random(scores.shape), axis=1)[:, :size]
            tops.append(np.take_along_axis(scores, columns, axis=1).max(axis=1))
        top = np.concatenate(tops)
        top = top[np.isfinite(top)]
        out[str(size)] = {
            "threshold": chosen.threshold,
            "basis": chosen.basis,
            "target_fpir": target_fpir,
            "fpir_measured": round(float(np.mean(top >= chosen.threshold)), 5),
            "searches": int(top.size),
            "probes": len(unmasked),
        }
    return out


def build_reference(
    embedder: str,
    data: Path,
    *,
    cache_dir: Path | None,
    threads: int = 1,
    progress: bool = True,
    refresh: bool = False,
) -> dict:
    started = time.perf_counter()
    photos, keys = collect_photos(data)
    config = EvalConfig(
        embedder=embedder, threads=threads, cache_dir=None if cache_dir is None else str(cache_dir)
    )
    embedded = embed_photos(config, photos, cache_dir=cache_dir, progress=progress, refresh=refresh)
    # The cache may hold more photos than this list (it only grows): this list's only.
    vectors = {path: embedded["vectors"][path] for path in photos if path in embedded["vectors"]}
    masked = {path: embedded["masked"][path] for path in vectors}
    key_of = {path: key for path, key in zip(photos, keys, strict=True) if path in vectors}
    versions = set(embedded["model_versions"])
    scores = impostor_scores(vectors, masked, key_of)
    spaces = {}
    for space, values in scores.items():
        summary = impostor_summary(values)
        summary["tail"] = fit_tail(values)
        spaces[space] = summary
    check = max_of_n_check(
        vectors,
        masked,
        key_of,
        ImpostorReference.from_summary(embedder, SPACE_UNMASKED, spaces[SPACE_UNMASKED]),
    )
    by_folder = {
        folder: {
            "photos": sum(1 for p in photos if f"/{folder}/" in p),
            "faces": sum(1 for p in vectors if f"/{folder}/" in p),
            "masked": sum(1 for p in vectors if f"/{folder}/" in p and masked[p]),
        }
        for folder in FOLDERS
    }
    return {
        "model": embedder,
        "model_version": sorted(v for v in versions if v),
        "what": "impostor cosine scores per comparison, by the probe's mask decision (see toolkit/dev/"
        "reference_impostors.py); near-duplicates removed; identities unknown in the mask data, so a "
        "few same-person pairs may remain in the top tail: thresholds from it err on the high side",
        "photos_after_dedup": len(photos),
        "faces_found": len(vectors),
        "by_folder": by_folder,
        "photo_list_sha1": hashlib.sha1("\n".join(Path(p).name for p in photos).encode()).hexdigest(),
        "spaces": spaces,
        "max_of_n_check": check,
        "pipeline_code": embedded.get("code"),
        "embedding_note": embedded.get("note", ""),
        "command": "python -m toolkit.dev.reference_impostors " + " ".join(sys.argv[1:]),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average": list(os.getloadavg()),
            "seconds": round(time.perf_counter() - started, 1),
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--embedder", default=DEFAULT_EMBEDDER, help="registered model name")
    parser.add_argument("--data", type=Path, default=SHARED_DATA)
    parser.add_argument(
        "--out", type=Path, default=None, help="default: " + str(REFERENCE_FOLDER / "<model>.json")
    )
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument("--refresh", action="store_true", help="embed the photos again (new pipeline code)")
    args = parser.parse_args(argv)
    report = build_reference(
        args.embedder,
        args.data,
        cache_dir=args.cache_dir,
        threads=args.threads,
        progress=not args.quiet,
        refresh=args.refresh,
    )
    out = args.out or REFERENCE_FOLDER / f"{args.embedder}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    summary = {
        space: {k: v for k, v in s.items() if k in ("n", "max")} for space, s in report["spaces"].items()
    }
    print_and_save({"out": str(out), "spaces": summary}, None)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
