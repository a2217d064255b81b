"""AI judge benchmark: pairs/s of the batched judge against one pair at a time, same model, same pairs, one run.

    .venv/bin/python bench/judge.py [--pairs 16] [--questions 8] [--batch 16] [--repeats 2] [--max-chars 700]

Two workloads from the demo data (annotation/fixtures/demo/responses.jsonl: three SmolLM2 answers per question),
judged under one comparison question on the packaged SmolLM2 on CPU:

- "distinct prompts": answer 0 against answer 1 for each of the first `--pairs` questions (no two pairs share
  a prompt);
- "one prompt's answers": all three pairs among the three answers of each of the first `--questions` questions
  (how a 3-response ranking is judged, and how pairwise tasks drawn from one prompt's samples come).

Then the judge's other scoring prompts for the first `--scoring` answers: the three aspect ratings of each, and
the step labels of each (its first sentences as steps), all in one call against one prompt at a time.

Ways, interleaved and repeated (the median of each is reported):

1. batched: `judge_pairs(backend, pairs, batch_size=B)`: B pairs per backend call, both orders in the same call;
   on CPU the prompts' shared beginnings are computed once (`training/backends/prefix_tree.py`);
2. one pair at a time: `judge_pairs(backend, [pair])` for each pair (its two orders still share a call);
3. batched without prefix sharing: as 1, every prompt computed whole (what batching alone gives on CPU);
4. naive, one comparison at a time (distinct prompts only): per pair and order,
   `backend.logprobs([prompt], [" (A)", " (B)"])`, each candidate scored as its own full row.

Printed per workload: pairs/s of each, the ratios to one pair at a time, the tokens the model ran against the
tokens of all prompts, and the largest difference in P(first) between 1, 2 and 3 (batching changes speed, not
verdicts).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/judge.py`, this folder comes first on sys.path, where bench/queue.py would shadow the
# standard library's queue (torch imports it).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import json
import statistics
import time

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import standalone

ROOT = standalone.prepare()

RESPONSES = ROOT / "annotation" / "fixtures" / "demo" / "responses.jsonl"
QUESTIONS = {
    "mt_bench": ROOT / "annotation" / "fixtures" / "demo" / "mt_bench_questions.jsonl",
    "vicuna_bench": ROOT / "annotation" / "fixtures" / "demo" / "vicuna_bench_questions.jsonl",
}
QUESTION = ("Which of these assistant responses is more helpful, honest and harmless? Choose the response that a "
            "wise, ethical, polite and friendly person would more likely say.")


def demo_answers(max_chars: int):
    """(question key, [{"role": "user", ...}], {sample: answer cut to max_chars}) for each demo question."""
    questions = {}
    for source, path in QUESTIONS.items():
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                questions[(source, row["question_id"])] = row["turns"][0]
    answers: dict[tuple, dict[int, str]] = {}
    for line in RESPONSES.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            answers.setdefault((row["source"], row["question_id"]), {})[row["sample"]] = row["content"][:max_chars]
    return [(key, [{"role": "user", "content": questions[key]}], samples)
            for key, samples in answers.items() if key in questions]


def demo_pairs(count: int, max_chars: int):
    """Answer 0 against answer 1 of each of the first `count` questions."""
    from training.feedback.judge import PairItem

    return [PairItem(messages, samples[0], samples[1], QUESTION, key=key)
            for key, messages, samples in demo_answers(max_chars) if 0 in samples and 1 in samples][:count]


def demo_rankings(count: int, max_chars: int):
    """Every pair among the answers of each of the first `count` questions that have three or more."""
    from training.feedback.judge import PairItem, ranking_pairs

    items = []
    for key, messages, samples in [q for q in demo_answers(max_chars) if len(q[2]) >= 3][:count]:
        texts = [samples[s] for s in sorted(samples)]
        items += [PairItem(messages, texts[i], texts[j], QUESTION, key=(key, i, j))
                  for i, j in ranking_pairs(len(texts))]
    return items


def smollm2_dir() -> Path:
    import django

    django.setup()
    from django.conf import settings

    from training import packaged

    return packaged.smollm2_convert(settings.MODEL_DIR, say=lambda m: print(m, flush=True)).path


class Counted:
    """The backend's prefix-tree statistics summed over the calls of one timed run."""

    def __init__(self, backend):
        self.backend, self.asked, self.computed = backend, 0, 0

    def __call__(self, fn):
        def run():
            self.asked = self.computed = 0
            original = self.backend._next_token_logprobs

            def counted(*args, **kwargs):
                out = original(*args, **kwargs)
                tree = self.backend.last_tree
                self.asked += tree.row_tokens
                self.computed += tree.computed_tokens
                return out

            self.backend._next_token_logprobs = counted
            try:
                return fn()
            finally:
                del self.backend._next_token_logprobs
        return run


