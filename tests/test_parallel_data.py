"""Parallel test processes (pytest-xdist's workers, named in PYTEST_XDIST_WORKER) each keep their data apart:
test database, embedded broker, cache, snapshots and model files live in a directory of the worker's own."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WORKER = "gw97"  # a worker no run of this suite starts
PATHS = (
    "from django.conf import settings; import json; d = settings.DATABASES['default']; "
    "print(json.dumps({'data': str(settings.DATA_DIR), 'models': str(settings.MODEL_DIR), "
    "'snapshots': str(settings.SNAPSHOT_DIR), 'broker': settings.CELERY_BROKER_URL, "
    "'cache': settings.CACHES['default']['LOCATION'], 'test_db': d['TEST']['NAME']}))"
)


def _settings_paths(**env) -> dict:
    base = {k: v for k, v in os.environ.items() if k not in ("QUORUM_DATA_DIR", "DATABASE_URL", "PYTEST_XDIST_WORKER",
                                                            "CELERY_BROKER_URL", "QUORUM_CACHE_URL")}
    result = subprocess.run([sys.executable, "-c", "import django; django.setup(); " + PATHS], cwd=ROOT,
                            env={**base, "DJANGO_SETTINGS_MODULE": "quorum.settings", **env},
                            capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_each_parallel_worker_gets_a_data_directory_of_its_own():
    own = ROOT / "var" / WORKER
    existed = own.exists()
    try:
        paths = _settings_paths(PYTEST_XDIST_WORKER=WORKER)
    finally:
        if not existed:
            shutil.rmtree(own, ignore_errors=True)
    assert paths["data"] == str(own)
    for key in ("models", "snapshots", "cache", "test_db"):
        assert Path(paths[key]).is_relative_to(own), (key, paths[key])
    assert paths["broker"] == f"sqla+sqlite:///{own / 'broker.sqlite3'}"


def test_a_data_directory_named_in_the_environment_is_used_as_it_is(tmp_path):
    paths = _settings_paths(PYTEST_XDIST_WORKER=WORKER, QUORUM_DATA_DIR=str(tmp_path))
    assert paths["data"] == str(tmp_path)
    assert paths["broker"] == f"sqla+sqlite:///{tmp_path / 'broker.sqlite3'}"


def test_this_run_uses_the_directory_of_its_worker():
    from django.conf import settings

    worker = os.environ.get("PYTEST_XDIST_WORKER")
    if "QUORUM_DATA_DIR" not in os.environ:
        assert Path(settings.DATA_DIR) == ROOT / "var" / (worker or "")
