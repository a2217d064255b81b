"""No module of Quorum imports vllm: it is an optional extra for GPU workers, loaded only by its backend."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import importlib, json, os, pkgutil, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quorum.settings")
os.environ["HF_HUB_OFFLINE"] = "1"

attempts = []

class Tripwire:
    # Records any attempt to import vllm, installed or not (a try/except ImportError would hide it otherwise).
    def find_spec(self, name, path=None, target=None):
        if name == "vllm" or name.startswith("vllm."):
            attempts.append(name)
        return None

sys.meta_path.insert(0, Tripwire())
import django
django.setup()
errors = {}
imported = []
for package in ("quorum", "annotation", "training", "frontend"):
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, package + "."):
        if ".migrations." in info.name:
            continue
        try:
            importlib.import_module(info.name)
            imported.append(info.name)
        except Exception as exc:
            errors[info.name] = f"{type(exc).__name__}: {exc}"
print(json.dumps({"attempts": attempts, "vllm_loaded": [m for m in sys.modules if m == "vllm" or m.startswith("vllm.")],
                  "imported": imported, "errors": errors}))
"""


def test_importing_every_module_of_the_project_never_touches_vllm():
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["attempts"] == [], report["attempts"]
    assert report["vllm_loaded"] == []
    assert "training.backends.vllm_engine" in report["imported"]
    assert "training.tasks" in report["imported"]
    assert len(report["imported"]) > 30
    training_errors = {k: v for k, v in report["errors"].items() if k.startswith("training.")}
    assert not training_errors, training_errors
