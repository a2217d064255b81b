"""PPO from a reward model (RLHF as in Ziegler et al. 2019 and Ouyang et al. 2022). Quorum's own loop: TRL 1.16 has
no PPO trainer.

Each step: sample a response for `batch_size` prompts from the policy; score it with the reward (a saved
sequence-classification model, an ensemble's mean or minimum, or a Python callable); subtract a per-token KL penalty
to the frozen initial policy, β·(log π − log π_ref), with β fixed or adapted toward `target_kl`
(`losses.AdaptiveKLController`); estimate advantages with GAE on a value head over the policy's last hidden state;
then run `ppo_epochs` passes of clipped policy and value updates over minibatches (`losses.ppo_policy_loss`,
`losses.ppo_value_loss`). The score can be normalised by length ("per_token": score / tokens; "penalty": score −
length_penalty · tokens), and a response without EOS can be penalised.

Metrics every step: reward, kl, kl_coef, entropy, response_length, clip_fraction, value_clip_fraction, approx_kl,
loss/policy, loss/value, eos_fraction, learning_rate. Runs under `accelerate launch` (one rollout per process,
gradients averaged by DDP).

    python -m training.trainers.ppo --config run.json

A reward callable takes keyword arguments like TRL's GRPO reward functions and returns one float per completion:
`fn(prompts=[...], completions=[...], completion_ids=[[...]], **kwargs)`. A config names a registered one
(`training.trainers.rewards`: built in, or installed through the `quorum.reward_functions` entry-point group;
nothing else is imported), or Python code passes one to `train(config, reward_fn=...)`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.trainers import rewards
from training.trainers.cli import main
from training.trainers.config import ConfigError, load_config
from training.trainers.configs import PPOConfig
from training.trainers.data import DataError, load_snapshot, prompt_text, resolve_string_rows, split_for_eval
from training.trainers.losses import (
    AdaptiveKLController,
    FixedKLController,
    entropy_from_logits,
    gae,
    kl_penalty,
    masked_mean,
    masked_whiten,
    ppo_policy_loss,
    ppo_value_loss,
)
from training.trainers.runtime import CHECKPOINT_NAME, STATE_FILE, Run, TrainResult, checkpoint_step, execute

log = logging.getLogger("quorum.trainers.ppo")

__all__ = ["PPOConfig", "RewardFunction", "train"]

RewardFunction = rewards.RewardFunction
VALUE_HEAD_FILE = "value_head.pt"


def train(config: PPOConfig | dict | str, *, reward_fn: RewardFunction | None = None) -> TrainResult:
    """Train `config.model` with PPO against the configured reward (or `reward_fn`, which then replaces it)."""
    if reward_fn is not None:
        # The callable replaces any configured reward and is registered in this process under its import name,
        # which the run's config records.
        if not isinstance(config, (PPOConfig, dict)):
            config = json.loads(Path(config).read_text())
        raw = dataclasses.asdict(config) if isinstance(config, PPOConfig) else dict(config)
        name = f"{getattr(reward_fn, '__module__', None) or '__main__'}:{getattr(reward_fn, '__qualname__', 'reward_fn')}"
        rewards.register(name, reward_fn)
        config = load_config(PPOConfig, {**raw, "reward_model": None, "reward_function": name})
    else:
        config = load_config(PPOConfig, config)
    return execute(config, lambda run: _PPO(run, reward_fn).train())


class PolicyWithValueHead(nn.Module):
    """A causal LM and a scalar value head on its last hidden state, one module so DDP syncs both."""

    def __init__(self, policy: nn.Module, hidden_size: int):
        super().__init__()
        self.policy = policy
        self.value_head = nn.Linear(hidden_size, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)

    def forward(self, input_ids, attention_mask, position_ids):
        out = self.policy(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            output_hidden_states=True,
            use_cache=False,
        )
        hidden = out.hidden_states[-1]
        return out.logits, self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1)


def _registered_reward(name: str) -> RewardFunction:
    # Checked again here, not only by the config: this is the one place a name becomes code.
    try:
        return rewards.load(name)
    except LookupError:
        raise ConfigError([rewards.unregistered_problem(name)], method="ppo") from None


def _prompts(dataset, path: str) -> list[Any]:
    if "prompt" in dataset.column_names:
        prompts = list(dataset["prompt"])
    elif "messages" in dataset.column_names:
        prompts = []
        for i, messages in enumerate(dataset["messages"]):
            last = max((j for j, m in enumerate(messages) if m["role"] == "assistant"), default=len(messages))
            if last == 0:
                raise DataError(f"{path}: row {i}: no turns before the first assistant turn to use as a prompt")
            prompts.append(messages[:last])
    else:
        raise DataError(f"{path}: needs a `prompt` or a `messages` column; it has {dataset.column_names}")
    # A snapshot can repeat a prompt (one row per response); PPO samples its own responses.
    unique, seen = [], set()
    for prompt in prompts:
        key = json.dumps(prompt, sort_keys=True)
        if key not in seen:
            seen.add(key)
            unique.append(prompt)
    return unique


def _disable_dropout(model: nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
        if isinstance(getattr(module, "attention_dropout", None), float):
            module.attention_dropout = 0.0


def _pad_left(sequences: list[list[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        if seq:
            ids[row, width - len(seq) :] = torch.tensor(seq, dtype=torch.long)
            mask[row, width - len(seq) :] = 1
    return ids, mask


class _PPO:
    def __init__(self, run: Run, reward_fn: RewardFunction | None):
        self.run = run
        self.config: PPOConfig = run.config
        self.reward_fn = reward_fn

    # Setup

    def _load(self) -> None:
        from accelerate import Accelerator
        from transformers import AutoModelForCausalLM, get_scheduler

        c, run = self.config, self.run
        self.accelerator = Accelerator(
            cpu=run.device.type == "cpu",
            mixed_precision={"fp32": "no"}.get(run.precision, run.precision),
        )
        self.tokenizer = run.load_tokenizer()
        self.mode = resolve_string_rows(c, self.tokenizer)
        data = load_snapshot(c.data)
        train_set, eval_set = split_for_eval(data, c)
        self.prompts = [self._normalise(p) for p in _prompts(train_set, c.data)]
        self.eval_prompts = [self._normalise(p) for p in _prompts(eval_set, c.eval_data or c.data)] if eval_set is not None else []
        self.prompt_ids = [self._encode(p) for p in self.prompts]

        self.checkpoint = run.resume_point()
        self.lora = c.lora is not None
        if self.checkpoint is not None and not self.lora:
            policy = AutoModelForCausalLM.from_pretrained(self.checkpoint, dtype=torch.float32)
        else:
            policy = run.load_model(AutoModelForCausalLM)
        if self.lora:
            from peft import PeftModel, get_peft_model

            if self.checkpoint is not None:
                policy = PeftModel.from_pretrained(policy, self.checkpoint, is_trainable=True)
            else:
                policy = get_peft_model(policy, run.peft_config("CAUSAL_LM"))
            self.ref = None  # the base with the adapters disabled
        else:
            self.ref = run.load_model(AutoModelForCausalLM, frozen=True).to(self.accelerator.device)
        if c.activation_checkpointing:
            policy.gradient_checkpointing_enable()
        hidden = policy.config.get_text_config().hidden_size
        model = PolicyWithValueHead(policy, hidden)
        if self.checkpoint is not None and (self.checkpoint / VALUE_HEAD_FILE).is_file():
            model.value_head.load_state_dict(torch.load(self.checkpoint / VALUE_HEAD_FILE, map_location="cpu"))
        _disable_dropout(model)  # sampling and scoring must see the same network
        model.eval()  # train mode only for the update passes, where activation checkpointing acts

        params = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=c.learning_rate, weight_decay=c.weight_decay)
        self.total_steps = self._total_steps()
        updates_per_step = c.ppo_epochs * (c.batch_size // c.mini_batch_size)
        scheduler = get_scheduler(
            c.lr_scheduler, optimizer, num_warmup_steps=c.warmup_steps, num_training_steps=self.total_steps * updates_per_step
        )
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(model, optimizer, scheduler)

        self.kl_ctl = (
            AdaptiveKLController(c.kl_coef, c.target_kl, c.kl_horizon) if c.adaptive_kl else FixedKLController(c.kl_coef)
        )
        self.step = 0
        self.epoch = 0
        self.position = 0
        self.generator = torch.Generator().manual_seed(c.seed + self.accelerator.process_index)
        if self.checkpoint is not None:
            self._restore(self.checkpoint)
        self._order = self._permutation(self.epoch)

        self.scorer = None
        if self.reward_fn is None and c.reward_function is not None:
            self.reward_fn = _registered_reward(c.reward_function)
        if self.reward_fn is None:
            from training.trainers.scoring import RewardScorer

            self.scorer = RewardScorer(
                c.reward_model,
                device=self.accelerator.device,
                dtype=run.weights_dtype(frozen=True),
                batch_size=c.reward_batch_size,
            )

    def _normalise(self, prompt: Any) -> Any:
        if isinstance(prompt, str) and self.mode == "chat":
            return [{"role": "user", "content": prompt}]
        if isinstance(prompt, str):
            sep = self.config.join_separator
            return prompt + sep if prompt and sep and not prompt[-1].isspace() else prompt
        return list(prompt)

    def _encode(self, prompt: Any) -> list[int]:
        text = prompt_text(prompt, self.tokenizer, self.mode, "")
        ids = self.tokenizer(text, add_special_tokens=isinstance(prompt, str))["input_ids"]
        return ids[-self.config.max_prompt_length :]

    def _total_steps(self) -> int:
        c = self.config
        if c.max_steps > 0:
            return c.max_steps
        per_process = math.ceil(len(self.prompts) / self.accelerator.num_processes)
        return max(1, math.ceil(c.num_epochs * per_process / c.batch_size))

    def _permutation(self, epoch: int) -> list[int]:
        shard = list(range(self.accelerator.process_index, len(self.prompts), self.accelerator.num_processes))
        if not shard:
            raise DataError(
                f"{self.config.data}: {len(self.prompts)} distinct training prompts for "
                f"{self.accelerator.num_processes} processes; every process needs at least one"
            )
        generator = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
        return [shard[i] for i in torch.randperm(len(shard), generator=generator).tolist()]

    def _next_batch(self) -> list[int]:
        batch = []
        while len(batch) < self.config.batch_size:
            if self.position >= len(self._order):
                self.epoch += 1
                self.position = 0
                self._order = self._permutation(self.epoch)
            batch.append(self._order[self.position])
            self.position += 1
        return batch

    # Checkpoints

    def _save_checkpoint(self) -> Path:
        """checkpoint-<step>/: the policy (loadable with from_pretrained; a LoRA adapter when `lora` is set), the
        tokenizer, the value head, optimizer, scheduler, RNG states, and trainer_state.json written last."""
        directory = self.run.stage_dir() / f"checkpoint-{self.step}"
        accelerator = self.accelerator
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            directory.mkdir(parents=True, exist_ok=True)
            model = accelerator.unwrap_model(self.model)
            model.policy.save_pretrained(directory)
            self.tokenizer.save_pretrained(directory)
            torch.save(model.value_head.state_dict(), directory / VALUE_HEAD_FILE)
            torch.save(self.optimizer.state_dict(), directory / "optimizer.pt")
            torch.save(self.scheduler.state_dict(), directory / "scheduler.pt")
        accelerator.wait_for_everyone()
        rng = {
            "torch": torch.get_rng_state(),
            "generator": self.generator.get_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }
        torch.save(rng, directory / f"rng_state_{accelerator.process_index}.pth")
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            state = {
                "global_step": self.step,
                "epoch": self.epoch,
                "position": self.position,
                "kl_controller": self.kl_ctl.state_dict(),
            }
            (directory / STATE_FILE).write_text(json.dumps(state, indent=2))  # last: marks the checkpoint complete
            self._rotate()
        self.run.last_checkpoint = str(directory)
        return directory

    def _rotate(self) -> None:
        limit = self.config.save_total_limit
        if limit is None:
            return
        directory = self.run.stage_dir()
        complete = sorted(
            (p for p in directory.iterdir() if CHECKPOINT_NAME.match(p.name) and (p / STATE_FILE).is_file()),
            key=checkpoint_step,
        )
        for old in complete[:-limit]:
            shutil.rmtree(old, ignore_errors=True)

    def _restore(self, directory: Path) -> None:
        state = json.loads((directory / STATE_FILE).read_text())
        self.step = int(state["global_step"])
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self.kl_ctl.load_state_dict(state["kl_controller"])
        if (directory / "optimizer.pt").is_file():
            self.optimizer.load_state_dict(torch.load(directory / "optimizer.pt", map_location="cpu", weights_only=False))
        if (directory / "scheduler.pt").is_file():
            self.scheduler.load_state_dict(torch.load(directory / "scheduler.pt", weights_only=False))
        rng_path = directory / f"rng_state_{self.accelerator.process_index}.pth"
        if rng_path.is_file():
            rng = torch.load(rng_path, weights_only=False)
            torch.set_rng_state(rng["torch"])
            self.generator.set_state(rng["generator"])
            if rng.get("cuda") is not None and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])

    # Rollouts

    def _forward(self, model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, prompt_width: int):
        """(log-probabilities of the response tokens, values before each response token, logits) under `model`."""
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        logits, values = model(ids, mask, position_ids)
        logits = logits[:, prompt_width - 1 : -1].float() / self.config.temperature
        response = ids[:, prompt_width:]
        logprobs = torch.log_softmax(logits, dim=-1).gather(-1, response.unsqueeze(-1)).squeeze(-1)
        return logprobs, values[:, prompt_width - 1 : -1].float(), logits

    @torch.no_grad()
    def _ref_logprobs(self, ids, mask, prompt_width):
        position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
        if self.ref is not None:
            logits = self.ref(input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=False).logits
        else:
            policy = self.accelerator.unwrap_model(self.model).policy
            with policy.disable_adapter():
                logits = policy(input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=False).logits
        logits = logits[:, prompt_width - 1 : -1].float() / self.config.temperature
        return torch.log_softmax(logits, dim=-1).gather(-1, ids[:, prompt_width:].unsqueeze(-1)).squeeze(-1)

    @torch.no_grad()
    def _sample(self, policy: nn.Module, prompt_ids: list[list[int]]):
        from transformers import GenerationConfig

        c = self.config
        device = self.accelerator.device
        query, query_mask = _pad_left(prompt_ids, self.tokenizer.pad_token_id)
        query, query_mask = query.to(device), query_mask.to(device)
        eos_ids = {self.tokenizer.eos_token_id}
        generation_eos = getattr(getattr(policy, "generation_config", None), "eos_token_id", None)
        eos_ids |= set(generation_eos if isinstance(generation_eos, list) else [generation_eos] if generation_eos is not None else [])
        eos_ids.discard(None)
        generation = GenerationConfig(
            do_sample=True,
            temperature=c.temperature,
            top_k=c.top_k,
            top_p=c.top_p,
            max_new_tokens=c.max_new_tokens,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=sorted(eos_ids),
        )
        output = policy.generate(input_ids=query, attention_mask=query_mask, generation_config=generation)
        response = output[:, query.shape[1] :]
        is_eos = torch.zeros_like(response, dtype=torch.bool)
        for eos in eos_ids:
            is_eos |= response == eos
        # Real tokens: everything up to and including the first EOS.
        after_eos = (is_eos.cumsum(-1) - is_eos.long()) > 0
        response_mask = (~after_eos).long()
        response = torch.where(response_mask.bool(), response, torch.full_like(response, self.tokenizer.pad_token_id))
        ended = is_eos.any(-1)
        return query, query_mask, response, response_mask, ended

    def _scores(self, prompts: list[Any], response: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
        ids = [row[mask.bool()].tolist() for row, mask in zip(response.cpu(), response_mask.cpu())]
        texts = self.tokenizer.batch_decode(ids, skip_special_tokens=True)
        if self.scorer is not None:
            scores = self.scorer.score(prompts, texts)
            combined = self.scorer.reduce(scores, self.config.reward_ensemble_reduce, self.config.reward_uncertainty_penalty)
        else:
            prompt_texts = [prompt_text(p, self.tokenizer, self.mode, "") for p in prompts]
            combined = torch.as_tensor(
                list(self.reward_fn(prompts=prompt_texts, completions=texts, completion_ids=ids)), dtype=torch.float32
            )
            if combined.shape != (len(prompts),):
                raise ValueError(f"the reward function returned {tuple(combined.shape)} scores for {len(prompts)} completions")
        return combined.float().to(self.accelerator.device)

    def _shape_scores(self, scores: torch.Tensor, lengths: torch.Tensor, ended: torch.Tensor) -> torch.Tensor:
        c = self.config
        if c.length_normalization == "per_token":
            scores = scores / lengths.clamp(min=1)
        elif c.length_normalization == "penalty":
            scores = scores - c.length_penalty * lengths
        if c.missing_eos_penalty is not None:
            scores = torch.where(ended, scores, scores - c.missing_eos_penalty)
        if c.score_clip is not None:
            scores = scores.clamp(-c.score_clip, c.score_clip)
        return scores

    # Training

    def train(self) -> tuple[str, int, dict]:
        self._load()
        c, run = self.config, self.run
        first_reward = None
        if run.cancel.agreed():
            return "cancelled", self.step, {}
        while self.step < self.total_steps:
            metrics = self._step()
            self.step += 1
            first_reward = metrics["reward"] if first_reward is None else first_reward
            if self.step % c.logging_steps == 0 or self.step == self.total_steps:
                run.log_metrics(self.step, metrics)
            cancelled = run.cancel.agreed()
            if cancelled or self.step % c.save_steps == 0 or self.step == self.total_steps:
                self._save_checkpoint()
            if cancelled:
                return "cancelled", self.step, {}
        model = self.accelerator.unwrap_model(self.model)
        evaluation = self._evaluate(model.policy) if self.eval_prompts else {}
        if run.is_main:
            run.save_model(model.policy, self.tokenizer, run.output_dir)
            torch.save(model.value_head.state_dict(), run.output_dir / VALUE_HEAD_FILE)
        return "succeeded", self.step, evaluation

    def _step(self) -> dict[str, float]:
        c = self.config
        started = time.monotonic()
        indices = self._next_batch()
        prompts = [self.prompts[i] for i in indices]
        policy = self.accelerator.unwrap_model(self.model).policy
        query, query_mask, response, response_mask, ended = self._sample(policy, [self.prompt_ids[i] for i in indices])
        prompt_width = query.shape[1]
        ids = torch.cat([query, response], dim=1)
        mask = torch.cat([query_mask, response_mask], dim=1)
        lengths = response_mask.sum(-1).float()

        with torch.no_grad():
            old_logprobs, old_values, entropy = [], [], []
            for start in range(0, len(indices), c.mini_batch_size):
                part = slice(start, start + c.mini_batch_size)
                lp, v, logits = self._forward(self.model, ids[part], mask[part], prompt_width)
                old_logprobs.append(lp)
                old_values.append(v)
                entropy.append(entropy_from_logits(logits))
            old_logprobs, old_values, entropy = torch.cat(old_logprobs), torch.cat(old_values), torch.cat(entropy)
            ref_logprobs = torch.cat(
                [
                    self._ref_logprobs(ids[s : s + c.mini_batch_size], mask[s : s + c.mini_batch_size], prompt_width)
                    for s in range(0, len(indices), c.mini_batch_size)
                ]
            )
            raw_scores = self._scores(prompts, response, response_mask)
            scores = self._shape_scores(raw_scores, lengths, ended)
            kl = kl_penalty(old_logprobs, ref_logprobs, c.kl_estimator) * response_mask
            rewards = -self.kl_ctl.value * kl
            last = (lengths.long() - 1).clamp(min=0)
            rewards[torch.arange(len(indices)), last] += scores
            advantages, returns = gae(rewards, old_values, response_mask, c.gamma, c.lam)
            if c.whiten_advantages:
                advantages = masked_whiten(advantages, response_mask)
        rollout_s = time.monotonic() - started

        stats: dict[str, list[float]] = {k: [] for k in ("pg", "vf", "clip", "vclip", "approx_kl")}
        micro = c.mini_batch_size // c.gradient_accumulation_steps
        self.model.train()
        for _ in range(c.ppo_epochs):
            order = torch.randperm(len(indices), generator=self.generator)
            for start in range(0, len(indices), c.mini_batch_size):
                mb = order[start : start + c.mini_batch_size]
                for micro_start in range(0, len(mb), micro):
                    rows = mb[micro_start : micro_start + micro].to(ids.device)
                    logprobs, values, _ = self._forward(self.model, ids[rows], mask[rows], prompt_width)
                    rmask = response_mask[rows]
                    pg_loss, clip_fraction, approx_kl = ppo_policy_loss(
                        logprobs, old_logprobs[rows], advantages[rows], rmask, c.cliprange
                    )
                    vf_loss, value_clip = ppo_value_loss(values, old_values[rows], returns[rows], rmask, c.cliprange_value)
                    loss = (pg_loss + c.vf_coef * vf_loss) / c.gradient_accumulation_steps
                    self.accelerator.backward(loss)
                    stats["pg"].append(float(pg_loss.detach()))
                    stats["vf"].append(float(vf_loss.detach()))
                    stats["clip"].append(float(clip_fraction))
                    stats["vclip"].append(float(value_clip))
                    stats["approx_kl"].append(float(approx_kl))
                if c.max_grad_norm > 0:
                    self.accelerator.clip_grad_norm_(self.model.parameters(), c.max_grad_norm)
                self.optimizer.step()
                self.scheduler.step()
                self.optimizer.zero_grad(set_to_none=True)

        self.model.eval()
        sequence_kl = kl.sum(-1)
        self.kl_ctl.update(float(self._mean(sequence_kl.mean())), c.batch_size * self.accelerator.num_processes)

        def mean(values: list[float]) -> float:
            return float(self._mean(torch.tensor(sum(values) / max(len(values), 1))))

        return {
            "reward": float(self._mean(scores.mean())),
            "reward/score": float(self._mean(raw_scores.mean())),
            "reward/std": float(self._mean(scores.std() if len(scores) > 1 else torch.tensor(0.0))),
            "reward/total": float(self._mean((scores - self.kl_ctl.value * sequence_kl).mean())),
            "kl": float(self._mean(sequence_kl.mean())),
            "kl_coef": self.kl_ctl.value,
            "entropy": float(self._mean(masked_mean(entropy, response_mask))),
            "response_length": float(self._mean(lengths.mean())),
            "eos_fraction": float(self._mean(ended.float().mean())),
            "clip_fraction": mean(stats["clip"]),
            "value_clip_fraction": mean(stats["vclip"]),
            "approx_kl": mean(stats["approx_kl"]),
            "loss/policy": mean(stats["pg"]),
            "loss/value": mean(stats["vf"]),
            "learning_rate": float(self.scheduler.get_last_lr()[0]),
            "time/rollout_s": rollout_s,
            "time/step_s": time.monotonic() - started,
        }

    def _mean(self, value: torch.Tensor) -> torch.Tensor:
        value = torch.as_tensor(value, dtype=torch.float32, device=self.accelerator.device)
        return self.accelerator.reduce(value, "mean") if self.accelerator.num_processes > 1 else value

    @torch.no_grad()
    def _evaluate(self, policy: nn.Module) -> dict:
        """Mean reward on the held-out prompts of one sampled response from the trained policy and from the
        reference (the initial policy), and the policy's KL to the reference there."""
        prompt_ids = [self._encode(p) for p in self.eval_prompts]
        out: dict[str, Any] = {"prompts": len(prompt_ids)}
        for name in ("policy", "reference"):
            scores, kls = [], []
            for start in range(0, len(prompt_ids), self.config.batch_size):
                batch = prompt_ids[start : start + self.config.batch_size]
                prompts = self.eval_prompts[start : start + self.config.batch_size]
                if name == "policy":
                    sampler = policy
                    query, query_mask, response, response_mask, ended = self._sample(sampler, batch)
                elif self.ref is not None:
                    query, query_mask, response, response_mask, ended = self._sample(self.ref, batch)
                else:
                    with policy.disable_adapter():
                        query, query_mask, response, response_mask, ended = self._sample(policy, batch)
                lengths = response_mask.sum(-1).float()
                scores.append(self._shape_scores(self._scores(prompts, response, response_mask), lengths, ended))
                if name == "policy":
                    ids = torch.cat([query, response], 1)
                    mask = torch.cat([query_mask, response_mask], 1)
                    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
                    logits = policy(input_ids=ids, attention_mask=mask, position_ids=position_ids, use_cache=False).logits
                    logits = logits[:, query.shape[1] - 1 : -1].float() / self.config.temperature
                    logprobs = torch.log_softmax(logits, -1).gather(-1, response.unsqueeze(-1)).squeeze(-1)
                    ref = self._ref_logprobs(ids, mask, query.shape[1])
                    kls.append(((logprobs - ref) * response_mask).sum(-1))
            out[f"reward_{name}"] = float(torch.cat(scores).mean())
            if kls:
                out["kl_policy"] = float(torch.cat(kls).mean())
        out["reward_gain"] = out["reward_policy"] - out["reward_reference"]
        return out


if __name__ == "__main__":
    raise SystemExit(main(PPOConfig, train))
