"""Process reward models on stepwise snapshots (`{prompt, completions: [step...], labels: [...]}`), and their
comparison with an outcome reward model by best-of-N selection on held-out problems.

Quorum's own method (TRL 1.16 has no PRM trainer), built on transformers: a token classifier
(`AutoModelForTokenClassification`) reads prompt + steps, each step followed by `step_separator`, and is trained
with cross-entropy at the last token of every step only (as in Lightman et al. 2023 and Wang et al. 2024,
Math-Shepherd); transformers' `Trainer` runs the loop. Labels keep the snapshot's semantics: true/false trains two
classes (incorrect, correct); integers −1/0/+1 (a raw export) train three (bad, neutral, good) unless label_mode is
binary, which folds a neutral step into correct or incorrect per `neutral_is_correct`.

A step's score is P(correct) (ternary: P(good), plus P(neutral) when neutral steps count as correct); a solution's
score aggregates its steps (min by default). The evaluation holds out whole problems (rows grouped by prompt) and
reports step accuracy and, for problems with several candidate solutions, the accuracy of picking the best one by
PRM score against an outcome reward model (ORM: a sequence classifier trained with a logistic loss on "every step
correct", on the same training rows, or `orm_model` when given), beside the random-pick and oracle rates.

    python -m training.trainers.prm --config run.json

Output: output_dir holds the PRM (AutoModelForTokenClassification); output_dir/orm the comparison ORM.
"""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from typing import Any

import torch

from training.trainers import stats
from training.trainers.cli import main
from training.trainers.config import load_config
from training.trainers.configs import PRMConfig
from training.trainers.data import DataError, check_text_or_messages, load_snapshot, prompt_text, resolve_string_rows
from training.trainers.runtime import Run, TrainResult, execute

__all__ = ["PRMConfig", "aggregate", "encode_steps", "train"]

IGNORE = -100


def train(config: PRMConfig | dict | str) -> TrainResult:
    """Train the PRM of `config` (and its comparison ORM), then evaluate both on held-out problems."""
    config = load_config(PRMConfig, config)
    return execute(config, _train)


# --- Labels and encoding -------------------------------------------------------------------------------------------


def _label_kind(labels: list[list[Any]], path: str) -> str:
    kinds = set()
    for i, row in enumerate(labels):
        for value in row:
            if isinstance(value, bool):
                kinds.add("bool")
            elif isinstance(value, int) and value in (-1, 0, 1):
                kinds.add("int")
            else:
                raise DataError(f"{path}: row {i}: step labels must be true/false or -1, 0, 1; got {value!r}")
    if len(kinds) > 1:
        raise DataError(f"{path}: step labels mix true/false and integers; use one kind per snapshot")
    return kinds.pop() if kinds else "bool"


def _check_rows(dataset, path: str) -> None:
    check_text_or_messages(dataset, ["prompt"], path)
    for i, (steps, labels) in enumerate(zip(dataset["completions"], dataset["labels"])):
        if not isinstance(steps, list) or not steps or not all(isinstance(s, str) for s in steps):
            raise DataError(f"{path}: row {i}: `completions` must be a non-empty list of step strings")
        if not isinstance(labels, list) or len(labels) != len(steps):
            raise DataError(f"{path}: row {i}: {len(steps)} steps but {len(labels) if isinstance(labels, list) else 'no'} labels")


def _as_int(value: Any) -> int:
    """A snapshot label as −1/0/+1 (true is +1, false is −1)."""
    if isinstance(value, bool):
        return 1 if value else -1
    return int(value)


class _Labels:
    def __init__(self, mode: str, neutral_is_correct: bool):
        self.mode = mode
        self.neutral_is_correct = neutral_is_correct
        self.num_labels = 3 if mode == "ternary" else 2
        self.id2label = {0: "bad", 1: "neutral", 2: "good"} if mode == "ternary" else {0: "incorrect", 1: "correct"}

    def class_of(self, value: Any) -> int:
        v = _as_int(value)
        if self.mode == "ternary":
            return v + 1
        return 1 if v == 1 or (v == 0 and self.neutral_is_correct) else 0

    def correct(self, value: Any) -> bool:
        v = _as_int(value)
        return v == 1 or (v == 0 and self.neutral_is_correct)

    def p_correct(self, probs: torch.Tensor) -> torch.Tensor:
        """P(step correct) from class probabilities (..., num_labels)."""
        if self.mode == "ternary":
            return probs[..., 2] + (probs[..., 1] if self.neutral_is_correct else 0.0)
        return probs[..., 1]


