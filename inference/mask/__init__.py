"""Masks: the mask / no-mask decision and the mask-aware variants used for matching.

- `classifier`: `MaskClassifier`, `get_mask_classifier()` (run time; the threshold's default is
  `inference.variants.DEFAULT_MASK_THRESHOLD`).
- `network`: the width-reduced MobileNetV2 behind it.
- `render`: procedural synthetic masks drawn from the mesh, for mask-aware enrollment (run time).
- `occlusion`: the lower face of an aligned chip blanked, the original system's variant (run time).

Training (`python -m toolkit.mask_training.train`, which reproduces the committed weights) and the
MaskTheFace template overlays it and the evaluation use (`toolkit.overlay`) live in the toolkit,
outside the runtime.

Submodules are imported explicitly so that the renderer does not pull torch in.
"""
