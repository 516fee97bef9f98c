"""Per-stage latency of the face pipeline beside the peer (face_recognition's dlib pipeline).

    python -m toolkit.bench [--images 200] [--threads 2] [--batch 16] [--device cpu] [--json FILE]

Both pipelines run in this one process on the same LFW images, image by image in alternating
order (so a busy machine slows both alike), from the encoded bytes in memory to one face
embedding: ours is decode -> Face Mesh -> quality -> mask decision -> align -> dlib ResNet in
torch (a verification probe, the per-request path), the peer's is face_recognition's
`load_image_file` -> HOG detector (upsampled once) -> 5-point landmarks -> dlib descriptor.
"Single" is one image per call; "batched" hands `--batch` images to one call (our probe
embeds them as one batch, the peer uses dlib's batched descriptor call). Per stage, the
median and 95th percentile over the images; per face, the whole path. Prints the speed-up
and writes the JSON (default docs/benchmarks/bench_cpu.json).
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from toolkit.json_output import print_and_save
from toolkit.paths import BENCHMARKS, REPO_ROOT, SHARED_DATA

DEFAULT_ROOT = SHARED_DATA / "lfw" / "images"
DEFAULT_JSON = BENCHMARKS / "bench_cpu.json"


def pick_images(root: Path, count: int) -> list[Path]:
    """`count` LFW images spread evenly over the sorted file list (the same ones every run)."""
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
    if not paths:
        raise SystemExit(f"no images under {root}")
    if count >= len(paths):
        return paths
    step = len(paths) / count
    return [paths[int(i * step)] for i in range(count)]


def stats(values: Sequence[float]) -> dict[str, float]:
    array = np.asarray(values, dtype=np.float64)
    if array.size == 0:
        return {"median": None, "p95": None, "mean": None, "n": 0}
    return {
        "median": round(float(np.median(array)), 3),
        "p95": round(float(np.percentile(array, 95)), 3),
        "mean": round(float(array.mean()), 3),
        "n": int(array.size),
    }


class Ours:
    def __init__(self, device: str, options: dict, embedder: str | None = None, name: str = "faceid") -> None:
        from inference.embedders import DEFAULT_EMBEDDER
        from inference.pipeline import FacePipeline

        self.name = name
        started = time.perf_counter()
        self.pipeline = FacePipeline(embedder or DEFAULT_EMBEDDER, device=device, **options)
        self.load_seconds = time.perf_counter() - started

    def single(self, data: bytes) -> tuple[dict[str, float], bool]:
        from inference.decode import decode_image

        started = time.perf_counter()
        rgb = decode_image(data)
        decoded = time.perf_counter()
        result = self.pipeline.probe([rgb])[0]
        done = time.perf_counter()
        timings = {"decode": (decoded - started) * 1000.0, **result.timings_ms}
        timings["total"] = (done - started) * 1000.0
        return timings, result.ok and bool(result.embeddings)

    def batch(self, items: list[bytes]) -> tuple[float, int]:
        from inference.decode import decode_image

        started = time.perf_counter()
        results = self.pipeline.probe([decode_image(data) for data in items])
        return (time.perf_counter() - started) * 1000.0, sum(bool(r.embeddings) for r in results)

    def embed_only(self, crops: list[np.ndarray]) -> float:
        started = time.perf_counter()
        self.pipeline.embedder.embed(crops, flip=self.pipeline.flip)
        return (time.perf_counter() - started) * 1000.0


class Peer:
    name = "peer"

    def __init__(self) -> None:
        from toolkit.peer import PeerPipeline

        started = time.perf_counter()
        self.pipeline = PeerPipeline()
        self.load_seconds = time.perf_counter() - started

    def single(self, data: bytes) -> tuple[dict[str, float], bool]:
        from toolkit.peer import load_image_file

        started = time.perf_counter()
        rgb = load_image_file(io.BytesIO(data))
        decoded = time.perf_counter()
        result = self.pipeline.process(rgb)
        done = time.perf_counter()
        timings = {"decode": (decoded - started) * 1000.0, **result.timings_ms}
        timings["total"] = (done - started) * 1000.0
        return timings, result.ok

    def batch(self, items: list[bytes]) -> tuple[float, int]:
        from toolkit.peer import load_image_file

        started = time.perf_counter()
        results = self.pipeline.process_batch([load_image_file(io.BytesIO(data)) for data in items])
        return (time.perf_counter() - started) * 1000.0, sum(r.ok for r in results)


def machine_info(threads: int, device: str) -> dict:
    import torch

    info = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "cpu_model": None,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "threads_requested": threads,
        "device": device,
    }
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    if hasattr(os, "getloadavg"):
        info["load_average_at_start"] = [round(v, 2) for v in os.getloadavg()]
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def run(args: argparse.Namespace) -> dict:
    import cv2
    import torch

    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    paths = pick_images(args.root, args.images)
    blobs = [p.read_bytes() for p in paths]
    info = machine_info(args.threads, args.device)

    options = {}
    if args.jitter is not None:
        options["jitter"] = args.jitter
    ours = Ours(args.device, options, args.embedder)
    # Other models measured in the same interleaved run, so that their ratios to the peer and to
    # the primary model share the machine's load.
    others = [Ours(args.device, options, name, name=f"faceid:{name}") for name in args.also]
    runners = [ours, *others]
    if not args.no_peer:
        runners.append(Peer())

    # Warm-up: first calls build kernels and caches.
    for runner in runners:
        for data in blobs[: args.warmup]:
            runner.single(data)

    single: dict[str, dict[str, list[float]]] = {r.name: {} for r in runners}
    found = {r.name: 0 for r in runners}
    for index, data in enumerate(blobs):
        order = runners if index % 2 == 0 else runners[::-1]
        for runner in order:
            timings, ok = runner.single(data)
            found[runner.name] += int(ok)
            if ok:  # per face: images where no face was found do not count
                for stage, ms in timings.items():
                    single[runner.name].setdefault(stage, []).append(ms)

    batched: dict[str, list[float]] = {r.name: [] for r in runners}
    for start in range(0, len(blobs) - args.batch + 1, args.batch):
        chunk = blobs[start : start + args.batch]
        order = runners if (start // args.batch) % 2 == 0 else runners[::-1]
        for runner in order:
            ms, faces = runner.batch(chunk)
            if faces:
                batched[runner.name].append(ms / faces)

    # The embedding stage alone, batched: aligned chips of the images, one forward per batch.
    from inference.align import align_face
    from inference.decode import decode_image

    chips = []
    for data in blobs[: max(args.batch, 32)]:
        rgb = decode_image(data)
        face = ours.pipeline.detector.largest(rgb)
        if face is not None:
            chips.append(align_face(rgb, face, ours.pipeline.embedder.spec.template))
    embed_batched = []
    for start in range(0, len(chips) - args.batch + 1, args.batch):
        embed_batched.append(ours.embed_only(chips[start : start + args.batch]) / args.batch)

    report: dict = {
        "command": "python -m toolkit.bench " + " ".join(args.argv),
        "machine": info,
        "images": len(blobs),
        "image_root": str(args.root),
        "batch": args.batch,
        "settings": ours.pipeline.settings,
        "what": "per face, from the encoded bytes in memory to one embedding (a verification probe)",
        "single": {},
        "batched_per_face_ms": {},
        "faces_found": found,
        "model_load_seconds": {r.name: round(r.load_seconds, 2) for r in runners},
        "embed_only_batched_per_face_ms": stats(embed_batched),
    }
    for runner in runners:
        report["single"][runner.name] = {stage: stats(v) for stage, v in single[runner.name].items()}
        report["batched_per_face_ms"][runner.name] = stats(batched[runner.name])
    if not args.no_peer:
        ours_total = report["single"]["faceid"]["total"]
        peer_total = report["single"]["peer"]["total"]
        report["speedup"] = {
            "single_median": round(peer_total["median"] / ours_total["median"], 2),
            "single_mean": round(peer_total["mean"] / ours_total["mean"], 2),
        }
        if batched["faceid"] and batched["peer"]:
            report["speedup"]["batched_median"] = round(
                report["batched_per_face_ms"]["peer"]["median"]
                / report["batched_per_face_ms"]["faceid"]["median"],
                2,
            )
        report["speedup_by_model"] = {
            runner.pipeline.embedder.spec.name: round(
                peer_total["median"] / report["single"][runner.name]["total"]["median"], 2
            )
            for runner in runners
            if isinstance(runner, Ours)
        }
    if hasattr(os, "getloadavg"):
        report["machine"]["load_average_at_end"] = [round(v, 2) for v in os.getloadavg()]
    return report


def save_chips(args: argparse.Namespace) -> None:
    """Aligned chips of the benchmark images, for --embed-only on a machine without MediaPipe."""
    from inference.align import DLIB_150, align_face
    from inference.decode import load_image
    from inference.detect import get_face_detector

    detector = get_face_detector()
    chips = []
    for path in pick_images(args.root, args.images):
        rgb = load_image(path)
        face = detector.largest(rgb)
        if face is not None:
            chips.append(align_face(rgb, face, DLIB_150))
    np.save(args.save_chips, np.stack(chips))
    print(f"{len(chips)} chips -> {args.save_chips}", file=sys.stderr)


def embed_only(args: argparse.Namespace) -> dict:
    """Throughput of the embedding stage alone on --device, from saved chips (GPU machines).

    On a CUDA device the same chips are also embedded on the CPU: the largest difference
    between the two is reported (CPU and GPU workers must take the same decisions).
    """
    import torch

    from inference.embedders import DEFAULT_EMBEDDER, create_embedder

    torch.set_num_threads(args.threads)
    chips = list(np.load(args.chips))
    embedder = create_embedder(args.embedder or DEFAULT_EMBEDDER, device=args.device)
    info = machine_info(args.threads, args.device)
    report: dict = {
        "command": "python -m toolkit.bench " + " ".join(args.argv),
        "machine": info,
        "what": "embedding stage alone (flip-averaged: two forwards per face), aligned 150 px chips",
        "chips": len(chips),
        "model_version": embedder.spec.version,
        "per_batch_size": {},
    }
    synchronize = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    for batch in (1, 8, 32, 128, 512):
        if batch > len(chips):
            break
        embedder.embed(chips[:batch], batch_size=batch)  # warm-up
        synchronize()
        times = []
        rounds = max(3, min(50, 256 // batch))
        for r in range(rounds):
            start = (r * batch) % max(1, len(chips) - batch + 1)
            began = time.perf_counter()
            embedder.embed(chips[start : start + batch], batch_size=batch)
            synchronize()
            times.append((time.perf_counter() - began) * 1000.0 / batch)
        report["per_batch_size"][str(batch)] = {
            "ms_per_face_median": round(float(np.median(times)), 4),
            "faces_per_second": round(1000.0 / float(np.median(times)), 1),
        }
    if args.device.startswith("cuda"):
        on_gpu = embedder.embed(chips, normalize=False)
        on_cpu = create_embedder(embedder.spec.name, device="cpu").embed(chips, normalize=False)
        report["cpu_vs_device_max_abs_diff_raw"] = float(np.abs(on_gpu - on_cpu).max())
        normed_gpu = on_gpu / np.linalg.norm(on_gpu, axis=1, keepdims=True)
        normed_cpu = on_cpu / np.linalg.norm(on_cpu, axis=1, keepdims=True)
        report["cpu_vs_device_max_abs_diff_normalised"] = float(np.abs(normed_gpu - normed_cpu).max())
        report["gpu"] = torch.cuda.get_device_name(0)
    return report


def summary(report: dict) -> str:
    lines = [
        f"{report['images']} LFW images, {report['machine']['cpu_count']} CPUs "
        f"({report['machine']['cpu_model']}), torch threads {report['machine']['torch_threads']}, "
        f"device {report['machine']['device']}",
    ]
    for name, stages in report["single"].items():
        parts = ", ".join(f"{k} {v['median']:.1f}/{v['p95']:.1f}" for k, v in stages.items())
        lines.append(f"  {name:7s} single, ms median/p95: {parts}")
    for name, value in report["batched_per_face_ms"].items():
        if value["n"]:
            lines.append(
                f"  {name:7s} batched ({report['batch']}/call): {value['median']:.1f} ms per face (median)"
            )
    embed = report["embed_only_batched_per_face_ms"]
    if embed["n"]:
        lines.append(f"  embedding alone, batched: {embed['median']:.2f} ms per face")
    if "speedup" in report:
        speed = report["speedup"]
        text = f"  speed-up over the peer: {speed['single_median']:.1f}x per face (single, medians)"
        if "batched_median" in speed:
            text += f", {speed['batched_median']:.1f}x batched"
        lines.append(text)
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m toolkit.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=200, help="how many LFW images")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the peer always runs on the CPU)")
    parser.add_argument("--threads", type=int, default=2, help="torch and OpenCV threads")
    parser.add_argument("--batch", type=int, default=16, help="images per call in the batched runs")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--jitter", type=int, default=None, help="override the pipeline's jitter")
    parser.add_argument("--embedder", default=None, help="the model measured (default: the registry default)")
    parser.add_argument(
        "--also",
        type=lambda text: [name for name in text.split(",") if name],
        default=[],
        help="more models measured in the same interleaved run, comma-separated",
    )
    parser.add_argument("--no-peer", action="store_true", help="only our pipeline (e.g. on a GPU machine)")
    parser.add_argument(
        "--json", type=Path, default=None, help=f"default {DEFAULT_JSON.relative_to(REPO_ROOT)}"
    )
    parser.add_argument(
        "--save-chips", type=Path, default=None, help="write the images' aligned chips (.npy)"
    )
    parser.add_argument("--embed-only", action="store_true", help="time the embedder alone on --chips")
    parser.add_argument("--chips", type=Path, default=None, help="chips saved with --save-chips")
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.images < 1 or args.batch < 1 or args.threads < 1:
        raise SystemExit("--images, --batch and --threads must be at least 1")
    if args.save_chips is not None:
        save_chips(args)
        return 0
    if args.embed_only:
        if args.chips is None:
            raise SystemExit("--embed-only needs --chips (made with --save-chips)")
        report = embed_only(args)
    else:
        report = run(args)
    print_and_save(report, args.json or (DEFAULT_JSON if not args.embed_only else None))
    if not args.embed_only:
        print(summary(report), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
