"""Training and mask-tuning of face embedders, split the way insightface's arcface_torch splits it:

- `backbones`: what can be trained (iresnet18-100, the registry's intel_0095 and dlib_resnet_v1);
- `losses`, `partial_fc`: margin heads (CosFace, ArcFace, combined), distillation, sharded centres;
- `augment`, `dataset`, `sources`, `data/`: per-sample masks and Cutout, batches, data formats;
- `config`, `configs/`: one base config and short overrides;
- `loop`, `train`: the training loop and `python -m toolkit.training.train` (torchrun-ready);
- `export`, `curves`, `throughput`: a registry model file, the run's curves, images per second.
"""
