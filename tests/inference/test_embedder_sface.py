import hashlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from inference.align import ARCFACE_112, align_face
from inference.cpu_compile import frozen_copy
from inference.decode import load_image
from inference.embedders import create_embedder, embedder_spec
from inference.embedders.sface import (
    SFaceFormatError,
    SFaceNet,
    dequantize_blocked,
    load_sface,
    read_sface_onnx,
)

WEIGHTS_SHA256 = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"
REPO_ROOT = Path(__file__).resolve().parents[2]

# Our float32 forward against onnxruntime's float32 forward of the same file: the weights are
# dequantized identically (exactly, then rounded once), so the only differences are the order
# in which the two libraries sum products (up to 50,176 terms in the linear layer) and their
# rounding carried through 27 layers. Measured: about 2e-6 on outputs of magnitude ~1; 1e-4
# leaves room for other CPUs' kernels while a wrong weight, epsilon, stride or padding moves
# outputs by 1e-2 or more.
PARITY_ATOL = 1e-4


@pytest.fixture(scope="module")
def sface():
    return create_embedder("sface", device="cpu")


@pytest.fixture(scope="module")
def reference_session(sface):
    ort = pytest.importorskip("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.log_severity_level = 3  # the file lists its initializers among the inputs: noisy warnings
    session = ort.InferenceSession(
        str(sface.spec.weights_path()), options, providers=["CPUExecutionProvider"]
    )
    # The exporter also declared the float weights as graph inputs, which no node reads (the
    # nodes read the dequantized copies); onnxruntime insists on a value for each.
    unused_inputs = {i.name: np.zeros(i.shape, np.float32) for i in session.get_inputs() if i.name != "data"}

    def run(crops: list[np.ndarray]) -> np.ndarray:
        # The graph's input: RGB, 0-255, NCHW, one image per call (its batch dimension is 1).
        return np.concatenate(
            [
                session.run(
                    None, {"data": crop.transpose(2, 0, 1)[None].astype(np.float32), **unused_inputs}
                )[0]
                for crop in crops
            ]
        )

    return run


@pytest.fixture(scope="module")
def aligned_crops(detector, portraits_dir: Path, lfw_dir: Path) -> list[np.ndarray]:
    paths = [portraits_dir / f"img{i}.jpg" for i in (1, 3, 12, 13)]
    paths += [lfw_dir / name / f"{name}_0001.jpg" for name in ("Abel_Pacheco", "Aaron_Eckhart")]
    crops = []
    for path in paths:
        rgb = load_image(path)
        crops.append(align_face(rgb, detector.largest(rgb), ARCFACE_112))
    return crops


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


def test_matches_onnxruntime_on_random_and_aligned_crops(sface, reference_session, aligned_crops):
    rng = np.random.default_rng(0)
    noise = [rng.integers(0, 256, (112, 112, 3), dtype=np.uint8) for _ in range(3)]
    crops = aligned_crops + noise + [np.full((112, 112, 3), 255, np.uint8), np.zeros((112, 112, 3), np.uint8)]

    ours = sface.embed(crops, flip=False, normalize=False)
    reference = reference_session(crops)

    assert ours.shape == reference.shape == (len(crops), 128)
    assert np.abs(ours - reference).max() < PARITY_ATOL
    assert _cosines(ours, reference).min() > 0.9999


def test_module_traces_and_freezes_like_the_pipeline_does(sface, aligned_crops):
    traced = torch.jit.freeze(torch.jit.trace(sface.module, torch.rand(2, 3, 112, 112), check_trace=False))
    assert isinstance(traced, torch.jit.ScriptModule)

    # Whichever form frozen_copy keeps (the fastest here), its vectors are the eager network's.
    compiled = frozen_copy(sface, "module", (3, 112, 112))
    assert np.abs(compiled.embed(aligned_crops) - sface.embed(aligned_crops)).max() < 1e-5


def test_every_initializer_is_used_and_the_state_dict_loads_strictly(sface):
    path = sface.spec.weights_path()
    weights = read_sface_onnx(path)

    assert set(weights.state) == set(SFaceNet().state_dict())
    # 27 convolutions + 29 batch norms x 4 + 27 PReLU slopes + the linear layer's weight and bias.
    trainable = 27 + 29 * 2 + 27 + 2
    assert (
        sum(
            1
            for key in weights.state
            if not key.endswith(("running_mean", "running_var", "num_batches_tracked"))
        )
        == trainable
    )
    assert weights.conv_eps == pytest.approx(1e-3) and weights.head_eps == pytest.approx(2e-5)


def test_a_file_with_an_extra_initializer_is_refused(sface, tmp_path):
    model = onnx.load(str(sface.spec.weights_path()))
    model.graph.initializer.append(numpy_helper.from_array(np.zeros(3, np.float32), "stray_tensor"))
    changed = tmp_path / "extra.onnx"
    onnx.save(model, str(changed))

    with pytest.raises(SFaceFormatError, match="stray_tensor"):
        read_sface_onnx(changed)


def test_a_file_with_another_layer_shape_is_refused(sface, tmp_path):
    model = onnx.load(str(sface.spec.weights_path()))
    for node in model.graph.node:
        if node.op_type == "Conv" and node.input[1] == "conv_3_dw_conv2d_weight_reshaped":
            for attribute in node.attribute:
                if attribute.name == "strides":
                    attribute.ints[:] = [1, 1]
    changed = tmp_path / "stride.onnx"
    onnx.save(model, str(changed))

    with pytest.raises(SFaceFormatError, match="conv_3_dw"):
        read_sface_onnx(changed)


def test_input_normalisation_is_applied_once_by_the_embedder(sface):
    weights = read_sface_onnx(sface.spec.weights_path())

    # The graph's Sub/Mul constants are the spec's mean and scale; the module leaves them out.
    assert sface.spec.input.mean == (weights.input_mean,) * 3
    assert sface.spec.input.scale == pytest.approx((weights.input_scale,) * 3, rel=1e-7)
    doubled = replace(sface.spec, input=replace(sface.spec.input, mean=(0.0,) * 3, scale=(1.0,) * 3))
    with pytest.raises(SFaceFormatError, match="normalises"):
        load_sface(sface.spec.weights_path(), doubled)


def test_wrong_crop_shape_is_refused(sface):
    with pytest.raises(ValueError, match="112x112"):
        sface.embed([np.zeros((150, 150, 3), np.uint8)])
    with pytest.raises(ValueError, match="112x112"):
        sface.embed([np.zeros((112, 112), np.uint8)])
    assert sface.embed([]).shape == (0, 128)


def test_embeddings_are_unit_length_and_mirror_invariant(sface, aligned_crops):
    vectors = sface.embed(aligned_crops)
    mirrored = sface.embed([np.ascontiguousarray(c[:, ::-1]) for c in aligned_crops])

    assert vectors.dtype == np.float32 and vectors.shape == (len(aligned_crops), 128)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.abs(vectors - mirrored).max() < 1e-5


def test_weights_are_bundled_in_the_package_and_named_by_the_version():
    spec = embedder_spec("sface")
    path = spec.weights_path()

    assert (
        path == REPO_ROOT / "inference" / "weights" / "sface" / "face_recognition_sface_2021dec_int8bq.onnx"
    )
    assert (path.parent / "LICENSE").is_file()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == WEIGHTS_SHA256
    assert spec.version.endswith(WEIGHTS_SHA256[:12])
    assert (spec.dim, spec.template, spec.input.channel_order) == (128, ARCFACE_112, "rgb")


def test_bundled_weights_that_do_not_match_the_version_are_refused():
    from inference.embedders.sface import create

    stale = replace(embedder_spec("sface"), version="sface-2021dec-int8bq-000000000000")
    with pytest.raises(SFaceFormatError, match="new model version"):
        create(stale, device="cpu")


def test_dequantize_blocked_shares_scales_per_block_and_handles_a_short_last_block():
    quantized = np.array([[1, 2, 3, 4, 5], [-1, -2, -3, -4, -5]], dtype=np.int8)
    scales = np.array([[0.5, 2.0, 10.0], [1.0, 1.0, 0.25]], dtype=np.float32)
    zero_points = np.array([[1, 0, 5], [0, -2, 0]], dtype=np.int8)

    values = dequantize_blocked(quantized, scales, zero_points, axis=1, block_size=2)

    expected = [[0.0, 0.5, 6.0, 8.0, 0.0], [-1.0, -2.0, -1.0, -2.0, -1.25]]
    assert values.dtype == np.float32
    assert np.array_equal(values, np.array(expected, dtype=np.float32))
    with pytest.raises(SFaceFormatError, match="need 3 scales"):
        dequantize_blocked(quantized, scales[:, :2], zero_points[:, :2], axis=1, block_size=2)
