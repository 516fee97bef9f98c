"""Grad-CAM for face embedders, on the cosine similarity with a reference embedding.

    from toolkit.gradcam import SimilarityGradCAM
    cam = SimilarityGradCAM(create_embedder("intel_0095"))      # layer: last map >= 7x7
    result = cam([probe_crop], embedder.embed([reference_crop])[0])[0]

The command line (`python -m toolkit.gradcam`) draws masked vs unmasked grids: toolkit.gradcam.cli.
"""

from toolkit.gradcam.cam import (
    MIN_CAM_SIZE,
    Activation,
    CamResult,
    LayerError,
    SimilarityGradCAM,
    default_layer,
    list_activations,
    normalised_input,
    resolve_layer,
    similarity_gradcam,
)
from toolkit.gradcam.regions import FaceBands, face_bands, heat_mass

__all__ = [
    "MIN_CAM_SIZE",
    "Activation",
    "CamResult",
    "FaceBands",
    "LayerError",
    "SimilarityGradCAM",
    "default_layer",
    "face_bands",
    "heat_mass",
    "list_activations",
    "normalised_input",
    "resolve_layer",
    "similarity_gradcam",
]
