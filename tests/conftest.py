"""Fixtures shared by every test package."""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
# Tests read ../shared/data in place; FACEID_SHARED_DATA points elsewhere when the checkout is not beside it.
SHARED_DATA = Path(os.environ.get("FACEID_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")).resolve()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared test data not found at {SHARED_DATA} (set FACEID_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def lfw_dir(shared_data: Path) -> Path:
    return shared_data / "lfw" / "images"


@pytest.fixture(scope="session")
def portraits_dir(shared_data: Path) -> Path:
    return shared_data / "portraits"


@pytest.fixture(autouse=True)
def _plain_static_files(settings) -> None:
    # Without DEBUG the settings pick the manifest storage, which needs `collectstatic` first.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }
