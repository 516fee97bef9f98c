"""arcface_torch's MS1MV3 recipe: iresnet50, CosFace, 93k identities, 8 GPUs x 128, 20 epochs."""

from dataclasses import replace

from toolkit.training.configs.base import config as base

config = replace(
    base,
    data="/data/ms1m-retinaface-t1",  # train.rec + train.idx
    data_kind="recordio",
    batch_size=128,
    lr=0.1,
    epochs=20,
    warmup_steps=2000,
    p_cutout=0.25,  # the mask-robust variant: Cutout per sample (streamed crops have no mesh)
    checkpoint_every=2000,
    validate_every=2000,
    num_workers=6,
    out="runs/ms1mv3_r50",
)
