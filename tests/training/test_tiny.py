"""The tiny tokenizer and models build offline, render chats, generate, and survive a save/load round trip."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers is imported

import pytest  # noqa: E402
import torch  # noqa: E402
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer  # noqa: E402

from tests.support.tiny import (  # noqa: E402
    save_tiny_model,
    tiny_causal_lm,
    tiny_sequence_classifier,
    tiny_tokenizer,
)

CHAT = [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "What is the capital of France?"},
    {"role": "assistant", "content": "Paris."},
]


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    import huggingface_hub

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny matrices gain nothing from threads, and lose a lot to OpenMP hand-offs on a busy 2-core machine.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def test_tokenizer_is_deterministic_and_has_special_tokens():
    tokenizer = tiny_tokenizer()
    assert tokenizer.get_vocab() == tiny_tokenizer().get_vocab()
    assert 256 < len(tokenizer) <= 1024
    assert {tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token} == {
        "<|startoftext|>",
        "<|im_end|>",
        "<|pad|>",
    }
    assert len({tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id}) == 3
    assert tokenizer.padding_side == "left"


def test_tokenizer_round_trips_any_text():
    tokenizer = tiny_tokenizer()
    text = "Zebras can't type «ünïcödé» 😀 or tabs\tand\nnewlines."
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text
    # Common words seen in the built-in corpus merge into single tokens.
    assert len(tokenizer(" the capital of France")["input_ids"]) <= 5


def test_chat_template_renders_chatml():
    tokenizer = tiny_tokenizer()
    assert tokenizer.apply_chat_template(CHAT, tokenize=False) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n"
        "<|im_start|>assistant\nParis.<|im_end|>\n"
    )
    prompt = tokenizer.apply_chat_template(CHAT[:2], tokenize=False, add_generation_prompt=True)
    assert prompt.endswith("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n")
    # The prompt with its generation prompt is a prefix of the whole conversation, token for token: TRL splits
    # prompt from completion this way.
    prompt_ids = tokenizer.apply_chat_template(CHAT[:2], add_generation_prompt=True, return_dict=True)["input_ids"]
    full_ids = tokenizer.apply_chat_template(CHAT, return_dict=True)["input_ids"]
    assert full_ids[: len(prompt_ids)] == prompt_ids


def test_chat_template_masks_exactly_the_assistant_reply_and_its_stop_token():
    tokenizer = tiny_tokenizer()
    out = tokenizer.apply_chat_template(CHAT, return_dict=True, return_assistant_tokens_mask=True)
    masked = [token for token, keep in zip(out["input_ids"], out["assistant_masks"]) if keep]
    assert tokenizer.decode(masked) == "Paris.<|im_end|>"


def test_causal_lm_is_small_seeded_and_generates():
    tokenizer = tiny_tokenizer()
    model = tiny_causal_lm(tokenizer)
    assert sum(p.numel() for p in model.parameters()) < 100_000
    assert model.config.vocab_size == len(tokenizer)
    assert torch.equal(model.lm_head.weight, tiny_causal_lm(tokenizer).lm_head.weight)
    assert not torch.equal(model.lm_head.weight, tiny_causal_lm(tokenizer, seed=1).lm_head.weight)

    prompts = [
        tokenizer.apply_chat_template(CHAT[1:2], tokenize=False, add_generation_prompt=True),
        tokenizer.apply_chat_template(CHAT[:2], tokenize=False, add_generation_prompt=True),
    ]
    batch = tokenizer(prompts, return_tensors="pt", padding=True)  # left-padded
    output = model.generate(**batch, max_new_tokens=6, min_new_tokens=6, do_sample=False)
    new_tokens = output[:, batch["input_ids"].shape[1] :]
    assert new_tokens.shape == (2, 6)
    assert all(isinstance(text, str) for text in tokenizer.batch_decode(new_tokens))


def test_building_does_not_disturb_the_callers_random_state():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    tiny_causal_lm(tiny_tokenizer(), seed=7)
    assert torch.equal(torch.rand(3), expected)


def test_sequence_classifier_scores_padded_batches():
    tokenizer = tiny_tokenizer()
    model = tiny_sequence_classifier(tokenizer)
    assert model.config.pad_token_id == tokenizer.pad_token_id
    batch = tokenizer(["Paris.", "The capital of France is Paris."], return_tensors="pt", padding=True)
    with torch.no_grad():
        scores = model(**batch).logits
    assert scores.shape == (2, 1)
    assert torch.isfinite(scores).all()
    # Padding does not change a sequence's score.
    with torch.no_grad():
        alone = model(**tokenizer(["Paris."], return_tensors="pt")).logits
    assert torch.allclose(alone[0], scores[0], atol=1e-5)


def test_saved_causal_lm_and_tokenizer_load_back_offline(tmp_path):
    directory = save_tiny_model(tmp_path / "tiny-causal", kind="causal")

    model = AutoModelForCausalLM.from_pretrained(directory, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)

    original = tiny_causal_lm(tiny_tokenizer())
    for (name, saved), (_, built) in zip(model.state_dict().items(), original.state_dict().items(), strict=True):
        assert torch.equal(saved, built), name
    assert tokenizer.get_vocab() == tiny_tokenizer().get_vocab()
    rendered = tokenizer.apply_chat_template(CHAT, tokenize=False)
    assert tokenizer(rendered)["input_ids"] == tiny_tokenizer()(rendered)["input_ids"]  # special tokens stay whole
    assert tokenizer.apply_chat_template(CHAT, tokenize=False) == tiny_tokenizer().apply_chat_template(
        CHAT, tokenize=False
    )
    assert (tokenizer.eos_token, tokenizer.pad_token, tokenizer.padding_side) == ("<|im_end|>", "<|pad|>", "left")
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id

    ids = tokenizer.apply_chat_template(CHAT[:2], add_generation_prompt=True, return_tensors="pt", return_dict=True)
    output = model.generate(**ids, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert output.shape[1] == ids["input_ids"].shape[1] + 4


def test_saved_classifier_loads_back_offline(tmp_path):
    directory = save_tiny_model(tmp_path / "tiny-reward", kind="classifier")

    model = AutoModelForSequenceClassification.from_pretrained(directory, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)

    assert model.config.num_labels == 1
    assert model.config.pad_token_id == tokenizer.pad_token_id
    with torch.no_grad():
        scores = model(**tokenizer(["Hello.", "Hello there, friend."], return_tensors="pt", padding=True)).logits
    assert scores.shape == (2, 1)


def test_save_refuses_an_unknown_kind(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        save_tiny_model(tmp_path / "x", kind="seq2seq")
