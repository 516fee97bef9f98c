"""The web process never imports the pipeline's heavy libraries: the web image ships without them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

HEAVY = ("torch", "cv2", "mediapipe")

# Everything the web process loads: Django's apps (with their admin modules), every API and
# console view through the URLconf, the WSGI application and the async jobs' module.
WEB_PROCESS = f"""
import json, sys
import django
django.setup()
import config.urls, config.wsgi, faceid.jobs
print(json.dumps(sorted(name for name in {HEAVY!r} if name in sys.modules)))
"""


def test_the_web_side_loads_without_torch_opencv_or_mediapipe():
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "SECRET_KEY": os.environ.get("SECRET_KEY") or "web-imports-test",
    }
    done = subprocess.run(
        [sys.executable, "-c", WEB_PROCESS],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
