"""Masks: the mask / no-mask decision and the mask-aware variants used for matching.

- `classifier`: `MaskClassifier`, `get_mask_classifier()`, `DEFAULT_MASK_THRESHOLD` (run time).
- `network`: the width-reduced MobileNetV2 behind it.
- `render`: procedural synthetic masks drawn from the mesh, for mask-aware enrollment (run time).
- `occlusion`: the lower face of an aligned chip blanked, the original system's variant (run time).
- `overlay`: MaskTheFace template overlays (training and evaluation only; reads a folder given to it).
- `train`: `python -m inference.mask.train`, which reproduces the committed weights.

Submodules are imported explicitly so that the renderer does not pull torch in.
"""