def encode_steps(
    tokenizer: Any, prompt: Any, steps: list[str], *, separator: str, max_length: int, mode: str, join_separator: str
) -> tuple[list[int], list[int]]:
    """(input ids, position of each step's last token) for prompt + steps; steps that do not fit in `max_length`
    are left out (so the positions may be fewer than the steps)."""
    if isinstance(prompt, str) and mode != "chat":
        ids = list(tokenizer(prompt_text(prompt, tokenizer, mode, join_separator))["input_ids"])
    else:
        ids = list(tokenizer(prompt_text(prompt, tokenizer, "chat", ""), add_special_tokens=False)["input_ids"])
    positions = []
    for step in steps:
        segment = tokenizer(step + separator, add_special_tokens=False)["input_ids"]
        if not segment or len(ids) + len(segment) > max_length:
            break
        ids.extend(segment)
        positions.append(len(ids) - 1)
    return ids, positions


def aggregate(step_scores: list[float], how: str) -> float:
    """A solution's score from its step scores: min, prod, mean or last."""
    if not step_scores:
        return float("-inf")
    if how == "min":
        return min(step_scores)
    if how == "prod":
        return math.prod(step_scores)
    if how == "mean":
        return sum(step_scores) / len(step_scores)
    return step_scores[-1]


def _split_problems(dataset, config: PRMConfig, seed: int):
    """(train rows, held-out rows) with every row of a problem (same prompt) on the same side."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, prompt in enumerate(dataset["prompt"]):
        groups[json.dumps(prompt, sort_keys=True)].append(i)
    keys = sorted(groups)
    random.Random(seed).shuffle(keys)
    if config.eval_fraction <= 0 or len(keys) < 2:
        return dataset, None
    held = min(len(keys) - 1, max(1, round(config.eval_fraction * len(keys))))
    held_rows = sorted(i for key in keys[:held] for i in groups[key])
    held_set = set(held_rows)
    return dataset.select([i for i in range(len(dataset)) if i not in held_set]), dataset.select(held_rows)


# --- Training ------------------------------------------------------------------------------------------------------


def _pad_right(features: list[dict], pad_id: int, label_pad: Any) -> dict:
    width = max(len(f["input_ids"]) for f in features)
    batch = {
        "input_ids": torch.tensor([f["input_ids"] + [pad_id] * (width - len(f["input_ids"])) for f in features]),
        "attention_mask": torch.tensor([[1] * len(f["input_ids"]) + [0] * (width - len(f["input_ids"])) for f in features]),
    }
    if "labels" in features[0]:
        first = features[0]["labels"]
        if isinstance(first, list) and len(first) == len(features[0]["input_ids"]):  # token labels
            batch["labels"] = torch.tensor([f["labels"] + [label_pad] * (width - len(f["labels"])) for f in features])
        else:  # one float per sequence
            batch["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.float32)
    return batch


class _Collator:
    def __init__(self, pad_id: int):
        self.pad_id = pad_id

    def __call__(self, features: list[dict]) -> dict:
        return _pad_right(features, self.pad_id, IGNORE)


def _encoded(dataset, config: PRMConfig, tokenizer, mode: str, labels: _Labels, target: str):
    """Token-classification rows (target "prm") or outcome rows (target "orm"); rows with no step that fits are
    dropped."""
    rows = []
    for prompt, steps, step_labels in zip(dataset["prompt"], dataset["completions"], dataset["labels"]):
        ids, positions = encode_steps(
            tokenizer, prompt, steps, separator=config.step_separator, max_length=config.max_length, mode=mode,
            join_separator=config.join_separator,
        )
        if not positions:
            continue
        if target == "prm":
            token_labels = [IGNORE] * len(ids)
            for position, value in zip(positions, step_labels):
                token_labels[position] = labels.class_of(value)
            rows.append({"input_ids": ids, "labels": token_labels})
        else:
            if len(positions) < len(steps):
                continue  # the outcome depends on steps that were cut off
            rows.append({"input_ids": ids, "labels": [1.0 if all(labels.correct(v) for v in step_labels) else 0.0]})
    import datasets

    return datasets.Dataset.from_list(rows)


def _fit_stage(run: Run, model, train_rows, tokenizer, stage: str):
    from transformers import Trainer, TrainingArguments

    args = run.hf_arguments(TrainingArguments, stage, remove_unused_columns=False)
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=train_rows,
        data_collator=_Collator(tokenizer.pad_token_id),
        processing_class=tokenizer,
    )
    return trainer, run.fit(trainer, stage)


def _train(run: Run) -> tuple[str, int, dict]:
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification, set_seed

    config: PRMConfig = run.config
    tokenizer = run.load_tokenizer()
    tokenizer.padding_side = "right"
    mode = resolve_string_rows(config, tokenizer)
    data = load_snapshot(config.data, "stepwise")
    _check_rows(data, config.data)
    kind = _label_kind(list(data["labels"]), config.data)
    if config.eval_data:
        train_set, eval_set = data, load_snapshot(config.eval_data, "stepwise")
        _check_rows(eval_set, config.eval_data)
        _label_kind(list(eval_set["labels"]), config.eval_data)
    else:
        train_set, eval_set = _split_problems(data, config, config.seed)
    label_mode = config.label_mode if config.label_mode != "auto" else ("ternary" if kind == "int" else "binary")
    labels = _Labels(label_mode, config.neutral_is_correct)
    prm_rows = _encoded(train_set, config, tokenizer, mode, labels, "prm")
    if len(prm_rows) == 0:
        raise DataError(f"{config.data}: no row has a step that fits in max_length={config.max_length}")
    data_info = {
        "label_mode": label_mode,
        "train_rows": len(train_set),
        "eval_rows": 0 if eval_set is None else len(eval_set),
        "dropped_too_long": len(train_set) - len(prm_rows),
    }

    steps = 0
    prm_dir = run.output_dir
    done = run.completed("")
    if done is None:
        set_seed(config.seed)
        model = run.load_model(
            AutoModelForTokenClassification,
            num_labels=labels.num_labels,
            id2label=labels.id2label,
            label2id={v: k for k, v in labels.id2label.items()},
        )
        model.config.pad_token_id = tokenizer.pad_token_id
        if config.lora is not None:
            from peft import get_peft_model

            model = get_peft_model(model, run.peft_config("TOKEN_CLS"))
        trainer, outcome = _fit_stage(run, model, prm_rows, tokenizer, "")
        steps += outcome.steps
        if outcome.cancelled:
            return "cancelled", steps, {}
        run.save_model(trainer.model, tokenizer, prm_dir)
        run.mark_completed(outcome, "")
        del trainer, model
    else:
        steps += done.steps

    orm_dir = None
    if config.compare_with_orm:
        if config.orm_model:
            orm_dir = config.orm_model
        else:
            orm_dir = run.output_dir / "orm"
            done = run.completed("orm")
            if done is None:
                orm_rows = _encoded(train_set, config, tokenizer, mode, labels, "orm")
                set_seed(config.seed)
                model = run.load_model(
                    AutoModelForSequenceClassification, num_labels=1, problem_type="multi_label_classification"
                )
                model.config.pad_token_id = tokenizer.pad_token_id
                if config.lora is not None:
                    from peft import get_peft_model

                    model = get_peft_model(model, run.peft_config("SEQ_CLS"))
                trainer, outcome = _fit_stage(run, model, orm_rows, tokenizer, "orm")
                steps += outcome.steps
                if outcome.cancelled:
                    return "cancelled", steps, {}
                run.save_model(trainer.model, tokenizer, orm_dir)
                run.mark_completed(outcome, "orm")
                del trainer, model
            else:
                steps += done.steps
    if run.cancel.requested:
        return "cancelled", steps, {}

    evaluation: dict[str, Any] = {"data": data_info}
    if eval_set is not None and run.is_main:
        evaluation.update(evaluate_best_of_n(run, eval_set, tokenizer, mode, labels, prm_dir, orm_dir))
        flat = {f"eval/{k}": v for k, v in evaluation.get("step", {}).items() if isinstance(v, float)}
        for name in ("prm", "orm"):
            if isinstance(evaluation.get("best_of_n", {}).get(name), dict):
                flat[f"eval/best_of_n_{name}"] = evaluation["best_of_n"][name]["accuracy"]
        run.log_metrics(steps, flat)
    return "succeeded", steps, evaluation


# --- Evaluation ----------------------------------------------------------------------------------------------------


@torch.no_grad()
def _forward_batches(model, rows: list[list[int]], pad_id: int, batch_size: int, device) -> list[torch.Tensor]:
    """Per sequence, the model's logits over its real tokens (token classifier) or its logits row (classifier)."""
    out = []
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        batch = _pad_right([{"input_ids": r} for r in chunk], pad_id, IGNORE)
        logits = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device)).logits
        for i, r in enumerate(chunk):
            out.append(logits[i, : len(r)].float().cpu() if logits.dim() == 3 else logits[i].float().cpu())
    return out


