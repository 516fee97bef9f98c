"""Procedural synthetic face masks drawn from the Face Mesh, used at enrollment.

An unmasked enrollment photo also yields templates of the same face wearing a mask, so a
masked probe is compared with something that looks like it. The mask is a polygon from the
nose bridge over the cheeks to below the chin, taken from the mesh, with varied shape
(how high it sits on the nose, how far past the jaw), colour, texture (pleats, weave,
seams) and shading (the photo's own light, a curved surface, darker edges), composited
with anti-aliased edges. Nothing is read from disk: the product never ships mask images.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from inference.detect import DetectedFace

# Mesh indices (MediaPipe Face Mesh, 468/478 points). "Right"/"left" are the subject's:
# the subject's right side is on the image's left in a frontal photo.
NOSE_BRIDGE = (6, 197, 195)  # from between the eyes down to mid-nose: where the top edge meets the nose
NOSE_TIP = 4
CHIN = 152
# The top edge runs from the ear over the cheekbone to the nose. Two rows of the mesh bound it:
# one just below the lower eyelid (a snug N95) and one across the upper cheek (a mask worn low).
TOP_HIGH_RIGHT = (234, 227, 116, 117, 118, 119, 120, 121)
TOP_LOW_RIGHT = (93, 137, 123, 50, 101, 100, 47, 114)
TOP_HIGH_LEFT = (454, 447, 345, 346, 347, 348, 349, 350)
TOP_LOW_LEFT = (323, 366, 352, 280, 330, 329, 277, 343)
# The face oval below the ear, from the side of the face to the chin.
JAW_RIGHT = (132, 58, 172, 136, 150, 149, 176, 148)
JAW_LEFT = (361, 288, 397, 365, 379, 378, 400, 377)

KINDS = ("surgical", "cloth", "n95")

# Colours of real masks; a random style also mixes in a random tint so the set is not closed.
PALETTES: dict[str, tuple[tuple[int, int, int], ...]] = {
    "surgical": (
        (150, 195, 220),
        (120, 175, 210),
        (225, 230, 232),
        (160, 205, 185),
        (230, 185, 195),
        (40, 42, 48),
    ),
    "cloth": (
        (30, 30, 34),
        (70, 72, 78),
        (35, 45, 80),
        (200, 190, 170),
        (150, 40, 45),
        (90, 110, 80),
        (235, 235, 235),
    ),
    "n95": ((235, 235, 228), (215, 215, 210), (60, 62, 66), (170, 175, 180)),
}


@dataclass(frozen=True)
class MaskStyle:
    """How one synthetic mask looks; `MaskStyle.random(rng)` draws a plausible one."""

    kind: str = "surgical"
    color: tuple[int, int, int] = (150, 195, 220)
    # 0 = top edge just under the eyes and high on the nose bridge, 1 = low on the cheeks and mid-nose.
    top: float = 0.4
    # How far the lower edge stands out past the jaw and chin, as a fraction of the face size.
    spread: float = 0.04
    pleats: int = 3
    texture: float = 0.04  # amplitude of the weave / grain noise, in relative brightness
    pattern_color: tuple[int, int, int] | None = None  # cloth masks: a second colour in stripes or dots
    pattern: str = "none"  # "none" | "stripes" | "dots"
    light_angle: float = 0.0  # direction of a soft light gradient across the mask, radians
    light_strength: float = 0.12
    curvature: float = 0.2  # darkening towards the sides of a curved surface
    edge_darkening: float = 0.25
    scene_light: float = 0.5  # how much the photo's own lighting shows through (0..1)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown mask kind {self.kind!r}; expected one of {KINDS}")

    @classmethod
    def random(cls, rng: np.random.Generator) -> MaskStyle:
        kind = KINDS[int(rng.choice(len(KINDS), p=(0.45, 0.35, 0.2)))]
        palette = PALETTES[kind]
        base = np.array(palette[int(rng.integers(len(palette)))], dtype=np.float64)
        # A random tint keeps the colours from being a closed list.
        color = np.clip(base + rng.normal(0.0, 12.0, 3), 0, 255)
        pattern = "none"
        pattern_color = None
        if kind == "cloth" and rng.random() < 0.4:
            pattern = "stripes" if rng.random() < 0.5 else "dots"
            pattern_color = tuple(int(c) for c in rng.integers(0, 256, 3))
        return cls(
            kind=kind,
            color=tuple(int(c) for c in color),
            top=float(rng.uniform(0.0, 0.85) if kind != "n95" else rng.uniform(0.0, 0.4)),
            spread=float(rng.uniform(0.01, 0.08)),
            pleats=int(rng.integers(2, 5)) if kind == "surgical" else 0,
            texture=float(rng.uniform(0.02, 0.06) if kind != "cloth" else rng.uniform(0.04, 0.1)),
            pattern_color=pattern_color,
            pattern=pattern,
            light_angle=float(rng.uniform(0.0, 2.0 * np.pi)),
            light_strength=float(rng.uniform(0.0, 0.25)),
            curvature=float(rng.uniform(0.1, 0.35)),
            edge_darkening=float(rng.uniform(0.1, 0.4)),
            scene_light=float(rng.uniform(0.3, 0.8)),
        )


DEFAULT_STYLE = MaskStyle()


def mask_polygon(face: DetectedFace, style: MaskStyle | None = None) -> np.ndarray:
    """The mask outline in image pixels, (K, 2) float32, clockwise from the subject's right ear.

    It passes over the nose bridge, across both cheeks and around the jaw below the chin.
    """
    style = style or DEFAULT_STYLE
    points = np.asarray(face.landmarks, dtype=np.float64)[:, :2]
    t = float(np.clip(style.top, 0.0, 1.0))

    top_right = (1 - t) * points[list(TOP_HIGH_RIGHT)] + t * points[list(TOP_LOW_RIGHT)]
    top_left = (1 - t) * points[list(TOP_HIGH_LEFT)] + t * points[list(TOP_LOW_LEFT)]
    bridge = _along(points[list(NOSE_BRIDGE)], t)

    # The lower outline sits a little outside the jaw: a mask stands off the face.
    centre = points[NOSE_TIP]
    size = _face_size(points)
    jaw = np.concatenate([points[list(JAW_LEFT)], points[[CHIN]], points[list(JAW_RIGHT)][::-1]])
    jaw = _push_out(jaw, centre, style.spread * size)
    # Under the chin the fabric hangs lower still, along the face's own down direction.
    down = points[CHIN] - bridge
    down /= max(float(np.linalg.norm(down)), 1e-6)
    jaw += down * (style.spread * size * _chin_weight(len(jaw)))[:, None]

    outline = np.concatenate([top_right, bridge[None], top_left[::-1], jaw])
    return _smooth_closed(outline, iterations=2).astype(np.float32)


def render_synthetic_mask(
    rgb: np.ndarray,
    face: DetectedFace,
    *,
    rng: np.random.Generator | None = None,
    style: MaskStyle | None = None,
) -> np.ndarray:
    """A copy of `rgb` with a synthetic mask drawn on `face`.

    Deterministic: without `rng` a fixed seed is used, so an enrollment photo always yields the
    same masked template; without `style` one is drawn from `rng`.
    """
    image = np.asarray(rgb)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an HxWx3 uint8 RGB array, got {image.dtype} {image.shape}")
    rng = rng if rng is not None else np.random.default_rng(0)
    style = style or MaskStyle.random(rng)

    polygon = mask_polygon(face, style)
    height, width = image.shape[:2]
    x0 = max(0, int(np.floor(polygon[:, 0].min())) - 2)
    y0 = max(0, int(np.floor(polygon[:, 1].min())) - 2)
    x1 = min(width, int(np.ceil(polygon[:, 0].max())) + 3)
    y1 = min(height, int(np.ceil(polygon[:, 1].max())) + 3)
    out = image.copy()
    if x1 <= x0 or y1 <= y0:
        return out

    local = polygon - np.array([x0, y0], dtype=np.float32)
    alpha = _coverage(local, (y1 - y0, x1 - x0))
    if not alpha.any():
        return out

    points = np.asarray(face.landmarks, dtype=np.float64)[:, :2] - np.array([x0, y0])
    u, v = _mask_coordinates(points, style, (y1 - y0, x1 - x0))
    size = _face_size(points)
    region = image[y0:y1, x0:x1].astype(np.float32)

    color = _texture(style, u, v, size, rng)
    shade = _shading(style, u, v, alpha, region, size)
    mask_rgb = np.clip(color * shade[..., None], 0.0, 255.0)

    a = alpha[..., None]
    out[y0:y1, x0:x1] = np.clip(region * (1.0 - a) + mask_rgb * a + 0.5, 0, 255).astype(np.uint8)
    return out


def _along(chain: np.ndarray, t: float) -> np.ndarray:
    """The point at fraction t of the polyline's length."""
    seg = np.linalg.norm(np.diff(chain, axis=0), axis=1)
    total = float(seg.sum())
    if total <= 0:
        return chain[0].copy()
    target = t * total
    for index, length in enumerate(seg):
        if target <= length or index == len(seg) - 1:
            f = 0.0 if length <= 0 else min(1.0, target / length)
            return chain[index] + f * (chain[index + 1] - chain[index])
        target -= length
    return chain[-1].copy()


