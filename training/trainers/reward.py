"""Bradley–Terry reward models on preference snapshots, alone or as an ensemble, with a held-out evaluation.

Training uses TRL's `RewardTrainer` (TRL 1.16), which applies −log σ(r_c − r_r − m) with the row's `margin` when the
column is present (`losses.bradley_terry_loss` is the same function). Quorum adds: margins made usable (a null
margin becomes 0, since TRL's collator fails on nulls), ensembles of k models over different seeds or data folds,
and the evaluation written into result.json: held-out accuracy with a Wilson interval, the correlation of reward with
response length (a reward-hacking signal), score histograms and, for ensembles, disagreement per pair.

    python -m training.trainers.reward --config run.json

Output: a single model saves to output_dir (AutoModelForSequenceClassification, num_labels=1). An ensemble saves
its members to output_dir/member-<i>/ and writes output_dir/ensemble.json plus the tokenizer; `scoring.RewardScorer`
loads either and gives every member's score, so both the mean and the spread are available.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import torch

from training.trainers import stats
from training.trainers.cli import main
from training.trainers.config import load_config
from training.trainers.configs import RewardConfig
from training.trainers.data import DataError, load_snapshot, preference_rows, split_for_eval
from training.trainers.runtime import Run, TrainResult, execute
from training.trainers.losses import bradley_terry_loss
from training.trainers.scoring import ENSEMBLE_FILE, RewardScorer

log = logging.getLogger("quorum.trainers.reward")

__all__ = ["RewardConfig", "evaluate_reward_model", "train"]

MAX_LISTED_PAIRS = 1000


def train(config: RewardConfig | dict | str) -> TrainResult:
    """Train the reward model (or ensemble) of `config`, evaluate it on the held-out pairs; see the package docs."""
    config = load_config(RewardConfig, config)
    return execute(config, _train)


def _margins(dataset, config: RewardConfig) -> tuple[Any, dict]:
    info = {"margin": "absent"}
    if "margin" not in dataset.column_names:
        return dataset, info
    margins = dataset["margin"]
    if not config.use_margin or all(m is None for m in margins):
        return dataset.remove_columns("margin"), {"margin": "ignored" if not config.use_margin else "all null"}
    nulls = sum(m is None for m in margins)
    scale = config.margin_scale
    dataset = dataset.map(lambda row: {"margin": 0.0 if row["margin"] is None else float(row["margin"]) * scale})
    return dataset, {"margin": "used", "null_margins_as_zero": nulls, "margin_scale": scale}


def _member_data(train_set, config: RewardConfig, index: int):
    if config.ensemble_mode != "folds":
        return train_set
    shuffled = train_set.shuffle(seed=config.seed)
    k = config.ensemble_size
    keep = [i for i in range(len(shuffled)) if i % k != index]
    return shuffled.select(keep)


def _train(run: Run) -> tuple[str, int, dict]:
    from transformers import AutoModelForSequenceClassification, set_seed
    from trl import RewardConfig as TRLRewardConfig
    from trl import RewardTrainer

    config: RewardConfig = run.config
    tokenizer = run.load_tokenizer()
    data = load_snapshot(config.data, "preference")
    data, data_info = _margins(preference_rows(data, config, tokenizer, keep=["margin"]), config)
    train_set, eval_set = split_for_eval(data, config, "preference")
    if eval_set is not None and config.eval_data:
        eval_set, _ = _margins(preference_rows(eval_set, config, tokenizer, keep=["margin"]), config)
    data_info.update(train_rows=len(train_set), eval_rows=0 if eval_set is None else len(eval_set))

    k = config.ensemble_size
    member_names = ["."] if k == 1 else [f"member-{i}" for i in range(k)]
    steps = 0
    for index, name in enumerate(member_names):
        stage = "" if k == 1 else f"member{index}"
        done = run.completed(stage) if k > 1 else None
        if done is not None:
            steps += done.steps
            continue
        seed = config.seed + index
        member_set = _member_data(train_set, config, index)
        set_seed(seed)  # the score head is initialised at load time
        model = run.load_model(AutoModelForSequenceClassification, num_labels=1)
        args = run.hf_arguments(
            TRLRewardConfig,
            stage,
            seed=seed,
            data_seed=seed,
            max_length=config.max_length,
            center_rewards_coefficient=config.center_rewards_coefficient,
        )
        trainer = RewardTrainer(
            model=model,
            args=args,
            train_dataset=member_set,
            processing_class=tokenizer,
            peft_config=run.peft_config("SEQ_CLS"),
        )
        dropped = len(member_set) - len(trainer.train_dataset)
        if dropped == len(member_set):
            raise DataError(f"{config.data}: every training pair is longer than max_length={config.max_length} tokens")
        if dropped:
            log.warning("%d of %d training pairs are longer than max_length=%d and were left out", dropped, len(member_set), config.max_length)
        data_info.setdefault("dropped_too_long", {})[stage or "model"] = dropped
        outcome = run.fit(trainer, stage)
        steps += outcome.steps
        if outcome.cancelled:
            return "cancelled", steps, {}
        run.save_model(trainer.model, tokenizer, run.output_dir / name)
        if k > 1:
            run.mark_completed(outcome, stage)
        del trainer, model
    if k > 1 and run.is_main:
        tokenizer.save_pretrained(run.output_dir)
        (run.output_dir / ENSEMBLE_FILE).write_text(
            json.dumps({"members": member_names, "mode": config.ensemble_mode, "seeds": [config.seed + i for i in range(k)]}, indent=2)
        )
    if run.cancel.requested:
        return "cancelled", steps, {}
    evaluation: dict[str, Any] = {"data": data_info}
    if eval_set is not None and run.is_main:
        scorer = RewardScorer(run.output_dir, device=run.device, batch_size=config.eval_batch_size)
        evaluation.update(evaluate_reward_model(scorer, eval_set, bins=config.histogram_bins))
        run.log_metrics(steps, {f"eval/{k}": v for k, v in evaluation.items() if isinstance(v, float)})
    return "succeeded", steps, evaluation


def evaluate_reward_model(scorer: RewardScorer, pairs, bins: int = 20) -> dict:
    """Held-out report for a reward model or ensemble on preference rows (prompt, chosen, rejected[, margin]).

    accuracy: share of pairs with r(chosen) > r(rejected) (ensemble: of the members' mean), with a 95 % Wilson
    interval; loss: the Bradley–Terry loss (with margins when present); length: Pearson and Spearman correlation of
    reward with response length in tokens over every scored response, and the share of pairs the longer response
    wins (a reward model that mostly prefers length is a hacking risk); histograms of chosen and rejected scores on
    shared edges; ensembles add each member's accuracy and, per pair, the spread of the members' margins and the
    share of members agreeing with the ensemble's choice.
    """
    prompts = list(pairs["prompt"])
    chosen_ids, chosen_len = scorer.sequences(prompts, list(pairs["chosen"]))
    rejected_ids, rejected_len = scorer.sequences(prompts, list(pairs["rejected"]))
    n = len(prompts)
    scores = scorer.score_ids(chosen_ids + rejected_ids)  # (members, 2n)
    chosen, rejected = scores[:, :n], scores[:, n:]
    mean_chosen, mean_rejected = chosen.mean(0), rejected.mean(0)
    wins = int((mean_chosen > mean_rejected).sum())
    margin = torch.tensor(pairs["margin"], dtype=torch.float32) if "margin" in pairs.column_names else None
    lengths = [float(x) for x in chosen_len + rejected_len]
    all_scores = torch.cat([mean_chosen, mean_rejected]).tolist()
    length_diff = [float(a - b) for a, b in zip(chosen_len, rejected_len)]
    longer_pairs = [(d, bool(c > r)) for d, c, r in zip(length_diff, mean_chosen.tolist(), mean_rejected.tolist()) if d != 0]
    lo, hi = min(all_scores), max(all_scores)
    report: dict[str, Any] = {
        "pairs": n,
        "accuracy": wins / n,
        "accuracy_ci95": list(stats.wilson_interval(wins, n)),
        "loss": float(bradley_terry_loss(mean_chosen, mean_rejected, margin)),
        "mean_margin": float((mean_chosen - mean_rejected).mean()),
        "length": {
            "pearson": stats.pearson(lengths, all_scores),
            "spearman": stats.spearman(lengths, all_scores),
            "margin_vs_length_difference_pearson": stats.pearson(length_diff, (mean_chosen - mean_rejected).tolist()),
            "chosen_is_longer": sum(d > 0 for d in length_diff) / n,
            "longer_scores_higher": (
                sum((d > 0) == higher for d, higher in longer_pairs) / len(longer_pairs) if longer_pairs else None
            ),
        },
        "scores": {
            "chosen": stats.summary(mean_chosen.tolist()),
            "rejected": stats.summary(mean_rejected.tolist()),
            "histogram_chosen": stats.histogram(mean_chosen.tolist(), bins, lo, hi),
            "histogram_rejected": stats.histogram(mean_rejected.tolist(), bins, lo, hi),
        },
    }
    if scorer.size > 1:
        member_margins = chosen - rejected  # (members, n)
        ensemble_choice = (mean_chosen > mean_rejected).unsqueeze(0)
        agreement = ((member_margins > 0) == ensemble_choice).float().mean(0)
        spread = member_margins.std(0)
        member_wins = (member_margins > 0).sum(1).tolist()
        report["ensemble"] = {
            "members": scorer.size,
            "member_accuracy": [w / n for w in member_wins],
            "margin_std": stats.summary(spread.tolist()),
            "agreement": stats.summary(agreement.tolist()),
            "unanimous": float((agreement == 1).float().mean()),
            "per_pair": [
                {
                    "index": i,
                    "margin_mean": float(member_margins[:, i].mean()),
                    "margin_std": float(spread[i]),
                    "agreement": float(agreement[i]),
                }
                for i in range(min(n, MAX_LISTED_PAIRS))
            ],
        }
    return report


if __name__ == "__main__":
    raise SystemExit(main(RewardConfig, train))
