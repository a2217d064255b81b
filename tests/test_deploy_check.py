import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _example_env() -> dict:
    env = {}
    for line in (ROOT / "platform/quorum.env.example").read_text().splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = value
    return env


def test_deploy_check_is_clean_with_the_example_production_env(tmp_path):
    # Only the example's settings: nothing inherited from the test run (DEBUG, async flags, ...).
    inherited = {k: v for k, v in os.environ.items() if not k.startswith(("QUORUM_", "DJANGO_", "DATABASE_", "CELERY_"))}
    env = {**inherited, **_example_env()}
    env["QUORUM_SECRET_KEY"] = "x7Gk2pQ9vL4mN8rT1wZ5yB3cF6hJ0dS2aE9uI4oP7lK1qW3eR5tY"
    env["QUORUM_DATA_DIR"] = str(tmp_path)
    env.pop("DATABASE_URL")  # the check needs no database connection
    env.pop("CELERY_BROKER_URL")
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_package_named_platform_shadows_the_standard_library():
    import platform

    assert not (ROOT / "platform" / "__init__.py").exists()
    assert platform.python_version().startswith("3.11")
