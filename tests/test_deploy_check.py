import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _example_env() -> dict:
    env = {}
    for line in (ROOT / "platform/quorum.env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    return env


def _production_env(tmp_path, **changes) -> dict:
    # Only the example's settings: nothing inherited from the test run (DEBUG, async flags, pytest's own marker, ...).
    inherited = {k: v for k, v in os.environ.items()
                 if not k.startswith(("QUORUM_", "DJANGO_", "DATABASE_", "CELERY_", "PYTEST_"))}  # fmt: skip
    env = {**inherited, **_example_env()}
    env["QUORUM_SECRET_KEY"] = "x7Gk2pQ9vL4mN8rT1wZ5yB3cF6hJ0dS2aE9uI4oP7lK1qW3eR5tY"
    env["QUORUM_DATA_DIR"] = str(tmp_path)
    env.pop("DATABASE_URL")  # the check needs no database connection
    env.pop("CELERY_BROKER_URL")
    env.update(changes)
    return {k: v for k, v in env.items() if v is not None}


def _manage(env, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True)


def test_deploy_check_is_clean_with_the_example_production_env(tmp_path):
    result = _manage(_production_env(tmp_path), "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr


def test_production_without_a_secret_key_refuses_to_start(tmp_path):
    result = _manage(_production_env(tmp_path, QUORUM_SECRET_KEY=None), "check")
    assert result.returncode != 0
    assert "ImproperlyConfigured: QUORUM_SECRET_KEY is not set" in result.stderr, result.stderr
    # An empty value is no key either.
    assert _manage(_production_env(tmp_path, QUORUM_SECRET_KEY=""), "check").returncode != 0


@pytest.mark.parametrize("flag", ["QUORUM_DEV", "QUORUM_DEBUG"])
def test_local_development_runs_on_the_development_key_and_the_deploy_check_flags_it(tmp_path, flag):
    env = _production_env(tmp_path, QUORUM_SECRET_KEY=None, **{flag: "1"})
    assert _manage(env, "check").returncode == 0
    deploy = _manage(env, "check", "--deploy")
    assert deploy.returncode != 0 and "quorum.E001" in deploy.stderr, deploy.stdout + deploy.stderr


def test_the_deploy_check_flags_the_development_key_even_when_given_explicitly(tmp_path):
    from django.conf import settings

    env = _production_env(tmp_path, QUORUM_SECRET_KEY=settings.DEV_SECRET_KEY)
    deploy = _manage(env, "check", "--deploy")
    assert deploy.returncode != 0 and "quorum.E001" in deploy.stderr, deploy.stdout + deploy.stderr


def test_no_package_named_platform_shadows_the_standard_library():
    import platform

    assert not (ROOT / "platform" / "__init__.py").exists()
    assert platform.python_version().startswith("3.11")
