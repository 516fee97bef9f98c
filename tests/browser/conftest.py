"""Playwright (Python) driving Debian's chromium against a live Django server on 127.0.0.1.

Chromium's fake camera plays a YUV4MPEG2 file that the test writes from a real portrait, so the
console's getUserMedia code runs for real. 127.0.0.1 is a secure context: navigator.mediaDevices
exists there over plain http. The live server's pipeline calls go to the real Celery worker
(`pipeline_worker`, tests/plugins/celery_worker.py). Which Chromium: scripts/chromium.py
(FACEID_CHROMIUM, PLAYWRIGHT_CHROMIUM_EXECUTABLE, else `chromium` on PATH).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from scripts.chromium import ChromiumMissing, find_chromium

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "browser"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
]


def write_y4m(path: Path, rgb: np.ndarray, *, seconds: float = 3.0, fps: int = 15) -> Path:
    """A YUV4MPEG2 4:2:0 (C420jpeg) video of one still frame, as Chromium's fake camera reads it."""
    import cv2

    height, width = rgb.shape[:2]
    assert width % 2 == 0 and height % 2 == 0
    i420 = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2YUV_I420).tobytes()
    with open(path, "wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
        for _ in range(int(seconds * fps)):
            out.write(b"FRAME\n")
            out.write(i420)
    return path


def camera_frame(portrait: Path, width: int = 640, height: int = 480) -> np.ndarray:
    """The portrait fitted into a 640x480 camera picture on a neutral background."""
    image = Image.open(portrait).convert("RGB")
    image.thumbnail((width, height))
    frame = Image.new("RGB", (width, height), (128, 128, 120))
    frame.paste(image, ((width - image.width) // 2, (height - image.height) // 2))
    return np.asarray(frame)


@pytest.fixture(scope="session", autouse=True)
def _browser_environment() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        # The live server must be http://127.0.0.1:<port> (a secure context for getUserMedia). An
        # autouse session fixture runs before the session's live_server starts.
        if not os.environ.get("DJANGO_LIVE_TEST_SERVER_ADDRESS"):
            patch.setenv("DJANGO_LIVE_TEST_SERVER_ADDRESS", "127.0.0.1")
        # Playwright's sync API runs an event loop in this thread; the ORM calls of the test are
        # still plain synchronous code.
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        yield


@pytest.fixture(autouse=True)
def _rate_limits(generous_rate_limits) -> None:
    pass


@pytest.fixture(scope="session")
def chromium_path() -> str:
    try:
        return find_chromium()
    except ChromiumMissing as missing:
        pytest.fail(str(missing))


@pytest.fixture(scope="session")
def artifacts() -> Path:
    shutil.rmtree(ARTIFACTS, ignore_errors=True)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def playwright_instance():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        yield playwright


@pytest.fixture
def launch(playwright_instance, chromium_path, tmp_path, portraits_dir):
    """launch(portrait_name or None) -> a browser whose fake camera shows that portrait."""
    browsers = []

    def _launch(portrait: str | None = None):
        args = list(CHROMIUM_ARGS)
        if portrait is not None:
            video = write_y4m(tmp_path / f"{Path(portrait).stem}.y4m", camera_frame(portraits_dir / portrait))
            args.append(f"--use-file-for-fake-video-capture={video}")
        browser = playwright_instance.chromium.launch(executable_path=chromium_path, args=args, headless=True)
        browsers.append(browser)
        return browser

    yield _launch
    for browser in browsers:
        browser.close()


@pytest.fixture
def console_settings(settings):
    # The live server speaks plain http on 127.0.0.1: cookies cannot be Secure-only there.
    settings.SESSION_COOKIE_SECURE = False
    settings.CSRF_COOKIE_SECURE = False
    settings.SECURE_SSL_REDIRECT = False
    return settings
