"""Fixtures for the pipeline stages: real photos from the shared data and one detector per session.

The pipeline modules (mediapipe, opencv) load when a fixture first needs them, not at collection.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from inference.detect import FaceDetector


@pytest.fixture(scope="session")
def detector() -> FaceDetector:
    from inference.detect import get_face_detector

    return get_face_detector()


@pytest.fixture(scope="session")
def mask_data_dir(shared_data: Path) -> Path:
    return shared_data / "mask-classification"


@pytest.fixture(scope="session")
def lfw_image(lfw_dir: Path):
    from inference.decode import load_image

    def read(name: str, number: int):
        return load_image(lfw_dir / name / f"{name}_{number:04d}.jpg")

    return read
