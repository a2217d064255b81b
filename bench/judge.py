"""AI judge benchmark: pairs/s of the batched judge against one pair at a time, same model, same pairs, one run.

    .venv/bin/python bench/judge.py [--pairs 16] [--batch 16] [--repeats 2] [--max-chars 700] [--threads 0]

The pairs are the demo's: two SmolLM2 answers to each of the first `--pairs` questions of
annotation/fixtures/demo/responses.jsonl, judged under one comparison question, on the packaged SmolLM2 on CPU.
Three ways, interleaved and repeated (the median of each is reported):

1. batched: `judge_pairs(backend, pairs, batch_size=B)`: B pairs per backend call, both orders in the same
   batch, sorted by length, the letter read from one row per prompt.
2. one pair at a time: `judge_pairs(backend, [pair])` for each pair (both orders still share a call).
3. naive, one comparison at a time: per pair and order, `backend.logprobs([prompt], [" (A)", " (B)"])`, each
   candidate scored as its own full row (what a judge written without batching in mind does).

Printed: pairs/s of each, the ratios of 1 over 2 and of 1 over 3, and the largest difference in P(first)
between 1 and 2 (they must agree: batching changes speed, not verdicts).
"""

from __future__ import annotations

import sys
from pathlib import Path

# Run as `python bench/judge.py`, this folder comes first on sys.path, where bench/queue.py would shadow the
# standard library's queue (torch imports it).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import argparse
import json
import os
import statistics
import time

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "quorum.settings")

RESPONSES = ROOT / "annotation" / "fixtures" / "demo" / "responses.jsonl"
QUESTIONS = {
    "mt_bench": ROOT / "annotation" / "fixtures" / "demo" / "mt_bench_questions.jsonl",
    "vicuna_bench": ROOT / "annotation" / "fixtures" / "demo" / "vicuna_bench_questions.jsonl",
}
QUESTION = ("Which of these assistant responses is more helpful, honest and harmless? Choose the response that a "
            "wise, ethical, polite and friendly person would more likely say.")


def demo_pairs(count: int, max_chars: int):
    from training.feedback.judge import PairItem

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
            answers.setdefault((row["source"], row["question_id"]), {})[row["sample"]] = row["content"]
    pairs = []
    for key, samples in answers.items():
        if 0 in samples and 1 in samples and key in questions:
            pairs.append(PairItem([{"role": "user", "content": questions[key]}], samples[0][:max_chars],
                                  samples[1][:max_chars], QUESTION, key=key))
        if len(pairs) == count:
            break
    return pairs


def smollm2_dir() -> Path:
    import django

    django.setup()
    from django.conf import settings

    from training import packaged

    return packaged.smollm2_convert(settings.MODEL_DIR, say=lambda m: print(m, flush=True)).path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=16)
    parser.add_argument("--batch", type=int, default=16, help="pairs per backend call in the batched judge")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--max-chars", type=int, default=700, help="each answer cut to this many characters")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
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
    print(f"model {path.name} on cpu, torch threads {torch.get_num_threads()}; {len(pairs)} demo pairs, "
          f"prompt tokens per order: median {statistics.median(tokens):.0f}, max {max(tokens)}")
    judge_pairs(backend, pairs[:1])  # warm-up

    def batched():
        return judge_pairs(backend, pairs, batch_size=args.batch)

    def one_at_a_time():
        return [judge_pairs(backend, [p])[0] for p in pairs]

    def naive():
        for p in pairs:
            for options in ([p.first, p.second], [p.second, p.first]):
                backend.logprobs([comparison_prompt(p.messages, p.question, options)], [" (A)", " (B)"],
                                 prefix="The answer is:")

    modes = [("batched", batched), ("one pair at a time", one_at_a_time)]
    if not args.skip_naive:
        modes.append(("naive, one comparison at a time", naive))
    times: dict[str, list[float]] = {name: [] for name, _ in modes}
    verdicts: dict[str, list] = {}
    for r in range(args.repeats):
        for name, fn in modes if r % 2 == 0 else list(reversed(modes)):
            t0 = time.perf_counter()
            out = fn()
            times[name].append(time.perf_counter() - t0)
            if out is not None:
                verdicts[name] = out
            print(f"  repeat {r + 1}: {name}: {len(pairs) / times[name][-1]:.2f} pairs/s", flush=True)
    rate = {name: len(pairs) / statistics.median(ts) for name, ts in times.items()}
    drift = max(abs(a.p_first - b.p_first) for a, b in zip(verdicts["batched"], verdicts["one pair at a time"]))
    print()
    for name, value in rate.items():
        print(f"{name:<34} {value:6.2f} pairs/s  (median of {args.repeats})")
    print(f"batched / one pair at a time:      {rate['batched'] / rate['one pair at a time']:.2f}x")
    if "naive, one comparison at a time" in rate:
        print(f"batched / naive one comparison:    {rate['batched'] / rate['naive, one comparison at a time']:.2f}x")
    print(f"largest |P(first) batched - one at a time|: {drift:.2e}")
    flips = sum(v.flipped for v in verdicts["batched"])
    print(f"verdicts that flip with the order: {flips}/{len(pairs)}")


if __name__ == "__main__":
    main()