def _face_size(points: np.ndarray) -> float:
    # Inter-ear distance and brow-to-chin height: robust to yaw and to roll.
    width = float(np.linalg.norm(points[454] - points[234]))
    height = float(np.linalg.norm(points[152] - points[10]))
    return max(width, height, 1.0)


def _push_out(chain: np.ndarray, centre: np.ndarray, distance: float) -> np.ndarray:
    direction = chain - centre
    norm = np.linalg.norm(direction, axis=1, keepdims=True)
    return chain + direction / np.maximum(norm, 1e-6) * distance


def _chin_weight(count: int) -> np.ndarray:
    # 0 at the sides of the jaw, 1 under the chin (the middle of the chain).
    x = np.linspace(-1.0, 1.0, count)
    return 0.5 * (1.0 - x**2)


def _smooth_closed(polygon: np.ndarray, iterations: int) -> np.ndarray:
    """Chaikin corner cutting: rounds the mesh's polyline into a fabric-like outline."""
    for _ in range(iterations):
        nxt = np.roll(polygon, -1, axis=0)
        polygon = np.stack([0.75 * polygon + 0.25 * nxt, 0.25 * polygon + 0.75 * nxt], axis=1).reshape(-1, 2)
    return polygon


SUPERSAMPLE_BITS = 3  # cv2.fillPoly's sub-pixel precision: 1/8 px


