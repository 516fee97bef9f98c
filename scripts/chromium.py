"""Where the browser tests find Chromium, and `make test`'s installation of Debian's package.

The browser tests drive a system Chromium through Playwright (no browser download): the one named
by FACEID_CHROMIUM or PLAYWRIGHT_CHROMIUM_EXECUTABLE, else `chromium` on PATH.

    python scripts/chromium.py             # print its path, or fail with one line saying what to run
    python scripts/chromium.py --install   # as root with apt: install Debian's chromium when missing
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys

PACKAGES = ("chromium", "chromium-driver", "fonts-liberation")
INSTALL_COMMAND = f"sudo apt-get install -y --no-install-recommends {' '.join(PACKAGES)}"
VARIABLES = ("FACEID_CHROMIUM", "PLAYWRIGHT_CHROMIUM_EXECUTABLE")


class ChromiumMissing(Exception):
    """No usable Chromium; the message says what to run."""


def find_chromium(environ: dict[str, str] | None = None) -> str:
    """The Chromium executable the browser tests use; ChromiumMissing says how to get one."""
    environ = os.environ if environ is None else environ
    for variable in VARIABLES:
        path = environ.get(variable)
        if path:
            if os.access(path, os.X_OK):
                return path
            raise ChromiumMissing(f"{variable}={path} is not an executable: point it at a Chromium")
    path = shutil.which("chromium", path=environ.get("PATH"))
    if path is None:
        raise ChromiumMissing(f"Chromium not found for the browser tests: run `{INSTALL_COMMAND}`")
    return path


def can_install() -> bool:
    return os.geteuid() == 0 and shutil.which("apt-get") is not None


def install() -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    print(f"[chromium] installing Debian's {', '.join(PACKAGES)} for the browser tests", flush=True)
    subprocess.run(["apt-get", "update", "-q"], env=env, check=True)
    subprocess.run(
        ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES], env=env, check=True
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--install", action="store_true", help="install Debian's chromium when missing")
    args = parser.parse_args(argv)
    try:
        path = find_chromium()
    except ChromiumMissing as missing:
        named = any(os.environ.get(variable) for variable in VARIABLES)
        if not (args.install and not named and can_install()):
            print(missing, file=sys.stderr)
            return 1
        try:
            install()
            path = find_chromium()
        except subprocess.CalledProcessError as exc:
            print(f"{exc}: run `{INSTALL_COMMAND}`", file=sys.stderr)
            return 1
        except ChromiumMissing as still_missing:
            print(f"still missing after apt-get: {still_missing}", file=sys.stderr)
            return 1
    if not args.install:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
