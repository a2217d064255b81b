"""Tiny random models and a tiny tokenizer, built in-process for tests and smoke runs.

Nothing here touches the network or a model hub: the tokenizer is a byte-level BPE trained on a short built-in
corpus, and the models are Llama-architecture networks initialised from a config. Plain Python (no Django), so
trainer tests and benchmarks use it as well as the web tests.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    GenerationConfig,
    LlamaConfig,
    LlamaForCausalLM,
    LlamaForSequenceClassification,
    PreTrainedTokenizerFast,
)

__all__ = [
    "BOS_TOKEN",
    "CHAT_TEMPLATE",
    "EOS_TOKEN",
    "IM_START",
    "PAD_TOKEN",
    "save_tiny_model",
    "tiny_causal_lm",
    "tiny_sequence_classifier",
    "tiny_tokenizer",
]

BOS_TOKEN = "<|startoftext|>"
PAD_TOKEN = "<|pad|>"
IM_START = "<|im_start|>"
# The end-of-turn marker doubles as EOS so that generation stops at the end of an assistant turn, as in ChatML models.
EOS_TOKEN = "<|im_end|>"
SPECIAL_TOKENS = [PAD_TOKEN, BOS_TOKEN, IM_START, EOS_TOKEN]

DEFAULT_VOCAB_SIZE = 512

# ChatML. The assistant's content and its end-of-turn token sit inside {% generation %} so that
# `return_assistant_tokens_mask=True` (TRL's SFT `assistant_only_loss`) marks exactly what the model must learn to
# emit, stop token included. Rendering a prompt with `add_generation_prompt=True` yields a strict prefix of the
# rendered prompt+completion, which TRL's DPO/KTO/SFT tokenisation relies on to split prompt from completion.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- generation %}{{- message['content'] + '<|im_end|>' }}{%- endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# A short English corpus, enough for a few hundred merges covering common words and the chat roles.
_CORPUS = [
    "You are a helpful assistant. Answer the question clearly and briefly.",
    "The user asked a question and the assistant gave an answer.",
    "What is the capital of France? The capital of France is Paris.",
    "Which response is more helpful, honest and harmless? The first response is better than the second one.",
    "Explain the answer step by step. First, read the question. Second, think about it. So the answer is four.",
    "Two plus two is four. Three times three is nine. Ten minus one is nine.",
    "Please write a short poem about the sea and the sky in the morning light.",
    "I am sorry, but I cannot help with that request because it could cause harm.",
    "Here is a summary of the article: the city council voted to build a new park near the river.",
    "Rate the response on a scale from one to five for accuracy, clarity and tone.",
    "The system prompt tells the model how to behave; the user message asks for something; the model replies.",
    "Good answers are correct, complete and polite. Bad answers are wrong, rude or off topic.",
    "A cat sat on the mat. The dog ran in the garden. Birds sing in the trees every day.",
    "How do I sort a list in Python? Use the sorted function or the list sort method.",
    "Annotators compare two responses and choose the one they prefer, or say that both are bad.",
    "Question 1? Question 2? Step 1. Step 2. Step 3. 0 1 2 3 4 5 6 7 8 9 10 100 2024",
    "Thank you! You're welcome. Hello, how are you today? I'm fine, thanks for asking.",
    "The reward model scores each response; the policy learns to write responses with higher scores.",
]


def tiny_tokenizer(vocab_size: int = DEFAULT_VOCAB_SIZE) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained on a built-in corpus, with ChatML special tokens and chat template.

    Deterministic: the same `vocab_size` always gives the same vocabulary. Any text can be encoded (byte-level
    alphabet), so unseen words simply split into more tokens. BOS is defined but not prepended automatically (as in
    ChatML models); EOS is `<|im_end|>`; padding is on the left, which batched generation needs (TRL's trainers pad
    their own batches and ignore this setting).
    """
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS * 4 + [" ".join(_CORPUS)], trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=[IM_START],
        padding_side="left",
        chat_template=CHAT_TEMPLATE,
        model_max_length=512,
        clean_up_tokenization_spaces=False,
    )


def _config(
    tokenizer: PreTrainedTokenizerFast, *, hidden: int, layers: int, heads: int = 4, **extra
) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=hidden * 2,
        num_hidden_layers=layers,
        num_attention_heads=heads,
        num_key_value_heads=max(1, heads // 2),
        max_position_embeddings=tokenizer.model_max_length,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
        **extra,
    )


def _init(model_cls, config: LlamaConfig, seed: int):
    # Seed a forked RNG so building a model never disturbs the caller's random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = model_cls(config)
    return model.eval()


def tiny_causal_lm(
    tokenizer: PreTrainedTokenizerFast, hidden: int = 32, layers: int = 2, seed: int = 0
) -> LlamaForCausalLM:
    """A randomly initialised Llama causal LM sized to `tokenizer`'s vocabulary (~40k parameters at the defaults)."""
    model = _init(LlamaForCausalLM, _config(tokenizer, hidden=hidden, layers=layers), seed)
    model.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return model


def tiny_sequence_classifier(
    tokenizer: PreTrainedTokenizerFast, num_labels: int = 1, hidden: int = 32, layers: int = 2, seed: int = 0
) -> LlamaForSequenceClassification:
    """A randomly initialised Llama sequence classifier (a reward model when `num_labels == 1`).

    `config.pad_token_id` is set: the model scores the last non-pad token of each sequence and needs it to find it.
    """
    config = _config(tokenizer, hidden=hidden, layers=layers, num_labels=num_labels)
    return _init(LlamaForSequenceClassification, config, seed)


def save_tiny_model(
    directory: str | Path,
    kind: Literal["causal", "classifier"] = "causal",
    *,
    hidden: int = 32,
    layers: int = 2,
    seed: int = 0,
    num_labels: int = 1,
) -> Path:
    """Write a tiny model and its tokenizer to `directory` with `save_pretrained`; return the directory.

    The result loads back offline with `AutoModelForCausalLM` (kind "causal") or `AutoModelForSequenceClassification`
    (kind "classifier") and `AutoTokenizer`, both `.from_pretrained(directory)`.
    """
    directory = Path(directory)
    tokenizer = tiny_tokenizer()
    if kind == "causal":
        model = tiny_causal_lm(tokenizer, hidden=hidden, layers=layers, seed=seed)
    elif kind == "classifier":
        model = tiny_sequence_classifier(tokenizer, num_labels=num_labels, hidden=hidden, layers=layers, seed=seed)
    else:
        raise ValueError(f"kind must be 'causal' or 'classifier', not {kind!r}")
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
