"""The web process never imports torch, transformers or TRL: it shows the Training runs page and validates a run
config against the trainer's own config classes (training.trainers.configs), which are plain Python.

Checked in a fresh interpreter (the test process has long since imported torch), on a throwaway SQLite database,
through the same requests a browser and the API client send.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TRAINING_LIBRARIES = ("torch", "transformers", "trl", "datasets", "accelerate", "peft")

SCRIPT = r"""
import hashlib, json, sys
import django
django.setup()
from django.core.management import call_command
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import get_resolver
from annotation import services
from annotation.models import DatasetSnapshot
from training.models import Model, TrainingMethod

get_resolver().url_patterns  # every view, serializer and service the web process serves
call_command("migrate", verbosity=0)
admin = get_user_model().objects.create_user("admin", password="x")
project = services.project_create(name="P", slug="p", created_by=admin)
Model.objects.create(name="base", backend="transformers", path="/models/base")
data = sys.argv[1]
sha256 = hashlib.sha256(open(data, "rb").read()).hexdigest()
snapshot = DatasetSnapshot.objects.create(project=project, format="sft", path=data, row_count=1, sha256=sha256)
for format in ("preference", "unpaired", "stepwise"):  # rows for the other launch forms (never read)
    DatasetSnapshot.objects.create(project=project, format=format, path=data, row_count=1, sha256=sha256)
client = Client()
client.force_login(admin)
pages = {m: client.get(f"/training/p/p/runs/?method={m}") for m in TrainingMethod.values}
url = "/api/v1/projects/p/training-runs/"
run = {"method": "sft", "base_model": "base", "snapshot": snapshot.pk}
invalid = client.post(url, {**run, "hyperparameters": {"lerning_rate": 0.1, "max_steps": "ten"}}, content_type="application/json")
valid = client.post(url, {**run, "hyperparameters": {"max_steps": 3}}, content_type="application/json")
print(json.dumps({
    "pages": {m: [r.status_code, "learning_rate" in r.content.decode()] for m, r in pages.items()},
    "invalid": [invalid.status_code, invalid.json()],
    "valid": [valid.status_code, valid.json().get("hyperparameters")],
    "loaded": sorted(name for name in sys.modules if name.split(".")[0] in TRAINING_LIBRARIES),
}))
"""


def test_the_training_runs_page_and_run_validation_import_no_training_library(tmp_path):
    data = tmp_path / "sft.jsonl"
    data.write_text(json.dumps({"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}) + "\n")
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "quorum.settings", "QUORUM_DEV": "1",
           "QUORUM_DATA_DIR": str(tmp_path / "var"), "CELERY_BROKER_URL": "memory://"}
    env.pop("DATABASE_URL", None)
    script = f"TRAINING_LIBRARIES = {TRAINING_LIBRARIES!r}\n" + SCRIPT
    result = subprocess.run([sys.executable, "-c", script, str(data)], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["pages"] == {m: [200, True] for m in ("sft", "reward", "dpo", "kto", "orpo", "ppo", "prm")}
    status, body = report["invalid"]
    assert status == 400
    assert "lerning_rate: unknown field; did you mean 'learning_rate'?" in body["detail"]
    assert "max_steps" in body["fields"]
    assert report["valid"] == [201, {"max_steps": 3}]
    assert report["loaded"] == []


def test_the_wsgi_application_imports_every_page_at_boot_and_no_training_library(tmp_path):
    # A fresh server's first request then pays for no import (bench/first_page.py times it).
    script = (
        "import json, sys\nimport quorum.wsgi\n"
        "print(json.dumps({'views': [m for m in ('frontend.views.training', 'training.api.views', 'annotation.api.views') if m in sys.modules],"
        f" 'loaded': sorted(m for m in sys.modules if m.split('.')[0] in {TRAINING_LIBRARIES!r})}}))"
    )
    env = {**os.environ, "QUORUM_DEV": "1", "QUORUM_DATA_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"views": ["frontend.views.training", "training.api.views", "annotation.api.views"], "loaded": []}