def _coverage(polygon: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Fraction of each pixel inside the polygon (anti-aliased alpha), float32 in [0, 1]."""
    factor = 4
    height, width = shape
    canvas = np.zeros((height * factor, width * factor), dtype=np.uint8)
    # Pixel centres sit at integer coordinates: shift by half a pixel before supersampling.
    scaled = ((polygon + 0.5) * factor - 0.5) * (1 << SUPERSAMPLE_BITS)
    cv2.fillPoly(
        canvas, [np.round(scaled).astype(np.int32)], 255, lineType=cv2.LINE_8, shift=SUPERSAMPLE_BITS
    )
    return cv2.resize(canvas, (width, height), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def _mask_coordinates(
    points: np.ndarray, style: MaskStyle, shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel fabric coordinates: u across the face (-1 right ear, 1 left ear), v down (0 top, 1 chin)."""
    height, width = shape
    top = _along(points[list(NOSE_BRIDGE)], float(np.clip(style.top, 0.0, 1.0)))
    chin = points[CHIN]
    down = chin - top
    length = max(float(np.linalg.norm(down)), 1.0)
    down /= length
    across = np.array([-down[1], down[0]])  # image-right when the face is upright
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    dx, dy = xs - top[0], ys - top[1]
    v = (dx * down[0] + dy * down[1]) / length
    along = dx * across[0] + dy * across[1]
    # Each half is scaled by its own cheek width so the coordinates follow a turned head.
    right_half = max(abs(float(np.dot(points[234] - top, across))), 1.0)
    left_half = max(abs(float(np.dot(points[454] - top, across))), 1.0)
    u = np.where(along < 0, along / right_half, along / left_half)
    return u.astype(np.float32), v.astype(np.float32)


def _texture(
    style: MaskStyle, u: np.ndarray, v: np.ndarray, size: float, rng: np.random.Generator
) -> np.ndarray:
    height, width = u.shape
    color = np.empty((height, width, 3), dtype=np.float32)
    color[:] = np.array(style.color, dtype=np.float32)

    if style.pattern != "none" and style.pattern_color is not None:
        second = np.array(style.pattern_color, dtype=np.float32)
        period = max(0.08, float(rng.uniform(0.1, 0.25)))
        if style.pattern == "stripes":
            on = (np.floor((u + v * rng.uniform(-0.5, 0.5)) / period) % 2) == 0
        else:
            cu, cv = (u / period) % 1.0 - 0.5, (v / period) % 1.0 - 0.5
            on = cu**2 + cv**2 < 0.09
        color[on] = second

    # Weave / fibre grain: white noise blurred below a pixel, scaled with the face so it reads as fabric.
    sigma = max(0.5, size / 300.0)
    noise = cv2.GaussianBlur(rng.standard_normal((height, width)).astype(np.float32), (0, 0), sigma)
    noise /= max(float(noise.std()), 1e-6)
    color *= (1.0 + style.texture * noise)[..., None]

    if style.kind == "cloth":
        # A woven fabric shows a faint regular cross-hatch.
        freq = 2.0 * np.pi * size / max(3.0, size / 25.0)
        weave = np.sin(u * freq * 0.5) * np.sin(v * freq)
        color *= (1.0 + 0.3 * style.texture * weave)[..., None]
    return color


def _shading(
    style: MaskStyle, u: np.ndarray, v: np.ndarray, alpha: np.ndarray, region: np.ndarray, size: float
) -> np.ndarray:
    shade = np.ones_like(u)
    # A curved surface turns away from the camera towards the ears.
    shade *= 1.0 - style.curvature * np.clip(np.abs(u), 0.0, 1.2) ** 2
    # A soft directional light.
    shade *= (
        1.0
        + style.light_strength * (np.cos(style.light_angle) * u + np.sin(style.light_angle) * (2 * v - 1)) / 2
    )

    if style.kind == "surgical" and style.pleats > 0:
        # Horizontal pleats between the nose wire and the chin: a thin shadow under each fold.
        band = np.clip((v - 0.18) / 0.62, 0.0, 1.0)
        phase = (band * style.pleats) % 1.0
        inside = (v > 0.18) & (v < 0.8)
        fold = np.where(
            inside, np.exp(-(((phase - 0.92) / 0.05) ** 2)) * 0.35 - 0.06 * np.cos(2 * np.pi * phase), 0.0
        )
        shade *= 1.0 - fold
        # The nose wire: a slightly lighter strip along the top edge.
        shade *= 1.0 + 0.06 * np.exp(-((v / 0.05) ** 2))
    elif style.kind == "n95":
        # A moulded cup: a seam down the middle and a highlight on the dome.
        shade *= 1.0 - 0.25 * np.exp(-((u / 0.025) ** 2)) * (v > 0.05)
        shade *= 1.0 + 0.12 * np.exp(-((u**2 + (v - 0.45) ** 2) / 0.08))
    elif style.kind == "cloth":
        shade *= 1.0 - 0.12 * np.exp(-((u / 0.04) ** 2)) * (v > 0.1)  # centre seam

    # Edges fall into shadow where the fabric meets the face.
    inside = (alpha > 0.5).astype(np.uint8)
    if inside.any():
        distance = cv2.distanceTransform(inside, cv2.DIST_L2, 3)
        shade *= 1.0 - style.edge_darkening * np.exp(-distance / max(1.0, size * 0.03))

    # The photo's own light: the low-frequency brightness of the covered skin, relative to its mean.
    gray = region @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    low = cv2.GaussianBlur(gray, (0, 0), max(1.0, size * 0.06))
    weights = alpha > 0.5
    reference = float(np.median(low[weights])) if weights.any() else float(low.mean())
    ratio = np.clip(low / max(reference, 1.0), 0.4, 1.6)
    shade *= ratio**style.scene_light
    # A dark photo darkens the mask overall too (a white mask is not white at night).
    shade *= (max(reference, 8.0) / 150.0) ** (0.5 * style.scene_light)
    return np.clip(shade, 0.05, 1.6).astype(np.float32)
