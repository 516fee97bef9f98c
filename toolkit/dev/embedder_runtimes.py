"""Embedding time per face of our torch embedders against the runtimes their weights were made for.

    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 nice -n 10 python -m toolkit.dev.embedder_runtimes \\
        --model sface --faces 30 --rounds 3 --json docs/benchmarks/sface_speed.json
    ... --model intel_0095 ... --json docs/benchmarks/intel_speed.json

The product runs both imported models through its own torch modules (inference/embedders/sface.py,
inference/embedders/intel_0095.py with openvino_ir.py). This measures what that costs or saves
against the reference runtimes on the same aligned development crops: OpenCV dnn and onnxruntime
on sface's ONNX file, the OpenVINO runtime on intel_0095's IR. Every runner takes one face at a
time (batch 1) with the flip (crop and mirror averaged), on one thread, and returns the final
L2-normalised vector, its own pre- and post-processing included; detection and alignment are not
timed. The torch runners are the eager module and the form inference.cpu_compile.frozen_copy keeps
for the pipeline (the fastest of eager, frozen and frozen + optimize_for_inference).

Each face goes through every runner in turn (interleaved), so a shared machine's changing load falls
on all of them alike; the load average before and after is recorded. The vectors are compared with
the reference runtime's (onnxruntime for sface, OpenVINO for intel_0095): max abs difference.
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch

from inference.align import align_face
from inference.cpu_compile import frozen_copy
from inference.decode import load_image
from inference.detect import get_face_detector
from inference.embedders import create_embedder
from inference.embedders.base import Embedder
from inference.embedders.spec import EmbedderSpec
from inference.pipeline import visible_area
from inference.templates import AlignTemplate
from toolkit.dev.tune_dev import dev_images
from toolkit.json_output import print_and_save
from toolkit.paths import SHARED_DATA

MODELS = ("sface", "intel_0095")
REFERENCE = {"sface": "onnxruntime", "intel_0095": "openvino"}

Runner = Callable[[np.ndarray], np.ndarray]  # one aligned RGB crop in, one unit vector (dim,) out


def development_crops(template: AlignTemplate, count: int, shared: Path) -> list[np.ndarray]:
    """The first `count` development images' primary faces (as the pipeline picks them), aligned."""
    detector = get_face_detector()
    crops = []
    for path, _ in dev_images(shared, None):
        rgb = load_image(path)
        faces = detector.detect(rgb)
        if faces:
            face = max(faces, key=lambda f: visible_area(f, rgb.shape))
            crops.append(align_face(rgb, face, template))
        if len(crops) == count:
            break
    return crops


def graph_input(crop: np.ndarray, channel_order: str) -> np.ndarray:
    """What both reference graphs take: 0-255 float NCHW, batch 1, in the graph's channel order."""
    pixels = crop[:, :, ::-1] if channel_order == "bgr" else crop
    return np.ascontiguousarray(pixels.transpose(2, 0, 1)[None], dtype=np.float32)


def unit_mean(outputs: Sequence[np.ndarray]) -> np.ndarray:
    """The flip's average of the crop's and the mirror's raw outputs, L2-normalised."""
    vector = np.mean([np.asarray(o, dtype=np.float32).reshape(-1) for o in outputs], axis=0)
    return vector / np.linalg.norm(vector)


def torch_runner(embedder: Embedder) -> Runner:
    return lambda crop: embedder.embed([crop], flip=True)[0]


def opencv_dnn_runner(onnx_path: Path, channel_order: str) -> Runner:
    net = cv2.dnn.readNetFromONNX(str(onnx_path))

    def run(crop: np.ndarray) -> np.ndarray:
        outputs = []
        for image in (crop, crop[:, ::-1]):  # the graph's batch is fixed at 1: two forwards
            net.setInput(graph_input(image, channel_order))
            outputs.append(net.forward().copy())
        return unit_mean(outputs)

    return run


