"""Per-sample Cutout and synthetic-mask swaps, the schedule and the config overrides."""

import numpy as np
import pytest

from inference.templates import INTEL_128
from toolkit.training.augment import MaskAugment, augment_sample, sample_rng, template_cut_rows
from toolkit.training.config import TrainConfig, apply_overrides
from toolkit.training.dataset import FaceArrays, ResumableBatchSampler, TrainingSet
from toolkit.training.schedule import lr_factor

FILL = np.array([10.0, 20.0, 30.0])


def faces(n=64, size=16):
    clean = np.full((n, size, size, 3), 200, np.uint8)
    masked = np.full((n, 2, size, size, 3), 90, np.uint8)
    return FaceArrays(clean, masked, np.arange(n) % 4, np.tile([10, size], (n, 1)))


def kinds(dataset, epoch):
    dataset.set_epoch(epoch)
    return [dataset[i][3] for i in range(len(dataset))]


def test_cutout_is_decided_per_sample_not_per_batch():
    dataset = TrainingSet(faces(), MaskAugment(p_synthetic=0.0, p_cutout=0.5, p_flip=0.0), FILL, seed=1)
    decided = kinds(dataset, 0)
    cut = sum(k == 2 for k in decided)
    assert 16 < cut < 48  # both outcomes inside one batch's worth of samples


def test_cutout_fills_the_mask_rows_with_the_network_mean():
    policy = MaskAugment(p_synthetic=0.0, p_cutout=1.0, p_flip=0.0, row_jitter=0)
    clean = np.full((14, 16, 3), 200, np.uint8)
    view = augment_sample(clean, None, rows=(10, 14), fill=FILL, policy=policy, rng=sample_rng(0, 0, 0))
    assert view.kind == "cutout"
    assert (view.chip[10:] == FILL.astype(np.uint8)).all() and (view.chip[:10] == 200).all()
    assert (view.clean == 200).all()  # the teacher's view stays clean


def test_views_repeat_for_the_same_seed_epoch_and_sample_and_change_with_the_epoch():
    dataset = TrainingSet(faces(), MaskAugment(p_synthetic=0.3, p_cutout=0.3), FILL, seed=2)
    assert kinds(dataset, 0) == kinds(dataset, 0)
    assert kinds(dataset, 0) != kinds(dataset, 1)


def test_synthetic_masks_swap_in_and_flips_apply_to_both_views():
    policy = MaskAugment(p_synthetic=1.0, p_cutout=0.0, p_flip=1.0)
    clean = np.zeros((4, 4, 3), np.uint8)
    clean[:, 0] = 255
    masked = np.full((1, 4, 4, 3), 7, np.uint8)
    view = augment_sample(clean, masked, rows=(2, 4), fill=FILL, policy=policy, rng=sample_rng(0, 0, 0))
    assert view.kind == "synthetic" and (view.chip == 7).all()
    assert (view.clean[:, -1] == 255).all()


def test_streamed_crops_are_cut_from_the_runtimes_cutout_row_to_the_bottom():
    from inference.mask.occlusion import lower_face_row

    assert template_cut_rows(INTEL_128) == (lower_face_row(INTEL_128), 128)


def test_batches_shard_over_ranks_and_resume_at_the_exact_batch():
    full = ResumableBatchSampler(40, 4, seed=0, rank=0, world_size=2)
    other = ResumableBatchSampler(40, 4, seed=0, rank=1, world_size=2)
    first, second = list(full), list(other)
    assert len(first) == 5 and not set(sum(first, [])) & set(sum(second, []))
    full.set_epoch(0, start_batch=3)
    assert list(full) == first[3:]


def test_warmup_then_cosine_and_poly_decay_to_zero():
    assert lr_factor(0, total=100, warmup=10) == pytest.approx(0.1)
    assert lr_factor(10, total=100, warmup=10) == pytest.approx(1.0)
    assert lr_factor(100, total=100, warmup=10) == pytest.approx(0.0)
    assert lr_factor(55, total=100, warmup=10, kind="poly") == pytest.approx(0.25)


def test_overrides_parse_to_the_fields_types_and_refuse_unknown_keys():
    config = apply_overrides(
        TrainConfig(), ["lr=0.01", "amp=false", "epochs=3", "weights=none", "margin=arcface"]
    )
    assert (config.lr, config.amp, config.epochs, config.weights, config.margin) == (
        0.01,
        False,
        3,
        None,
        "arcface",
    )
    with pytest.raises(ValueError, match="KEY=VALUE"):
        apply_overrides(TrainConfig(), ["learning_rate=1"])
