"""Where each embedder expects the face in its input crop: the alignment templates.

Plain data (numpy only, no OpenCV): the embedder registry names each model's template without
importing the warping code in `inference.align`, so the web process can read a model's input
configuration without the pipeline's dependencies.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# One mesh index, or several whose mean gives the point (an eye centre from iris and corners).
MeshPoint = int | tuple[int, ...]


@dataclass(frozen=True)
class AlignTemplate:
    """Where an embedder expects five facial points in its input crop."""

    name: str
    size: tuple[int, int]  # width, height
    points: np.ndarray = field(repr=False)  # 5x2 destination pixels
    mesh_indices: tuple[MeshPoint, ...]

    def source_points(self, landmarks: np.ndarray) -> np.ndarray:
        """The five template points located on a mesh (pixels of the mesh's image)."""
        return np.stack([mesh_point(landmarks, index) for index in self.mesh_indices])


def _dlib_points() -> np.ndarray:
    # dlib's get_face_chip_details for a 150 px chip with padding 0.25: the 5-point shape
    # predictor's mean shape in a unit square, then (padding + p) / (1 + 2 * padding) * size.
    normalised = np.array(
        [
            (0.8595674595992, 0.2134981538014),
            (0.6460604764104, 0.2289674387677),
            (0.1205750620789, 0.2137274526848),
            (0.3340850613712, 0.2290642403242),
            (0.4901123135679, 0.6277975316475),
        ],
        dtype=np.float64,
    )
    return (0.25 + normalised) / 1.5 * 150.0


# dlib's points: right-of-image eye outer and inner corners, left-of-image eye outer and inner
# corners, bottom of the nose (subnasale); Face Mesh indices 263, 362, 33, 133, 2.
DLIB_150 = AlignTemplate(
    name="dlib_150", size=(150, 150), points=_dlib_points(), mesh_indices=(263, 362, 33, 133, 2)
)

# insightface's arcface_src: eye centres, nose tip, mouth corners (image left first). Eye centres
# on the mesh: the mean of the iris centre and both eye corners, steadier than the iris alone
# when the gaze is off-axis. Nose: mesh point 4 rather than the tip (1); on unmasked faces
# (mask-classification/without_mask, portraits) 1 lands 4.5 px below the template's nose on
# average and 4 lands 1.8 px below (RMS over the five points 5.8 vs 5.5 px at 112 px).
ARCFACE_112 = AlignTemplate(
    name="arcface_112",
    size=(112, 112),
    points=np.array(
        [
            (38.2946, 51.6963),
            (73.5318, 51.5014),
            (56.0252, 71.7366),
            (41.5493, 92.3655),
            (70.7299, 92.2041),
        ],
        dtype=np.float64,
    ),
    mesh_indices=((33, 133, 468), (362, 263, 473), 4, 61, 291),
)

# --- intel_0095 template ---

# Open Model Zoo face-reidentification-retail-0095's reference points (its model card, in [0,1]
# of the crop) times 128: eye centres, nose tip, mouth corners, image left first, like
# ARCFACE_112, so the same mesh points locate them.
INTEL_128 = AlignTemplate(
    name="intel_128",
    size=(128, 128),
    points=np.array(
        [
            (0.31556875000000000, 0.4615741071428571),
            (0.68262291666666670, 0.4615741071428571),
            (0.50026249999999990, 0.6405053571428571),
            (0.34947187500000004, 0.8246919642857142),
            (0.65343645833333330, 0.8246919642857142),
        ],
        dtype=np.float64,
    )
    * 128.0,
    mesh_indices=ARCFACE_112.mesh_indices,
)

# --- fusion canvas template ---

# The fusion model's input (inference.embedders.fusion): ARCFACE_112 scaled up to a 144 px canvas,
# from which each member's crop is warped with a fixed similarity. Larger than both members'
# crops (112, 128) so neither is upsampled by much: intel-0095's eye distance is 47 px at 128,
# the canvas's 45 px. Scaled in pixel-area coordinates ((p + 0.5) * k - 0.5), so the canvas-to-
# ArcFace warp is an exact scale about the crop's centre and commutes with the horizontal flip.
FUSION_CANVAS_144 = AlignTemplate(
    name="fusion_canvas_144",
    size=(144, 144),
    points=(ARCFACE_112.points + 0.5) * (144 / 112) - 0.5,
    mesh_indices=ARCFACE_112.mesh_indices,
)

TEMPLATES = {template.name: template for template in (DLIB_150, ARCFACE_112, INTEL_128, FUSION_CANVAS_144)}


def mesh_point(landmarks: np.ndarray, index: MeshPoint) -> np.ndarray:
    """One mesh point's pixel position, or the mean of several (an eye centre)."""
    points = np.asarray(landmarks, dtype=np.float64)
    if isinstance(index, int):
        return points[index, :2]
    return points[list(index), :2].mean(axis=0)
