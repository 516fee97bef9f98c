"""Grad-CAM on the cosine with a reference embedding (toolkit.gradcam)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from inference.embedders import embedder_spec
from inference.embedders.base import Embedder
from inference.embedders.iresnet import build_iresnet
from inference.templates import ARCFACE_112, DLIB_150, INTEL_128
from toolkit.gradcam import (
    LayerError,
    SimilarityGradCAM,
    default_layer,
    face_bands,
    heat_mass,
    list_activations,
    resolve_layer,
)
from toolkit.gradcam.cli import main
from toolkit.gradcam.figure import Panel, write_grid
from toolkit.gradcam.occlusion import extreme_windows, occlusion_drops


class TinyNet(nn.Module):
    """112x112 in, 16 values out; its last map of at least 7x7 is act2 (14x14), then a 5x5 one."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)  # 56x56
        self.act1 = nn.PReLU(8)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=4, padding=1)  # 14x14
        self.act2 = nn.ReLU()
        self.conv3 = nn.Conv2d(16, 16, 3, stride=3, padding=1)  # 5x5
        self.act3 = nn.ReLU()
        self.fc = nn.Linear(16 * 5 * 5, 16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act2(self.conv2(self.act1(self.conv1(x))))
        return self.fc(torch.flatten(self.act3(self.conv3(x)), 1))


def _frozen(module: nn.Module) -> nn.Module:
    # As inference.embedders.base.cached_module leaves a shared network.
    module.eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module


@pytest.fixture(scope="module")
def tiny() -> Embedder:
    torch.manual_seed(0)
    spec = replace(embedder_spec("iresnet18"), dim=16)
    return Embedder(spec, _frozen(TinyNet()), torch.device("cpu"))


@pytest.fixture(scope="module")
def iresnet18() -> Embedder:
    torch.manual_seed(1)
    return Embedder(embedder_spec("iresnet18"), _frozen(build_iresnet("iresnet18")), torch.device("cpu"))


def _crops(count: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (112, 112, 3), dtype=np.uint8) for _ in range(count)]


def _unit(vector: np.ndarray) -> np.ndarray:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


@pytest.mark.parametrize("name", ["tiny", "iresnet18"])
def test_heatmap_has_the_crop_shape_and_lies_in_zero_one(name: str, request: pytest.FixtureRequest):
    embedder = request.getfixturevalue(name)
    crops = _crops(2)
    reference = embedder.embed([_crops(1, seed=5)[0]])[0]
    results = SimilarityGradCAM(embedder)(crops, reference)
    assert len(results) == 2
    for result in results:
        assert result.heatmap.shape == (112, 112)
        assert result.heatmap.dtype == np.float32
        assert result.heatmap.min() >= 0.0 and result.heatmap.max() <= 1.0
        assert result.heatmap.max() == pytest.approx(1.0)  # normalised, not merely bounded


def test_default_layer_is_the_last_map_of_at_least_seven_cells(tiny: Embedder, iresnet18: Embedder):
    assert default_layer(tiny) == "act2"
    assert default_layer(iresnet18) == "bn2"  # 512 x 7 x 7, after layer4
    shapes = {a.name: a.shape for a in list_activations(tiny)}
    assert shapes["act2"] == (1, 16, 14, 14) and shapes["act3"] == (1, 16, 5, 5)


def test_heatmap_changes_with_the_reference(tiny: Embedder):
    crop = _crops(1)[0]
    rng = np.random.default_rng(3)
    cam = SimilarityGradCAM(tiny)
    first = cam([crop], _unit(rng.standard_normal(16)))[0]
    second = cam([crop], _unit(rng.standard_normal(16)))[0]
    assert not np.allclose(first.coarse, second.coarse)
    assert not np.allclose(first.heatmap, second.heatmap)


