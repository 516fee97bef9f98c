"""Similarity warp of a meshed face onto an embedder's template.

Modes:
- "five_point": the template's five points (eyes, nose, mouth corners) from the mesh.
- "eyes": eye, brow and upper-nose-bridge mesh points only, for masked faces whose nose and
  mouth points the mesh can only guess. Their template positions come from
  `toolkit.dev.derive_eye_template` (unmasked faces aligned with "five_point", averaged).
- "mesh": the same, fitted on a larger set of rigid mesh points (eyes, brows, nose).
- "yunet": YuNet's own five points (`DetectedFace.points5`: eye centres, nose tip, mouth corners)
  fitted to the template's five points, the same least-squares similarity as "five_point"; for
  templates whose five points are those (ARCFACE_112 and the templates derived from it). A face
  YuNet did not see (points5 None) falls back to "five_point" on the mesh.
"""

from __future__ import annotations

import cv2
import numpy as np

from inference.detect import DetectedFace
from inference.templates import ARCFACE_112, DLIB_150, TEMPLATES, AlignTemplate

ALIGN_MODES = ("five_point", "eyes", "mesh", "yunet")

# The templates themselves are plain data in inference.templates (the model registry reads them
# without OpenCV); they are re-exported here for the code that aligns faces.
__all__ = [
    "ALIGN_MODES",
    "ARCFACE_112",
    "DERIVED_POSITIONS",
    "DLIB_150",
    "EYE_MESH_INDICES",
    "MESH_MODE_INDICES",
    "TEMPLATES",
    "AlignTemplate",
    "align_face",
    "alignment_matrix",
    "derived_positions",
    "estimate_similarity",
    "transform_points",
    "warp_to_template",
]

# Eye contours, brows and the top of the nose bridge: what a mask leaves visible.
EYE_MESH_INDICES: tuple[int, ...] = (
    # eye on the image's left (the subject's right): contour from the outer corner
    33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246,
    # eye on the image's right
    263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466,
    # brows
    46, 53, 52, 65, 55, 70, 63, 105, 66, 107,
    276, 283, 282, 295, 285, 300, 293, 334, 296, 336,
    # between the brows and the upper nose bridge
    168, 6,
)  # fmt: skip
# For "mesh" mode: the eye set plus the nose, which moves little with expression.
MESH_MODE_INDICES: tuple[int, ...] = EYE_MESH_INDICES + (197, 195, 5, 4, 1, 2, 98, 327, 129, 358, 48, 278)


def estimate_similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation) taking src to dst (Umeyama 1991).

    Returns the 2x3 matrix for cv2.warpAffine. Reflections are excluded.
    """
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    if src.shape != dst.shape or len(src) < 2:
        raise ValueError(f"need matching point sets of at least 2 points, got {src.shape} and {dst.shape}")
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    src_var = (src_c**2).sum() / len(src)
    if src_var <= 0:
        raise ValueError("source points are all identical")
    covariance = dst_c.T @ src_c / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rotation = u @ np.diag(sign) @ vt
    scale = (singular * sign).sum() / src_var
    matrix = np.empty((2, 3), dtype=np.float64)
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def alignment_matrix(
    face: DetectedFace, template: AlignTemplate = DLIB_150, *, mode: str = "five_point"
) -> np.ndarray:
    """The 2x3 similarity taking the face's image pixels to the template's crop pixels."""
    if mode == "yunet":
        if template.mesh_indices != ARCFACE_112.mesh_indices:
            raise ValueError(
                f"mode 'yunet' needs a template of eye centres, nose tip and mouth corners; "
                f"{template.name!r} has other points"
            )
        if face.points5 is not None:
            return estimate_similarity(face.points5, template.points)
        mode = "five_point"
    src, dst = _correspondences(face.landmarks, template, mode)
    return estimate_similarity(src, dst)


def align_face(
    rgb: np.ndarray, face: DetectedFace, template: AlignTemplate = DLIB_150, *, mode: str = "five_point"
) -> np.ndarray:
    """The face warped to template.size (uint8 RGB), bilinear, borders replicated."""
    return warp_to_template(rgb, alignment_matrix(face, template, mode=mode), template.size)


def warp_to_template(rgb: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Warp with a 2x3 matrix to size (width, height), area-averaging first when it shrinks a lot.

    Bilinear sampling of a face several times larger than the crop skips pixels and aliases
    (dlib's extract_image_chip builds a pyramid for the same reason); the region the crop comes
    from is first reduced with INTER_AREA so the remaining warp is close to one-to-one.
    """
    image = np.ascontiguousarray(rgb)
    width, height = size
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    if scale < _PRESHRINK_BELOW:
        image, matrix = _preshrink(image, matrix, size, scale)
    return cv2.warpAffine(
        image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )


