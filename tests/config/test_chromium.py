"""How `make test` and the browser tests find Chromium (scripts/chromium.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from scripts.chromium import INSTALL_COMMAND, ChromiumMissing, find_chromium

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fake_chromium(tmp_path: Path) -> Path:
    path = tmp_path / "bin" / "chromium"
    path.parent.mkdir()
    path.write_text("#!/bin/sh\n")
    path.chmod(0o755)
    return path


def test_a_named_chromium_wins_over_the_one_on_path(fake_chromium: Path, tmp_path: Path):
    other = tmp_path / "other-chromium"
    other.write_text("#!/bin/sh\n")
    other.chmod(0o755)
    path = str(fake_chromium.parent)
    assert find_chromium({"PATH": path}) == str(fake_chromium)
    assert find_chromium({"PATH": path, "PLAYWRIGHT_CHROMIUM_EXECUTABLE": str(other)}) == str(other)
    assert find_chromium(
        {"PATH": path, "FACEID_CHROMIUM": str(other), "PLAYWRIGHT_CHROMIUM_EXECUTABLE": "x"}
    ) == str(other)


def test_a_named_chromium_that_is_not_there_is_an_error(fake_chromium: Path):
    with pytest.raises(ChromiumMissing, match="FACEID_CHROMIUM=/nowhere/chromium"):
        find_chromium({"PATH": str(fake_chromium.parent), "FACEID_CHROMIUM": "/nowhere/chromium"})


def test_without_chromium_the_check_names_the_command_to_run(tmp_path: Path):
    env = {"PATH": str(tmp_path), "HOME": str(tmp_path)}
    # As a user who may not install packages (or with --install not asked), one line, exit 1.
    done = subprocess.run(
        [sys.executable, "scripts/chromium.py"], cwd=REPO_ROOT, env=env, capture_output=True, text=True
    )
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [
        f"Chromium not found for the browser tests: run `{INSTALL_COMMAND}`"
    ]
    assert INSTALL_COMMAND.endswith("chromium chromium-driver fonts-liberation")
