"""The transformers backend on a tiny random model: batching, left padding, the chat template, samples, token
counts, stop strings and candidate log-probabilities."""

import pytest
import torch

from tests.support.tiny import save_tiny_model
from training.backends import BackendError, Sampling, open_backend
from training.backends.transformers_local import TransformersBackend


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return save_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def backend(tiny_dir):
    return TransformersBackend.load(tiny_dir, max_batch_size=4)


@pytest.fixture(autouse=True)
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def chats(*questions):
    return [[{"role": "user", "content": q}] for q in questions]


def test_each_conversation_gets_n_completions_with_token_counts(backend):
    conversations = chats("What is two plus two?", "Hi", "Write a poem about the sea and the sky.")
    out = backend.generate(conversations, 3, Sampling(max_new_tokens=6, temperature=1.0, seed=0))
    assert [len(x) for x in out] == [3, 3, 3]
    for conversation, completions in zip(conversations, out):
        rendered = backend.render(conversation)
        expected_prompt = len(backend.tokenizer(rendered, add_special_tokens=False)["input_ids"])
        for c in completions:
            assert c.prompt_tokens == expected_prompt  # the chat template was applied, padding not counted
            assert 1 <= c.completion_tokens <= 6
            assert c.finish_reason in ("stop", "length")
            assert c.finish_reason == "stop" or c.completion_tokens == 6


def test_batched_greedy_generation_matches_one_prompt_at_a_time(backend, tiny_dir):
    conversations = chats("Hello, how are you today?", "Q?", "The cat sat on the mat. Rate the response on a scale.")
    greedy = Sampling(max_new_tokens=8, temperature=0)
    together = backend.generate(conversations, 2, greedy)
    alone = [backend.generate([c], 1, greedy)[0][0] for c in conversations]
    for batch, single in zip(together, alone):
        # Left padding leaves every prompt's continuation unchanged; greedy samples are identical.
        assert batch[0].text == batch[1].text == single.text
        assert batch[0].completion_tokens == single.completion_tokens


def test_the_same_seed_gives_the_same_samples(backend):
    conversations = chats("Tell me about the sky.", "And the sea?")
    a = backend.generate(conversations, 2, Sampling(max_new_tokens=6, seed=123))
    b = backend.generate(conversations, 2, Sampling(max_new_tokens=6, seed=123))
    assert [[c.text for c in x] for x in a] == [[c.text for c in x] for x in b]


def test_a_stop_string_ends_the_completion_before_it(backend):
    greedy = Sampling(max_new_tokens=12, temperature=0)
    text = backend.generate(chats("Hello"), 1, greedy)[0][0].text
    if len(text) < 3:
        pytest.skip("the tiny model stopped at once")
    stop = text[1:3]
    stopped = backend.generate(chats("Hello"), 1, Sampling(max_new_tokens=12, temperature=0, stop=(stop,)))[0][0]
    assert stopped.finish_reason == "stop"
    assert stopped.text == text[: text.find(stop)]


def test_candidate_logprobs_are_the_summed_token_logprobs(backend):
    conversation = chats("Which response is better?")[0]
    scores = backend.logprobs([conversation], [" (A)", " (B)"], prefix="Answer:")[0]
    tok, model = backend.tokenizer, backend.model
    context = tok(backend.render(conversation, "Answer:"), add_special_tokens=False)["input_ids"]
    for candidate, score in scores.items():
        ids = tok(candidate, add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logp = torch.log_softmax(model(input_ids=torch.tensor([context + ids])).logits[0].float(), -1)
        want = sum(float(logp[len(context) + i - 1, t]) for i, t in enumerate(ids))
        assert score == pytest.approx(want, abs=1e-4)


def test_logprobs_do_not_depend_on_the_batch_they_are_computed_in(backend):
    conversations = chats("Short?", "A much longer question about the reward model and the policy and the data?")
    together = backend.logprobs(conversations, ["Yes", "No, it is not."])
    alone = [backend.logprobs([c], ["Yes", "No, it is not."])[0] for c in conversations]
    for t, a in zip(together, alone):
        for key in t:
            assert t[key] == pytest.approx(a[key], abs=1e-4)


def test_a_registered_chat_template_replaces_the_tokenizers(tiny_dir):
    template = "{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}\n{% endfor %}[assistant] "
    b = TransformersBackend.load(tiny_dir, chat_template=template)
    assert b.render(chats("Hi")[0]) == "[user] Hi\n[assistant] "


def test_a_missing_model_directory_is_a_clear_error(tmp_path):
    with pytest.raises(BackendError, match="no model at"):
        TransformersBackend.load(tmp_path / "nothing")


def test_open_backend_builds_the_backend_a_registry_row_names(tiny_dir):
    row = type("Row", (), {"name": "tiny", "backend": "transformers", "path": str(tiny_dir), "chat_template": "",
                           "options": {"max_batch_size": 2, "device": "cpu"}})()
    b = open_backend(row)
    assert isinstance(b, TransformersBackend) and b.max_batch_size == 2 and b.device == "cpu"


def test_a_dtype_is_one_of_a_few_names_never_any_attribute_of_torch(db, tiny_dir):
    from common.errors import Invalid
    from training.backends.transformers_local import pick_dtype
    from training.services import model_register

    assert pick_dtype("cpu", "bfloat16") is torch.bfloat16 and pick_dtype("cpu", "auto") is torch.float32
    for name in ("load", "save", "float8_e4m3fn", "__class__"):
        with pytest.raises(BackendError):
            pick_dtype("cpu", name)
        with pytest.raises(Invalid) as refused:
            model_register(name="tiny", backend="transformers", path=str(tiny_dir), options={"dtype": name})
        assert "options" in refused.value.fields
    assert model_register(name="tiny", backend="transformers", path=str(tiny_dir), options={"dtype": "float32"})
