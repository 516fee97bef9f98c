"""Do a CPU worker and a GPU worker decide alike? Embedder and mask classifier on both devices.

    python -m toolkit.dev.gpu_parity --chips var/gpu/chips.npy --threshold 0.913 --json OUT

`--chips` holds aligned 150 px chips (saved with `python -m toolkit.bench --save-chips`), so the
check needs no MediaPipe on the GPU machine. Every pair of chips is scored on both devices and
the accept/reject decisions at the threshold are compared, along with the mask decisions.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from inference.embedders import create_embedder
from inference.mask.classifier import MaskClassifier
from inference.variants import DEFAULT_MASK_THRESHOLD
from toolkit.json_output import print_and_save


def _run(chips: list[np.ndarray], device: str, weights: str | None) -> tuple[np.ndarray, np.ndarray, float]:
    options = {"weights": weights} if weights else {}
    embedder = create_embedder("dlib_resnet_v1", device=device, **options)
    classifier = MaskClassifier.from_weights(device=device)
    # Warm-up at the timed batch size: cuDNN picks its kernels on the first call of each shape.
    embedder.embed(chips[:128], batch_size=128)
    classifier.predict_proba(chips[:128], batch_size=128)
    started = time.perf_counter()
    vectors = embedder.embed(chips, batch_size=128)
    probabilities = classifier.predict_proba(chips, batch_size=128)
    if device == "cuda":
        torch.cuda.synchronize()
    return vectors, probabilities, (time.perf_counter() - started) * 1000.0 / len(chips)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chips", type=Path, required=True)
    parser.add_argument("--weights", default=None, help="dlib .dat file (no face-recognition-models)")
    parser.add_argument("--threshold", type=float, required=True, help="cosine threshold for decisions")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        parser.error("no CUDA device here")
    chips = list(np.load(args.chips))
    cpu_vectors, cpu_masks, cpu_ms = _run(chips, "cpu", args.weights)
    gpu_vectors, gpu_masks, gpu_ms = _run(chips, "cuda", args.weights)
    upper = np.triu_indices(len(chips), k=1)
    cpu_scores = (cpu_vectors @ cpu_vectors.T)[upper]
    gpu_scores = (gpu_vectors @ gpu_vectors.T)[upper]
    report = {
        "gpu": torch.cuda.get_device_name(0),
        "torch": torch.__version__,
        "chips": len(chips),
        "pairs": int(cpu_scores.size),
        "threshold": args.threshold,
        "embedding_max_abs_diff": float(np.abs(cpu_vectors - gpu_vectors).max()),
        "similarity_max_abs_diff": float(np.abs(cpu_scores - gpu_scores).max()),
        "pair_decisions_differing": int(
            ((cpu_scores >= args.threshold) != (gpu_scores >= args.threshold)).sum()
        ),
        "pairs_within_1e-3_of_threshold": int((np.abs(cpu_scores - args.threshold) < 1e-3).sum()),
        "mask_probability_max_abs_diff": float(np.abs(cpu_masks - gpu_masks).max()),
        "mask_decisions_differing": int(
            ((cpu_masks >= DEFAULT_MASK_THRESHOLD) != (gpu_masks >= DEFAULT_MASK_THRESHOLD)).sum()
        ),
        "ms_per_face_embed_and_mask_batch128": {"cpu": round(cpu_ms, 3), "cuda": round(gpu_ms, 3)},
    }
    print_and_save(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
