"""Project configuration: every variable settings read is documented, and tasks reach their queues."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
SETTINGS = REPO_ROOT / "config" / "settings.py"


def environment_variables_read_by_settings() -> set[str]:
    """Names passed to `env(...)`, `env.bool(...)`, `env.int(...)`, ... in config/settings.py."""
    names = set()
    for node in ast.walk(ast.parse(SETTINGS.read_text())):
        if not (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)):
            continue
        function = node.func
        if isinstance(function, ast.Attribute):
            function = function.value
        if isinstance(function, ast.Name) and function.id == "env":
            names.add(node.args[0].value)
    return names


def readme_configuration_table() -> str:
    readme = (REPO_ROOT / "README.md").read_text()
    return readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]


def test_settings_read_the_environment_through_env():
    # A guard for the test below: it finds the variables, so an empty set is a broken parser.
    assert {
        "DATABASE_URL",
        "SECRET_KEY",
        "FACEID_JOB_TTL_SECONDS",
    } <= environment_variables_read_by_settings()


def test_every_environment_variable_settings_read_is_in_the_readme_table():
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", readme_configuration_table()))
    assert sorted(environment_variables_read_by_settings() - documented) == []


def test_worker_tasks_go_to_inference_and_job_tasks_to_default():
    from config import celery_app

    def queue(task_name: str) -> str:
        return celery_app.amqp.router.route({}, task_name)["queue"].name

    assert queue("faceid.worker.tasks.run_pipeline") == "inference"
    assert queue("faceid.worker.tasks.worker_info") == "inference"
    assert queue("faceid.jobs.finish_job") == "default"
    assert queue("faceid.jobs.job_pipeline_failed") == "default"
