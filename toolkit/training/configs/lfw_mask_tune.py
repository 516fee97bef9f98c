"""The shipped mask-tuned model: intel_0095 fine-tuned on LFW folds 1-5 identities with synthetic
masks, per-sample Cutout and distillation (README, "Training toolkit").

Prepare the packs first (python -m toolkit.training.data.prepare --embedder intel_0095 ...).
"""

from dataclasses import replace

from toolkit.training.configs.base import config as base

config = replace(
    base,
    backbone="intel_0095",
    data="runs/packs/lfw_train_intel.npz",
    unlabelled="runs/packs/unlabelled_intel.npz",
    val_fraction=0.1,
    val_pairs=300,
    margin="cosface",
    s=30.0,
    m3=0.2,
    init_centres=True,
    p_synthetic=0.4,
    p_cutout=0.3,
    distill_weight=5.0,
    anchor_weight=10.0,
    optimizer="adamw",
    lr=0.0005,  # x mean |w| of each tensor
    head_lr=0.001,
    lr_by_weight_scale=True,
    weight_decay=0.0,
    batch_size=64,
    epochs=3,
    max_steps=150,
    warmup_steps=20,
    grad_clip=5.0,
    checkpoint_every=50,
    validate_every=50,
    out="runs/lfw_mask_tune",
)