def evaluate_best_of_n(run: Run, rows, tokenizer, mode: str, labels: _Labels, prm_dir, orm_dir) -> dict:
    """Step accuracy of the PRM on held-out rows, and best-of-N selection accuracy of the PRM and the ORM."""
    from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

    config: PRMConfig = run.config
    encoded = [
        encode_steps(
            tokenizer, prompt, steps, separator=config.step_separator, max_length=config.max_length, mode=mode,
            join_separator=config.join_separator,
        )
        for prompt, steps in zip(rows["prompt"], rows["completions"])
    ]
    prm = AutoModelForTokenClassification.from_pretrained(prm_dir).to(run.device).eval()
    logits = _forward_batches(prm, [ids for ids, _ in encoded], tokenizer.pad_token_id, config.eval_batch_size, run.device)
    step_scores, hits, n_steps = [], 0, 0
    for (ids, positions), row_logits, row_labels in zip(encoded, logits, rows["labels"]):
        p_correct = labels.p_correct(torch.softmax(row_logits[positions], -1)).tolist() if positions else []
        step_scores.append(p_correct)
        for p, value in zip(p_correct, row_labels):
            hits += (p > 0.5) == labels.correct(value)
            n_steps += 1
    report: dict[str, Any] = {
        "step": {
            "steps": n_steps,
            "accuracy": hits / n_steps if n_steps else None,
            "accuracy_ci95": list(stats.wilson_interval(hits, n_steps)),
        }
    }
    outcomes = [all(labels.correct(v) for v in row_labels) for row_labels in rows["labels"]]
    prm_scores = [aggregate(s, config.aggregation) if len(s) == len(steps) else float("-inf")
                  for s, steps in zip(step_scores, rows["completions"])]
    orm_scores = None
    if orm_dir is not None:
        orm = AutoModelForSequenceClassification.from_pretrained(orm_dir).to(run.device).eval()
        orm_logits = _forward_batches(orm, [ids for ids, _ in encoded], tokenizer.pad_token_id, config.eval_batch_size, run.device)
        orm_scores = [float(x[0]) for x in orm_logits]

    groups: dict[str, list[int]] = defaultdict(list)
    for i, prompt in enumerate(rows["prompt"]):
        groups[json.dumps(prompt, sort_keys=True)].append(i)
    problems = [g for g in groups.values() if len(g) >= config.min_candidates]
    best: dict[str, Any] = {"problems": len(problems), "aggregation": config.aggregation}
    if problems:
        best["candidates_mean"] = sum(len(g) for g in problems) / len(problems)
        best["random"] = sum(sum(outcomes[i] for i in g) / len(g) for g in problems) / len(problems)
        best["oracle"] = sum(any(outcomes[i] for i in g) for g in problems) / len(problems)
        for name, scores in (("prm", prm_scores), ("orm", orm_scores)):
            if scores is None:
                best[name] = None
                continue
            wins = sum(outcomes[max(g, key=lambda i: scores[i])] for g in problems)
            best[name] = {
                "accuracy": wins / len(problems),
                "accuracy_ci95": list(stats.wilson_interval(wins, len(problems))),
            }
    report["best_of_n"] = best
    report["scores"] = {
        "prm_correct": stats.summary([s for s, ok in zip(prm_scores, outcomes) if ok and math.isfinite(s)]),
        "prm_incorrect": stats.summary([s for s, ok in zip(prm_scores, outcomes) if not ok and math.isfinite(s)]),
    }
    return report


if __name__ == "__main__":
    raise SystemExit(main(PRMConfig, train))