# Below this output/input scale the source region is area-averaged before the bilinear warp.
_PRESHRINK_BELOW = 0.75


def _preshrink(
    image: np.ndarray, matrix: np.ndarray, size: tuple[int, int], scale: float
) -> tuple[np.ndarray, np.ndarray]:
    height, width = image.shape[:2]
    inverse = cv2.invertAffineTransform(matrix)
    corners = np.array([[0, 0], [size[0], 0], [0, size[1]], [size[0], size[1]]], dtype=np.float64)
    source = transform_points(corners, inverse)
    margin = 2.0 / scale
    x0 = int(np.clip(np.floor(source[:, 0].min() - margin), 0, width - 1))
    y0 = int(np.clip(np.floor(source[:, 1].min() - margin), 0, height - 1))
    x1 = int(np.clip(np.ceil(source[:, 0].max() + margin), x0 + 1, width))
    y1 = int(np.clip(np.ceil(source[:, 1].max() + margin), y0 + 1, height))
    region = image[y0:y1, x0:x1]
    new_width = max(1, int(round((x1 - x0) * scale)))
    new_height = max(1, int(round((y1 - y0) * scale)))
    small = cv2.resize(region, (new_width, new_height), interpolation=cv2.INTER_AREA)
    # Pixel centres: source x maps to (x - x0 + 0.5) * fx - 0.5 in the reduced image.
    fx, fy = new_width / (x1 - x0), new_height / (y1 - y0)
    to_small = np.array([[fx, 0.0, (0.5 - x0) * fx - 0.5], [0.0, fy, (0.5 - y0) * fy - 0.5]])
    from_small = cv2.invertAffineTransform(to_small)
    combined = matrix[:, :2] @ from_small[:, :2]
    offset = matrix[:, :2] @ from_small[:, 2] + matrix[:, 2]
    return np.ascontiguousarray(small), np.hstack([combined, offset[:, None]])


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to Nx2 (or the x, y of Nx3) points."""
    xy = np.asarray(points, dtype=np.float64)[:, :2]
    return xy @ matrix[:, :2].T + matrix[:, 2]


def _correspondences(
    landmarks: np.ndarray, template: AlignTemplate, mode: str
) -> tuple[np.ndarray, np.ndarray]:
    if mode == "five_point":
        return template.source_points(landmarks), template.points
    if mode in ("eyes", "mesh"):
        indices = EYE_MESH_INDICES if mode == "eyes" else MESH_MODE_INDICES
        positions = derived_positions(template)
        if positions is None:
            raise ValueError(
                f"no derived mesh positions for template {template.name!r}; mode {mode!r} needs them"
            )
        dst = np.array([positions[index] for index in indices], dtype=np.float64)
        return np.asarray(landmarks, dtype=np.float64)[list(indices), :2], dst
    raise ValueError(f"unknown alignment mode {mode!r}; expected one of {ALIGN_MODES}")


def derived_positions(template: AlignTemplate) -> dict[int, tuple[float, float]] | None:
    """Mean template-space positions of the mesh points the "eyes" and "mesh" modes fit.

    Measured for dlib_150 and arcface_112 (below). A template of the same five points as
    ARCFACE_112 (intel_128, the fusion canvas) gets ArcFace's positions carried over by the
    least-squares similarity between the two five-point sets: exact for a scaled copy of
    ArcFace, and for other proportions the same fit its "five_point" mode makes.
    """
    positions = DERIVED_POSITIONS.get(template.name)
    if positions is not None or template.mesh_indices != ARCFACE_112.mesh_indices:
        return positions
    matrix = estimate_similarity(ARCFACE_112.points, template.points)
    arcface = DERIVED_POSITIONS[ARCFACE_112.name]
    keys = list(arcface)
    moved = transform_points(np.array([arcface[k] for k in keys], dtype=np.float64), matrix)
    return {key: (float(x), float(y)) for key, (x, y) in zip(keys, moved, strict=True)}


# Mean template-space positions of mesh points, written by toolkit/dev/derive_eye_template.py:
# unmasked faces (../shared/data/mask-classification/without_mask and portraits, never LFW)
# meshed, aligned with "five_point" to each template, each point's position averaged.
# Regenerate with `python -m toolkit.dev.derive_eye_template` and paste its output here.
# Derived from 1946 unmasked faces (mask-classification/without_mask + portraits).
# fmt: off
DERIVED_POSITIONS: dict[str, dict[int, tuple[float, float]]] = {
    "dlib_150": {
        1: (73.797, 79.537), 2: (73.959, 82.989), 4: (73.759, 74.904), 5: (73.778, 68.393),
        6: (73.909, 52.022), 7: (37.45, 48.682), 33: (35.498, 47.405), 46: (28.251, 38.613),
        48: (57.167, 76.469), 52: (40.271, 34.513), 53: (33.181, 35.693), 55: (62.645, 39.271),
        63: (30.489, 32.573), 65: (49.879, 35.398), 66: (49.014, 31.649), 70: (25.212, 36.265),
        98: (58.644, 80.425), 105: (38.557, 30.803), 107: (61.066, 33.292), 129: (55.634, 75.213),
        133: (58.522, 49.266), 144: (42.596, 50.211), 145: (46.947, 50.48), 153: (51.07, 50.188),
        154: (54.895, 49.665), 155: (57.356, 49.467), 157: (53.997, 46.095), 158: (49.629, 44.783),
        159: (45.263, 44.491), 160: (40.963, 45.052), 161: (38.258, 46.013), 163: (39.586, 49.528),
        168: (73.925, 45.789), 173: (57.063, 48.013), 195: (73.833, 62.837), 197: (73.877, 57.651),
        246: (36.69, 46.776), 249: (110.614, 48.576), 263: (112.636, 47.294), 276: (119.72, 38.312),
        278: (90.96, 76.216), 282: (107.259, 34.296), 283: (114.481, 35.44), 285: (84.952, 39.16),
        293: (117.271, 32.27), 295: (97.663, 35.201), 296: (98.424, 31.464), 300: (122.939, 35.936),
        327: (89.605, 80.233), 334: (108.964, 30.552), 336: (86.366, 33.187), 358: (92.677, 74.952),
        362: (89.463, 49.288), 373: (105.421, 50.128), 374: (101.099, 50.429), 380: (97.001, 50.172),
        381: (93.142, 49.671), 382: (90.652, 49.509), 384: (94.04, 46.099), 385: (98.376, 44.772),
        386: (102.745, 44.482), 387: (107.057, 45.008), 388: (109.765, 45.935), 390: (108.43, 49.425),
        398: (90.922, 48.033), 466: (111.377, 46.675),
    },
    "arcface_112": {
        1: (55.781, 76.864), 2: (55.882, 79.45), 4: (55.763, 73.505), 5: (55.784, 68.832),
        6: (55.881, 57.163), 7: (29.534, 54.891), 33: (28.118, 53.988), 46: (22.879, 47.587),
        48: (43.662, 74.789), 52: (31.71, 44.54), 53: (26.521, 45.424), 55: (47.76, 47.945),
        63: (24.543, 43.195), 65: (38.624, 45.153), 66: (38.002, 42.442), 70: (20.645, 45.934),
        98: (44.783, 77.699), 105: (30.463, 41.87), 107: (46.623, 43.62), 129: (42.638, 73.972),
        133: (44.761, 55.29), 144: (33.25, 55.99), 145: (36.397, 56.192), 153: (39.376, 55.99),
        154: (42.143, 55.603), 155: (43.924, 55.445), 157: (41.485, 53.019), 158: (38.327, 52.082),
        159: (35.186, 51.871), 160: (32.081, 52.272), 161: (30.125, 52.964), 163: (31.077, 55.492),
        168: (55.89, 52.665), 173: (43.707, 54.387), 195: (55.827, 64.869), 197: (55.86, 61.175),
        246: (28.989, 53.52), 249: (82.339, 54.921), 263: (83.805, 54.015), 276: (88.946, 47.5),
        278: (68.264, 74.638), 282: (79.881, 44.471), 283: (85.16, 45.354), 285: (63.83, 47.896),
        293: (87.205, 43.097), 295: (72.94, 45.077), 296: (73.489, 42.376), 300: (91.301, 45.838),
        327: (67.212, 77.581), 334: (81.133, 41.78), 336: (64.853, 43.581), 358: (69.405, 73.82),
        362: (67.081, 55.345), 373: (78.592, 56.023), 374: (75.479, 56.232), 380: (72.522, 56.037),
        381: (69.735, 55.655), 382: (67.937, 55.517), 384: (70.4, 53.083), 385: (73.538, 52.146),
        386: (76.683, 51.943), 387: (79.788, 52.324), 388: (81.73, 53.001), 390: (80.759, 55.524),
        398: (68.138, 54.454), 466: (82.891, 53.549),
    },
}
# fmt: on
