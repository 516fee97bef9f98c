"""Fixtures shared by every test package, and the tier of each test.

A test's tier markers say what it needs, and are set here from the fixtures it uses (its whole
fixture closure), so no test module declares them:

    unit         nothing below: no database, no worker, no browser
    db           the test database (db, transactional_db, live_server, ... or a django_db mark)
    integration  a real Celery worker (celery_worker, so also db)
    browser      Debian's chromium through Playwright (chromium_path, so also db)

`slow` is set by hand on the tests that take seconds each. Select with -m, e.g.
`-m unit`, `-m "not slow"`, `-m "not integration and not browser"`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.plugins.celery_worker import AUDIT_HMAC_KEY_FOR_TESTS

pytest_plugins = ("tests.plugins.celery_worker", "tests.plugins.factories")

REPO_ROOT = Path(__file__).resolve().parent.parent
# Tests read ../shared/data in place; FACEID_SHARED_DATA points elsewhere when the checkout is not beside it.
SHARED_DATA = Path(os.environ.get("FACEID_SHARED_DATA", REPO_ROOT.parent / "shared" / "data")).resolve()

DB_FIXTURES = frozenset(
    {"db", "transactional_db", "django_db_reset_sequences", "django_db_serialized_rollback", "live_server"}
)
WORKER_FIXTURE = "celery_worker"
BROWSER_FIXTURE = "chromium_path"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        uses_db = bool(names & DB_FIXTURES) or item.get_closest_marker("django_db") is not None
        if WORKER_FIXTURE in names:
            item.add_marker(pytest.mark.integration)
            if not uses_db:
                # pytest-django creates the test database only for tests that ask for one: a test using
                # the worker without saying which kind gets committed rows the worker can see.
                item.add_marker(pytest.mark.django_db(transaction=True))
                uses_db = True
        if BROWSER_FIXTURE in names:
            item.add_marker(pytest.mark.browser)
        item.add_marker(pytest.mark.db if uses_db else pytest.mark.unit)


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


@pytest.fixture(scope="session")
def portrait_jpeg(portraits_dir: Path):
    """A portrait as a camera would send it: JPEG (quality 92), at most 800 px on a side."""
    import io

    from PIL import Image

    def read(name: str) -> bytes:
        image = Image.open(portraits_dir / name).convert("RGB")
        image.thumbnail((800, 800))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=92)
        return buffer.getvalue()

    return read


@pytest.fixture(autouse=True)
def _plain_static_files(settings) -> None:
    # Without DEBUG the settings pick the manifest storage, which needs `collectstatic` first.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    }


@pytest.fixture(autouse=True)
def _audit_keys_and_heads(settings, tmp_path_factory) -> None:
    # The audit chain's key, and published heads in a directory of the test's own (never var/).
    settings.AUDIT_HMAC_KEY = AUDIT_HMAC_KEY_FOR_TESTS
    settings.AUDIT_HEAD_DIR = tmp_path_factory.mktemp("audit-heads")


@pytest.fixture
def generous_rate_limits(settings) -> None:
    """Rate limits no test reaches unless it sets its own (the API and browser tests use it)."""
    settings.FACEID_THROTTLE_RATES = {"api": "10000/minute", "pipeline": "10000/minute"}