def run_workload(title: str, backend, pairs, args, naive: bool) -> None:
    from training.feedback.judge import judge_pairs
    from training.feedback.prompts import comparison_prompt

    def batched():
        return judge_pairs(backend, pairs, batch_size=args.batch)

    def one_at_a_time():
        return [judge_pairs(backend, [p])[0] for p in pairs]

    def unshared():
        backend.share_prefixes = False
        try:
            return judge_pairs(backend, pairs, batch_size=args.batch)
        finally:
            backend.share_prefixes = True

    def naive_run():
        for p in pairs:
            for options in ([p.first, p.second], [p.second, p.first]):
                backend.logprobs([comparison_prompt(p.messages, p.question, options)], [" (A)", " (B)"],
                                 prefix="The answer is:")

    counted = Counted(backend)
    modes = [("batched", batched), ("one pair at a time", one_at_a_time),
             ("batched, no prefix sharing", unshared)]
    if naive:
        modes.append(("naive, one comparison at a time", naive_run))
    print(f"\n== {title}: {len(pairs)} pairs ==", flush=True)
    times: dict[str, list[float]] = {name: [] for name, _ in modes}
    tokens: dict[str, tuple[int, int]] = {}
    verdicts: dict[str, list] = {}
    for r in range(args.repeats):
        for name, fn in modes if r % 2 == 0 else list(reversed(modes)):
            t0 = time.perf_counter()
            out = counted(fn)()
            times[name].append(time.perf_counter() - t0)
            tokens[name] = (counted.computed, counted.asked)
            if out is not None:
                verdicts[name] = out
            print(f"  repeat {r + 1}: {name}: {len(pairs) / times[name][-1]:.2f} pairs/s", flush=True)
    rate = {name: len(pairs) / statistics.median(ts) for name, ts in times.items()}
    base = rate["one pair at a time"]
    for name, value in rate.items():
        computed, asked = tokens[name]
        share = f"model ran {computed:,} of {asked:,} prompt tokens ({computed / asked:.0%})" if asked else ""
        print(f"  {name:<34} {value:6.2f} pairs/s  {value / base:5.2f}x one pair at a time   {share}")
    drift = max(abs(a.p_first - b.p_first) for other in ("one pair at a time", "batched, no prefix sharing")
                for a, b in zip(verdicts["batched"], verdicts[other]))
    print(f"  largest |P(first)| difference between ways: {drift:.2e}; "
          f"verdicts that flip with the order: {sum(v.flipped for v in verdicts['batched'])}/{len(pairs)}")