def test_target_is_the_cosine_with_the_reference(tiny: Embedder):
    crop = _crops(1)[0]
    reference = _unit(np.random.default_rng(4).standard_normal(16))
    cam = SimilarityGradCAM(tiny)
    towards, away = cam([crop], reference)[0], cam([crop], -reference)[0]
    embedding = tiny.embed([crop], flip=False)[0]  # the runtime's own normalisation and forward
    assert towards.score == pytest.approx(float(embedding @ reference), abs=1e-5)
    assert away.score == pytest.approx(-towards.score, abs=1e-6)
    # The gradient of -cos is minus that of cos: the map before ReLU flips sign exactly, so the
    # regions that raise the similarity to r are the ones that lower it to -r.
    np.testing.assert_allclose(away.coarse, -towards.coarse, rtol=1e-5, atol=1e-7)
    assert not np.allclose(towards.heatmap, away.heatmap)


def test_a_reference_scaled_by_a_constant_gives_the_same_map(tiny: Embedder):
    crop = _crops(1)[0]
    reference = _unit(np.random.default_rng(6).standard_normal(16))
    cam = SimilarityGradCAM(tiny)
    np.testing.assert_allclose(
        cam([crop], reference)[0].heatmap, cam([crop], 3 * reference)[0].heatmap, atol=1e-6
    )


def test_each_crop_of_a_batch_is_explained_against_its_own_reference(tiny: Embedder):
    crops = _crops(2)
    references = np.stack([_unit(v) for v in np.random.default_rng(7).standard_normal((2, 16))])
    cam = SimilarityGradCAM(tiny)
    batched = cam(crops, references)
    for crop, reference, result in zip(crops, references, batched, strict=True):
        np.testing.assert_allclose(cam([crop], reference)[0].heatmap, result.heatmap, atol=1e-5)


def test_the_shared_frozen_module_is_left_as_it_was(tiny: Embedder):
    before = tiny.embed(_crops(1))
    SimilarityGradCAM(tiny)(_crops(1), before[0])
    assert all(not p.requires_grad for p in tiny.module.parameters())
    assert all(not m._forward_hooks for m in tiny.module.modules())
    np.testing.assert_array_equal(tiny.embed(_crops(1)), before)


def test_layers_are_chosen_by_name_and_bad_ones_refused(tiny: Embedder):
    assert SimilarityGradCAM(tiny, "conv1")(_crops(1), tiny.embed(_crops(1))[0])[0].heatmap.shape == (
        112,
        112,
    )
    with pytest.raises(LayerError, match="no module named 'layer9'"):
        resolve_layer(tiny, "layer9")
    with pytest.raises(LayerError, match="IR graph"):
        resolve_layer(tiny, 3)
    with pytest.raises(LayerError, match="N x C x H x W"):
        SimilarityGradCAM(tiny, "fc")(_crops(1), tiny.embed(_crops(1))[0])


