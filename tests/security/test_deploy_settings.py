"""The deployment's settings, each read in a fresh process from an environment built here (settings
are read once per process): `check --deploy` is clean with compose's settings, X-Forwarded-Proto is
believed only behind a trusted proxy, HSTS is on with HTTPS, the inference worker needs no
SECRET_KEY, biometric data has short lifetimes, beat has its schedule, and the dependency audit
says plainly when it could not run."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]

# What docker/compose.yaml gives the web service (x-app-env), with real-looking secrets.
COMPOSE_WEB_ENV = {
    "DEBUG": "false",
    "SECRET_KEY": secrets.token_urlsafe(50),
    "ALLOWED_HOSTS": "faceid.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://faceid.example.com",
    "HTTPS": "true",
    "TRUSTED_PROXY": "true",
    "MEDIA_ROOT": "/tmp/faceid-media",
    "FACEID_JOB_TTL_SECONDS": "3600",
    "CELERY_RESULT_EXPIRES": "600",
}


def _base_env(**overrides: str) -> dict[str, str]:
    """Only what a process needs to run plus the stores' URLs: no variable of ours leaks in."""
    keep = ("PATH", "HOME", "LANG", "DATABASE_URL", "REDIS_URL", "CACHE_KEY_PREFIX")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    return {**env, "DJANGO_SETTINGS_MODULE": "config.settings", **overrides}


def _python(code: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )


def _settings(names: list[str], **env: str) -> dict:
    code = (
        "import json, django; django.setup(); from django.conf import settings as s; "
        f"print(json.dumps({{n: getattr(s, n) for n in {names!r}}}, default=str))"
    )
    result = _python(code, _base_env(**env))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_check_deploy_is_clean_with_the_compose_settings():
    # The .env file of a checkout must not change what is checked: compose's environment only.
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env=_base_env(**COMPOSE_WEB_ENV),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout, result.stdout + result.stderr


def test_forwarded_proto_is_believed_only_behind_a_trusted_proxy():
    names = ["SECURE_PROXY_SSL_HEADER", "SECURE_SSL_REDIRECT"]
    untrusted = _settings(names, SECRET_KEY="x", HTTPS="true")
    assert untrusted == {"SECURE_PROXY_SSL_HEADER": None, "SECURE_SSL_REDIRECT": False}
    trusted = _settings(names, SECRET_KEY="x", HTTPS="true", TRUSTED_PROXY="true")
    assert trusted == {
        "SECURE_PROXY_SSL_HEADER": ["HTTP_X_FORWARDED_PROTO", "https"],
        "SECURE_SSL_REDIRECT": True,
    }


def test_hsts_for_a_year_with_https_and_none_without():
    names = ["SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS"]
    assert _settings(names, SECRET_KEY="x", HTTPS="true") == {
        "SECURE_HSTS_SECONDS": 365 * 24 * 3600,
        "SECURE_HSTS_INCLUDE_SUBDOMAINS": True,
    }
    assert _settings(names, DEBUG="true")["SECURE_HSTS_SECONDS"] == 0


def test_the_inference_worker_role_needs_no_secret_key():
    worker = _settings(["SECRET_KEY", "FACEID_ROLE"], FACEID_ROLE="worker")
    assert worker["FACEID_ROLE"] == "worker" and len(worker["SECRET_KEY"]) >= 50
    other = _settings(["SECRET_KEY"], FACEID_ROLE="worker")
    assert other["SECRET_KEY"] != worker["SECRET_KEY"]  # per process: nothing to steal or share
    web = _python("import django; django.setup()", _base_env())
    assert web.returncode != 0 and "SECRET_KEY must be set" in web.stderr


def test_biometric_data_has_short_lifetimes_by_default():
    lifetimes = _settings(["FACEID_JOB_TTL_SECONDS", "CELERY_RESULT_EXPIRES"], SECRET_KEY="x")
    assert lifetimes["FACEID_JOB_TTL_SECONDS"] <= 3600
    assert lifetimes["CELERY_RESULT_EXPIRES"] <= 600


def test_beat_schedules_the_purge_and_the_audit_heads_once_they_exist():
    schedule = _settings(["CELERY_BEAT_SCHEDULE", "CELERY_IMPORTS"], SECRET_KEY="x")
    tasks = {entry["task"] for entry in schedule["CELERY_BEAT_SCHEDULE"].values()}
    assert "faceid.jobs.purge_expired_images" in tasks
    heads = (REPO_ROOT / "faceid" / "audit_heads.py").exists()
    assert ("faceid.audit_heads.publish_heads" in tasks) == heads
    assert ("faceid.audit_heads" in schedule["CELERY_IMPORTS"]) == heads


def test_the_scheduled_tasks_are_registered():
    from django.conf import settings

    from config import celery_app

    celery_app.loader.import_default_modules()
    for entry in settings.CELERY_BEAT_SCHEDULE.values():
        assert entry["task"] in celery_app.tasks, entry


def test_make_run_starts_celery_beat():
    source = (REPO_ROOT / "scripts" / "run_local.py").read_text()
    assert '"celery beat"' in source and '"config", "beat"' in source


@pytest.mark.parametrize("url", ["http://127.0.0.1:9/v1/query"])
def test_the_dependency_audit_says_plainly_when_it_cannot_reach_its_service(url):
    result = subprocess.run(
        [sys.executable, "scripts/audit_dependencies.py", "--osv-url", url, "--timeout", "3"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 3, result.stdout + result.stderr
    assert "NOT AUDITED" in result.stdout and "cannot be reached" in result.stdout
    assert "redis-server 6.2.14" in result.stdout  # the documented exception is stated every run


def test_pip_audit_is_pinned_for_development():
    pins = (REPO_ROOT / "requirements" / "dev.txt").read_text().splitlines()
    assert any(line.startswith("pip-audit==") for line in pins)