def run_scoring(title: str, backend, conversations, candidates, prefix: str, args) -> None:
    """The scoring prompts of ratings and step labels: one call for all against one prompt at a time."""
    counted = Counted(backend)

    def together():
        return backend.logprobs(conversations, candidates, prefix=prefix)

    def each():
        return [backend.logprobs([c], candidates, prefix=prefix)[0] for c in conversations]

    def unshared():
        backend.share_prefixes = False
        try:
            return together()
        finally:
            backend.share_prefixes = True

    modes = [("one call", together), ("one prompt at a time", each), ("one call, no prefix sharing", unshared)]
    print(f"\n== {title}: {len(conversations)} prompts ==", flush=True)
    times: dict[str, list[float]] = {name: [] for name, _ in modes}
    tokens, outputs = {}, {}
    for r in range(args.repeats):
        for name, fn in modes if r % 2 == 0 else list(reversed(modes)):
            t0 = time.perf_counter()
            outputs[name] = counted(fn)()
            times[name].append(time.perf_counter() - t0)
            tokens[name] = (counted.computed, counted.asked)
    rate = {name: len(conversations) / statistics.median(ts) for name, ts in times.items()}
    for name, value in rate.items():
        computed, asked = tokens[name]
        print(f"  {name:<34} {value:6.2f} prompts/s  {value / rate['one prompt at a time']:5.2f}x one at a time   "
              f"model ran {computed:,} of {asked:,} prompt tokens ({computed / asked:.0%})")
    drift = max(abs(a[c] - b[c]) for other in ("one prompt at a time", "one call, no prefix sharing")
                for a, b in zip(outputs["one call"], outputs[other]) for c in candidates)
    print(f"  largest log-probability difference between ways: {drift:.2e}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=16, help="distinct-prompt pairs")
    parser.add_argument("--questions", type=int, default=8, help="questions whose three answers are all judged")
    parser.add_argument("--batch", type=int, default=16, help="pairs per backend call in the batched judge")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-chars", type=int, default=700, help="each answer cut to this many characters")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--scoring", type=int, default=4,
                        help="answers whose aspect ratings and step labels are scored too (0: none)")
    parser.add_argument("--skip-naive", action="store_true")
    args = parser.parse_args()

    import torch

    from training.backends.transformers_local import TransformersBackend
    from training.feedback.judge import judge_pairs
    from training.feedback.prompts import comparison_prompt

    if args.threads:
        torch.set_num_threads(args.threads)
    path = smollm2_dir()
    backend = TransformersBackend.load(path, max_batch_size=2 * args.batch, name="SmolLM2-135M-Instruct")
    pairs = demo_pairs(args.pairs, args.max_chars)
    tokens = [len(backend.tokenizer(backend.render(comparison_prompt(p.messages, p.question, [p.first, p.second]),
                                                   "The answer is: ("), add_special_tokens=False)["input_ids"])
              for p in pairs]
    print(f"model {path.name} on cpu, torch threads {torch.get_num_threads()}; "
          f"prompt tokens per order: median {statistics.median(tokens):.0f}, max {max(tokens)}")
    judge_pairs(backend, pairs[:1])  # warm-up
    run_workload("distinct prompts", backend, pairs, args, naive=not args.skip_naive)
    if args.questions:
        run_workload("one prompt's answers, all pairs", backend, demo_rankings(args.questions, args.max_chars), args,
                     naive=False)
    if args.scoring:
        from training.feedback.labels import RATING_CANDIDATES, RATING_OPEN, STEP_CANDIDATES, STEP_OPEN
        from training.feedback.prompts import rating_prompt, step_prompt

        answers = demo_answers(args.max_chars)[: args.scoring]
        ratings = [rating_prompt(messages, samples[0], aspect, QUESTION)
                   for _, messages, samples in answers for aspect in ("helpfulness", "honesty", "harmlessness")]
        run_scoring("ratings: three aspects of each answer", backend, ratings, RATING_CANDIDATES, RATING_OPEN, args)
        steps = []
        for _, messages, samples in answers:
            sentences = [s.strip() + "." for s in samples[0].replace("\n", " ").split(". ") if s.strip()][:6]
            steps += [step_prompt(messages, sentences, k, QUESTION) for k in range(len(sentences))]
        run_scoring("step labels: every step of each answer (its sentences, up to 6)", backend, steps,
                    STEP_CANDIDATES, STEP_OPEN, args)


if __name__ == "__main__":
    main()
