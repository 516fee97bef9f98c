"""Training the mask classifier (`inference/weights/mask_classifier_v1.pt` and `_v2.pt`), split the
way insightface's arcface_torch splits its training:

- `config`: `TrainConfig`, the one base configuration the command line overrides;
- `data`: listing the photos, meshing and aligning them (cached), near-duplicate groups and the
  stratified held-out split;
- `augment`: augmentation and the synthetic masks put on training faces without one;
- `loop`: the training loop, prediction and the checkpoint;
- `report`: what the trained classifier is measured on (held-out split, synthetic masks, LFW, speed);
- `train`: the command, `python -m toolkit.mask_training.train`.

The runtime loads the weights with `inference.mask.classifier`; nothing here ships.
"""