def test_an_integer_layer_indexes_the_ir_graph_ops():
    class Graph(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ops = nn.ModuleList([nn.Conv2d(3, 4, 3, padding=1), nn.ReLU()])

    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.graph = Graph()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.graph.ops[1](self.graph.ops[0](x)).mean(dim=(2, 3))

    spec = replace(embedder_spec("iresnet18"), dim=4)
    embedder = Embedder(spec, _frozen(Wrapper()), torch.device("cpu"))
    assert resolve_layer(embedder, 1) == resolve_layer(embedder, "1") == "graph.ops.1"
    with pytest.raises(LayerError, match="outside 0..1"):
        resolve_layer(embedder, 2)


def test_bad_references_are_refused(tiny: Embedder):
    cam = SimilarityGradCAM(tiny)
    with pytest.raises(ValueError, match="all zeros"):
        cam(_crops(1), np.zeros(16, dtype=np.float32))
    with pytest.raises(ValueError, match="references must be"):
        cam(_crops(1), np.ones(8, dtype=np.float32))


@pytest.mark.parametrize("template", [ARCFACE_112, INTEL_128, DLIB_150], ids=lambda t: t.name)
def test_the_eye_band_lies_above_the_mask_region(template):
    bands = face_bands(template)
    assert 0 <= bands.eye_top < bands.eye_bottom <= bands.mask_row < bands.height == template.size[1]


def test_heat_mass_splits_eyes_from_the_mask_region():
    bands = face_bands(ARCFACE_112)
    heat = np.zeros((112, 112), dtype=np.float32)
    heat[bands.mask_row :, 40:60] = 1.0
    covered = np.zeros((112, 112), dtype=bool)
    covered[bands.mask_row :, :50] = True
    shares = heat_mass(heat, bands, covered)
    assert shares["mask_region"] == pytest.approx(1.0) and shares["eye_region"] == 0.0
    assert shares["mask_polygon"] == pytest.approx(0.5)
    heat = np.random.default_rng(8).random((112, 112))
    shares = heat_mass(heat, bands)
    parts = ("above_eyes", "eye_region", "between", "mask_region")
    assert sum(shares[k] for k in parts) == pytest.approx(1.0)
    heat = np.zeros((112, 112), dtype=np.float32)
    heat[bands.eye_top, :] = 1.0
    assert heat_mass(heat, bands)["eye_region"] == pytest.approx(1.0)
    assert heat_mass(np.zeros((112, 112)), bands)["eye_region"] is None


def test_occlusion_blanks_the_hottest_and_the_coldest_window(tiny: Embedder):
    heat = np.zeros((112, 112), dtype=np.float32)
    heat[60:80, 20:40] = 1.0
    heat[:30, 80:] = -1.0  # never produced by Grad-CAM; here it marks the coldest place
    hot, cold = extreme_windows(heat, 20)
    assert hot == (60, 20)
    assert cold[0] <= 10 and cold[1] >= 80
    crop = _crops(1)[0]
    reference = tiny.embed([crop], flip=False)[0]
    drops = occlusion_drops(tiny, crop, np.clip(heat, 0, 1), reference)
    assert set(drops) == {"occlusion_drop_hot", "occlusion_drop_cold"}
    assert drops["occlusion_drop_hot"] > 0  # the crop against its own embedding can only lose


def test_the_grid_is_written_as_png(tmp_path: Path):
    crop = _crops(1)[0]
    heat = np.linspace(0, 1, 112 * 112, dtype=np.float32).reshape(112, 112)
    rows = [("person", [Panel(crop, None, "reference"), Panel(crop, heat, "cos 0.500", (40, 74))])]
    out = tmp_path / "grid" / "g.png"
    write_grid(out, rows, ["reference", "probe"], title="t")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_cli_refuses_bad_input_with_a_message(tmp_path: Path):
    with pytest.raises(SystemExit, match="image not found"):
        main(["--images", str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg"), "--out", str(tmp_path / "g.png")])
    with pytest.raises(SystemExit, match="even number"):
        main(["--images", str(tmp_path / "a.jpg"), "--out", str(tmp_path / "g.png")])
    with pytest.raises(SystemExit, match="pairs file not found"):
        main(["--pairs-file", str(tmp_path / "none.txt"), "--out", str(tmp_path / "g.png")])


@pytest.mark.slow
def test_the_cli_draws_a_grid_of_two_portraits_with_intel_0095(portraits_dir: Path, tmp_path: Path):
    out = tmp_path / "gradcam.png"
    # The shipped weights again as a "tuned" model: the second pair of columns must agree.
    weights = embedder_spec("intel_0095").weights_path()
    images = [str(portraits_dir / "img1.jpg"), str(portraits_dir / "img7.jpg")]
    report = main(["--images", *images, "--compare-weights", str(weights), "--out", str(out)])
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(out.with_suffix(".json").read_text()) == json.loads(json.dumps(report))
    assert report["models"][0]["embedder"] == "intel_0095"
    assert report["models"][0]["layer"] == "graph.ops.184"  # the last 8x8 map
    columns = report["people"][0]["columns"]
    unmasked, masked = columns["intel_0095: unmasked"], columns["intel_0095: masked"]
    # The same person: similar unmasked; a mask costs similarity.
    assert unmasked["score"] > 0.4
    assert masked["score"] < unmasked["score_flip_averaged"] + 0.05
    for column in (unmasked, masked):
        assert abs(column["score"] - column["score_flip_averaged"]) < 0.1
        assert 0.0 <= column["eye_region"] + column["mask_region"] <= 1.0
    assert 0.0 <= masked["mask_polygon"] <= 1.0
    assert {"occlusion_drop_hot", "occlusion_drop_cold"} <= set(masked)
    tuned = report["models"][1]
    assert tuned["weights"] == str(weights) and tuned["version"].startswith("intel_0095-")
    again = columns[f"{tuned['label']}: masked"]
    assert again["score"] == pytest.approx(masked["score"], abs=1e-5)
