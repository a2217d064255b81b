"""The vllm backend is an optional extra: without the package it fails with a clear, actionable error."""

import importlib.util
import sys

import pytest

from training.backends import BackendUnavailable, open_backend

pytestmark = pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")


def test_opening_a_vllm_model_without_vllm_says_how_to_install_it(tmp_path):
    row = type("Row", (), {"name": "big", "backend": "vllm", "path": str(tmp_path), "chat_template": "", "options": {}})()
    with pytest.raises(BackendUnavailable, match=r"pip install 'quorum\[gpu\]'"):
        open_backend(row)
    assert "vllm" not in sys.modules


def test_the_vllm_module_imports_without_vllm():
    from training.backends import vllm_engine

    with pytest.raises(BackendUnavailable, match="not installed"):
        vllm_engine.import_vllm()
