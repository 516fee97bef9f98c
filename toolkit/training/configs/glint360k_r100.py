"""Glint360K with iresnet100: 360k identities need partial FC (a tenth of the centres per step)."""

from dataclasses import replace

from toolkit.training.configs.ms1mv3_r50 import config as ms1mv3

config = replace(
    ms1mv3,
    backbone="iresnet100",
    data="/data/glint360k",
    sample_rate=0.1,
    out="runs/glint360k_r100",
)
