"""What a benchmark script run as `python bench/NAME.py` sets before Django or torch load: this checkout on the path,
Django's settings (development ones: a local measurement), no downloads, and OpenMP threads that yield when idle."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def prepare() -> Path:
    """Set the environment up (each value only where the caller's environment has none) and return the checkout."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads; see quorum/celery.py
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quorum.settings")
    os.environ.setdefault("QUORUM_DEV", "1")
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return ROOT
