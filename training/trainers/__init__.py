"""Quorum's trainers: one module per method, each a plain process (no Django) that turns a snapshot into a model.

| module | method | engine |
| --- | --- | --- |
| `sft` | supervised fine-tuning on `{messages}` | TRL `SFTTrainer` |
| `reward` | Bradley–Terry reward model (or ensemble) on preferences, with a held-out evaluation | TRL `RewardTrainer` |
| `dpo` | Direct Preference Optimization | TRL `DPOTrainer` |
| `kto` | KTO on unpaired thumbs up/down | TRL `KTOTrainer` |
| `orpo` | ORPO (no reference model) | TRL `trl.experimental.orpo.ORPOTrainer` |
| `ppo` | PPO against a reward model, ensemble or registered reward function | Quorum's own loop (TRL 1.16 has no PPO) |
| `prm` | process reward model on stepwise labels, compared with an ORM | Quorum's own, on transformers' `Trainer` |

Shared pieces: `config` (typed run configs read from JSON and validated) and `configs` (each method's config, and
`CONFIGS`: method -> config class), both free of torch so the web process validates a run without loading it;
`data` (snapshot loading), `runtime` (metrics, checkpoints, resume, cancellation, devices, LoRA, result.json), `cli`
(the command line below), `losses` (PPO's losses and RL estimators as pure tensor functions), `scoring` (reward
models and ensembles as scorers), `rewards` (registered reward functions), `stats`.

Command-line contract (what a launcher such as a Celery task relies on)
------------------------------------------------------------------------
Launch:   python -m training.trainers.<method> --config run.json
          accelerate launch [--config_file ...] -m training.trainers.<method> --config run.json   (several GPUs)
Describe: python -m training.trainers.<method> --describe   prints every config field (name, type, default, help)
          as JSON; `config.describe_config(configs.CONFIGS[<method>])` gives the same in Python.

run.json is one JSON object with the method's config fields (`configs.<Method>Config`; every field is typed,
defaulted and documented). It may carry `"method": "<method>"`, which must match. `model`, `data` and `output_dir`
are required. Unknown fields, wrong types and out-of-range values are all reported at once, before any work.

stdout carries metrics only, as JSON lines, one scalar per line:
    {"step": 12, "name": "loss", "value": 0.4131}
`step` is the optimizer step (PPO: the PPO step); a non-finite value is null; names are the trainer's own (TRL's
"rewards/chosen", PPO's "reward", "kl", "entropy", "response_length", "clip_fraction", ...), prefixed by a stage
("member1/loss", "orm/loss") when a run trains several models, and "eval/..." for the held-out evaluation. The same
lines go to output_dir/metrics.jsonl (or `metrics_file`). On resume, lines after the checkpoint's step are removed
from that file before the steps are run again; a reader of stdout should keep the last value per (step, name).
stderr carries human-readable logs.

Exit status: 0 succeeded, 3 cancelled (SIGTERM or SIGINT), 2 invalid config, 1 failed.

output_dir after a run:
    config.json, model.safetensors, tokenizer files  the final model: loads with AutoModelFor<Task>.from_pretrained
                                                     (CausalLM for sft/dpo/kto/orpo/ppo; SequenceClassification for
                                                     reward; TokenClassification for prm)
    checkpoints/checkpoint-<step>/                   resumable checkpoints (every `save_steps` and at the end)
    metrics.jsonl                                    the metrics lines
    result.json                                      {"status": "succeeded"|"cancelled"|"failed", "method", "steps",
                                                      "final_metrics", "evaluation", "output_dir", "checkpoint",
                                                      "error", "runtime_s", "config"}
  reward ensembles: member-<i>/ (one model each), ensemble.json and the tokenizer at the top;
  prm: orm/ (the outcome model of the comparison); ppo: value_head.pt beside the policy.

Cancellation: SIGTERM (or SIGINT) lets the current optimizer step finish, writes a checkpoint, writes result.json with
status "cancelled" and exits 3. A second signal ends the process at once. Under `accelerate launch` every process
stops at the same step.

Resume: with `"resume": "auto"` (the default) a relaunch with the same output_dir continues from the last complete
checkpoint (half-written ones, e.g. after SIGKILL, are discarded): step counts continue, optimizer, scheduler, RNG
and data order are restored. A relaunch of a run whose result.json already says "succeeded" for the same config
returns at once. `"resume": "never"` starts over.

Precision: fp32 on CPU; bf16 (or fp16 where bf16 is unsupported) on a GPU unless `precision` says otherwise.
LoRA: `"lora": {"r": 16, "alpha": 32, "dropout": 0.05, "target_modules": "all-linear"}`; the final model is saved
merged unless `merge_lora` is false.
"""

__all__ = ["METHODS"]

METHODS = ("sft", "reward", "dpo", "kto", "orpo", "ppo", "prm")
