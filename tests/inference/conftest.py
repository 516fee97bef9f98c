"""Fixtures for the pipeline stages: real photos from the shared data and one detector per session."""

from pathlib import Path

import pytest

from inference.decode import load_image
from inference.detect import FaceDetector, get_face_detector


@pytest.fixture(scope="session")
def detector() -> FaceDetector:
    return get_face_detector()


@pytest.fixture(scope="session")
def mask_data_dir(shared_data: Path) -> Path:
    return shared_data / "mask-classification"


@pytest.fixture(scope="session")
def lfw_image(lfw_dir: Path):
    def read(name: str, number: int):
        return load_image(lfw_dir / name / f"{name}_{number:04d}.jpg")

    return read
