"""Fixtures the trainer tests share: a tiny random causal LM on disk, and offline single-threaded torch."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers/datasets are imported

import pytest  # noqa: E402


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from tests.support.tiny import save_tiny_model

    return save_tiny_model(tmp_path_factory.mktemp("models") / "tiny-causal", kind="causal")


@pytest.fixture
def offline_single_thread(monkeypatch):
    """No hub lookups, and one torch thread (the fastest for tiny models); the thread count is put back after."""
    import datasets
    import huggingface_hub
    import torch

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