def onnxruntime_runner(onnx_path: Path, channel_order: str) -> Runner:
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    session = onnxruntime.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    image_input = session.get_inputs()[0].name
    # sface's exporter lists the weight tensors among the graph inputs too; onnxruntime wants a value
    # for each, and they are not read (the int8 blocks are dequantized from the initializers).
    extra = {i.name: np.zeros(i.shape, np.float32) for i in session.get_inputs()[1:]}

    def run(crop: np.ndarray) -> np.ndarray:
        outputs = [
            session.run(None, {image_input: graph_input(image, channel_order), **extra})[0]
            for image in (crop, crop[:, ::-1])
        ]
        return unit_mean(outputs)

    return run


def openvino_runner(xml_path: Path, channel_order: str) -> Runner:
    import openvino

    core = openvino.Core()
    model = core.read_model(str(xml_path))
    _, channels, height, width = model.inputs[0].shape
    model.reshape([2, channels, height, width])  # crop and mirror in one forward, like our torch module
    config = {"INFERENCE_NUM_THREADS": 1, "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    request = core.compile_model(model, "CPU", config).create_infer_request()

    def run(crop: np.ndarray) -> np.ndarray:
        batch = np.concatenate([graph_input(crop, channel_order), graph_input(crop[:, ::-1], channel_order)])
        raw = request.infer(batch)[0].reshape(2, -1)
        return unit_mean(list(raw))

    return run


def build_runners(model: str) -> tuple[dict[str, Runner], dict[str, str], EmbedderSpec, str]:
    """Name -> runner (the reference runtime last), what each one is, the spec, the pipeline's torch form."""
    embedder = create_embedder(model, device="cpu")
    spec = embedder.spec
    width, height = spec.input_size
    served = frozen_copy(embedder, "module", (3, height, width))
    weights = spec.weights_path()
    order = spec.input.channel_order
    runners: dict[str, Runner] = {}
    about: dict[str, str] = {}
    form = torch_form(served.module)
    if served is embedder:
        runners["torch_eager (the pipeline's)"] = torch_runner(embedder)
        about["torch_eager (the pipeline's)"] = (
            f"inference.embedders.create_embedder({model!r}), Embedder.embed: the eager module, which "
            "inference.cpu_compile.frozen_copy kept for the pipeline in this run (its compiled forms "
            "timed slower)"
        )
    else:
        name = f"torch_{form} (the pipeline's)"
        runners[name] = torch_runner(served)
        about[name] = (
            f"the same module as TorchScript ({form.replace('_', ' + ')}), the form "
            "inference.cpu_compile.frozen_copy kept for the pipeline in this run (fastest of its timed forms)"
        )
        runners["torch_eager"] = torch_runner(embedder)
        about["torch_eager"] = f"inference.embedders.create_embedder({model!r}), Embedder.embed, not compiled"
    if model == "sface":
        runners["opencv_dnn"] = opencv_dnn_runner(weights, order)
        about["opencv_dnn"] = f"cv2.dnn.readNetFromONNX({weights.name}), two forwards of batch 1"
        runners["onnxruntime"] = onnxruntime_runner(weights, order)
        about["onnxruntime"] = (
            f"onnxruntime CPUExecutionProvider on {weights.name}, two forwards of batch 1 "
            "(the reference: the graph's own normalisation, RGB 0-255 NCHW in)"
        )
    else:
        runners["openvino"] = openvino_runner(weights, order)
        about["openvino"] = (
            f"OpenVINO runtime on {weights.name} reshaped to batch 2 (crop + mirror), CPU, f32, "
            "latency hint (the reference: BGR 0-255 NCHW in)"
        )
    return runners, about, spec, form


def torch_form(module: torch.nn.Module) -> str:
    """eager, frozen, or frozen_optimized (optimize_for_inference moves the convolutions to oneDNN)."""
    if not isinstance(module, torch.jit.ScriptModule):
        return "eager"
    kinds = {node.kind() for node in module.graph.nodes()}
    return "frozen_optimized" if "prim::mkldnn_convolution" in kinds else "frozen"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict[str, str]:
    found = {"python": platform.python_version(), "torch": torch.__version__, "opencv": cv2.__version__}
    for name in ("onnxruntime", "openvino"):
        try:
            found[name] = __import__(name).__version__
        except ImportError:
            found[name] = "not installed"
    return found


def timing(samples_ms: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(samples_ms), 2),
        "mean": round(statistics.mean(samples_ms), 2),
        "p10": round(float(np.percentile(samples_ms, 10)), 2),
        "p90": round(float(np.percentile(samples_ms, 90)), 2),
        "min": round(min(samples_ms), 2),
        "n": len(samples_ms),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", choices=MODELS, required=True)
    parser.add_argument("--faces", type=int, default=30, help="aligned development crops (default 30)")
    parser.add_argument("--rounds", type=int, default=3, help="timed passes over all crops (default 3)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed calls per runner first (default 3)")
    parser.add_argument("--shared", type=Path, default=SHARED_DATA, help="the shared data folder")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args(argv)
    if args.faces < 1 or args.rounds < 1 or args.warmup < 0:
        parser.error("--faces and --rounds must be at least 1, --warmup at least 0")
    command = " ".join(
        [f"{k}={os.environ[k]}" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ]
        + ["python -m toolkit.dev.embedder_runtimes", shlex.join(sys.argv[1:] if argv is None else argv)]
    )

    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    load_before = os.getloadavg()
    runners, about, spec, form = build_runners(args.model)
    crops = development_crops(spec.template, args.faces, args.shared)
    if not crops:
        parser.error(f"no faces found in the development images under {args.shared}")

    for run in runners.values():
        for crop in crops[: args.warmup]:
            run(crop)
    times: dict[str, list[float]] = {name: [] for name in runners}
    vectors: dict[str, list[np.ndarray]] = {name: [] for name in runners}
    for round_number in range(args.rounds):
        for crop in crops:
            for name, run in runners.items():  # interleaved: each face through every runner in turn
                started = time.perf_counter()
                vector = run(crop)
                times[name].append((time.perf_counter() - started) * 1000.0)
                if round_number == 0:
                    vectors[name].append(np.asarray(vector, dtype=np.float32).reshape(-1))
    load_after = os.getloadavg()

    reference = REFERENCE[args.model]
    reference_vectors = np.stack(vectors[reference])
    ms_per_face = {name: timing(samples) for name, samples in times.items()}
    report = {
        "what": (
            f"{args.model} embedding time per face: batch 1, flip on (crop and mirror averaged), one "
            "thread, final L2-normalised vector out, each runner's own pre/post-processing included; "
            "detection and alignment not timed; the same aligned development crops for all, runners "
            "interleaved face by face; max_abs_diff: of the unit vectors, against the reference runtime"
        ),
        "command": command,
        "model": args.model,
        "spec_version": spec.version,
        "weights": spec.weights_path().name,
        "input": {
            "size": list(spec.input_size),
            "template": spec.template.name,
            "embedder_channel_order": spec.input.channel_order,
        },  # fmt: skip
        "faces": len(crops),
        "rounds": args.rounds,
        "warmup": args.warmup,
        "batch": 1,
        "flip": True,
        "threads": {"torch": torch.get_num_threads(), "opencv": cv2.getNumThreads(), "runtimes": 1},
        "pipeline_torch_form": form,
        "reference": reference,
        "runners": about,
        "ms_per_face": ms_per_face,
        "median_vs_reference": {
            name: round(ms["median"] / ms_per_face[reference]["median"], 2)
            for name, ms in ms_per_face.items()
        },
        f"max_abs_diff_vs_{reference}": {
            name: float(np.abs(np.stack(found) - reference_vectors).max()) for name, found in vectors.items()
        },
        "machine": {
            "cpu": cpu_name(),
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in load_after],
        },
        "versions": versions(),
    }
    print_and_save(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
