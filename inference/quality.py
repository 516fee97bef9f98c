"""Is a detected face good enough to enroll or verify? Measurements, thresholds and reasons.

Every threshold lives in `QualityThresholds`. The defaults were set on the unmasked and masked
photos of ../shared/data/mask-classification and the portraits (never LFW):
- sharpness, the variance of the Laplacian over the eye band of the face aligned to a 150 px
  chip: medians 144 on those photos, 30 after a Gaussian blur of 1.5 chip pixels, 9 after 3;
  the 2nd percentile of the untouched photos is about 20;
- eye openness (lid gap over eye width): 0.30 median, under 0.08 on the closed eyes there;
- pose: 95% of those faces are within 30 degrees of yaw and 20 of pitch.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from inference.align import DLIB_150, align_face
from inference.detect import DetectedFace

REASONS = ("face_too_small", "too_blurred", "pose_too_far", "eyes_not_visible")


@dataclass(frozen=True)
class QualityThresholds:
    min_face_px: float = 48.0  # larger side of the mesh box (brow-top to chin), input pixels
    min_sharpness: float = 20.0  # variance of the Laplacian, see the module docstring
    max_yaw: float = 40.0  # degrees
    max_pitch: float = 30.0
    max_roll: float = 45.0
    min_eye_openness: float = 0.09  # mean of both eyes' lid gap over eye width


DEFAULT_THRESHOLDS = QualityThresholds()


@dataclass
class QualityReport:
    face_px: float
    sharpness: float
    yaw: float
    pitch: float
    roll: float
    eyes_visible: bool
    score: float  # 0..1, higher is better; for ranking several photos, not for the decision
    reasons: list[str] = field(default_factory=list)
    eye_openness: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.reasons

    def as_dict(self) -> dict[str, object]:
        return {
            "face_px": round(self.face_px, 1),
            "sharpness": round(self.sharpness, 1),
            "yaw": round(self.yaw, 1),
            "pitch": round(self.pitch, 1),
            "roll": round(self.roll, 1),
            "eyes_visible": self.eyes_visible,
            "eye_openness": round(self.eye_openness, 3),
            "score": round(self.score, 3),
            "reasons": list(self.reasons),
            "ok": self.ok,
        }


def assess_quality(
    rgb: np.ndarray, face: DetectedFace, thresholds: QualityThresholds = DEFAULT_THRESHOLDS
) -> QualityReport:
    face_px = face.size
    sharp = sharpness(rgb, face)
    yaw, pitch, roll = head_pose(face.landmarks)
    openness = eye_openness(face.landmarks)
    height, width = rgb.shape[:2]
    eyes_in_frame = _eyes_inside(face.landmarks, width, height)
    eyes_visible = eyes_in_frame and openness >= thresholds.min_eye_openness

    reasons = []
    if face_px < thresholds.min_face_px:
        reasons.append("face_too_small")
    if sharp < thresholds.min_sharpness:
        reasons.append("too_blurred")
    if abs(yaw) > thresholds.max_yaw or abs(pitch) > thresholds.max_pitch or abs(roll) > thresholds.max_roll:
        reasons.append("pose_too_far")
    if not eyes_visible:
        reasons.append("eyes_not_visible")

    # Each factor is 1 at twice its threshold (or frontal) and 0.5 at the threshold itself, so a
    # photo that fails a check never outscores one that passes it on that check alone.
    factors = [
        _ramp(face_px / thresholds.min_face_px),
        _ramp(sharp / thresholds.min_sharpness),
        _ramp(2.0 - abs(yaw) / thresholds.max_yaw),
        _ramp(2.0 - abs(pitch) / thresholds.max_pitch),
        _ramp(2.0 - abs(roll) / thresholds.max_roll),
        _ramp(openness / thresholds.min_eye_openness) if eyes_in_frame else 0.0,
    ]
    return QualityReport(
        face_px=float(face_px),
        sharpness=float(sharp),
        yaw=float(yaw),
        pitch=float(pitch),
        roll=float(roll),
        eyes_visible=bool(eyes_visible),
        score=float(np.prod(factors)),
        reasons=reasons,
        eye_openness=float(openness),
    )


def sharpness(rgb: np.ndarray, face: DetectedFace) -> float:
    """Variance of the Laplacian over the eyes and brows, the face aligned to a 150 px chip first.

    The chip fixes the scale (a large face is not rewarded for its pixel count, a small one is
    judged as the embedder will see it); the eye band is what a mask leaves, so masked and
    unmasked faces are measured alike.
    """
    chip = align_face(rgb, face, DLIB_150, mode="eyes")
    grey = cv2.cvtColor(chip, cv2.COLOR_RGB2GRAY)[_EYE_BAND]
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def head_pose(landmarks: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees from the mesh's 3-D points; 0 is a frontal face.

    Axes: across the eye corners (33 -> 263) and up the face (chin 152 -> forehead 10), made
    orthogonal. Yaw is positive when the face turns towards the image's right, pitch positive
    when it looks up, roll positive when the eye line rises towards the image's right.
    """
    points = np.asarray(landmarks, dtype=np.float64)
    across = points[263] - points[33]
    up = points[10] - points[152]
    x_axis = across / np.linalg.norm(across)
    y_axis = up - (up @ x_axis) * x_axis
    y_axis /= np.linalg.norm(y_axis)
    yaw = np.degrees(np.arcsin(np.clip(x_axis[2], -1.0, 1.0)))
    # The forehead sits behind the chin on a frontal mesh: measured on the unmasked photos above,
    # the chin-forehead line leans back 8.7 degrees (median) when the face looks straight ahead.
    pitch = np.degrees(np.arcsin(np.clip(y_axis[2], -1.0, 1.0))) + _PITCH_AT_REST
    roll = np.degrees(np.arctan2(-x_axis[1], x_axis[0]))
    return float(yaw), float(pitch), float(roll)


def eye_openness(landmarks: np.ndarray) -> float:
    """Mean over both eyes of the lid gap divided by the eye's width (about 0.3 open, under 0.08 shut)."""
    points = np.asarray(landmarks, dtype=np.float64)[:, :2]
    ratios = []
    for upper, lower, outer, inner in ((159, 145, 33, 133), (386, 374, 263, 362)):
        width = np.linalg.norm(points[outer] - points[inner])
        ratios.append(np.linalg.norm(points[upper] - points[lower]) / width if width > 0 else 0.0)
    return float(np.mean(ratios))


_PITCH_AT_REST = 8.7
# Rows and columns of the 150 px dlib chip that hold brows, eyes and the top of the nose.
_EYE_BAND = (slice(20, 95), slice(15, 135))
_EYE_POINTS = (33, 133, 159, 145, 263, 362, 386, 374)


def _eyes_inside(landmarks: np.ndarray, width: int, height: int) -> bool:
    points = np.asarray(landmarks)[list(_EYE_POINTS), :2]
    return bool(((points >= 0) & (points < np.array([width, height]))).all())


def _ramp(value: float) -> float:
    """0 at 0, 0.5 at 1, 1 from 2 on."""
    return float(np.clip(value / 2.0, 0.0, 1.0))
