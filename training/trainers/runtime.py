"""What a training run does around a method's own loop: metrics as JSON lines, checkpoints and resume, cancellation
on SIGTERM, device and precision, LoRA, loading and saving models, transformers/TRL callbacks, and result.json.

Plain Python on torch, transformers, peft and accelerate; never Django.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import re
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, Literal

import torch

from training.trainers.config import ConfigError, LoraSettings, TrainConfig, config_to_dict

log = logging.getLogger("quorum.trainers")

__all__ = [
    "Cancellation",
    "MetricsWriter",
    "Run",
    "StageOutcome",
    "TrainResult",
    "execute",
    "last_checkpoint",
]

RESULT_FILE = "result.json"
METRICS_FILE = "metrics.jsonl"
CHECKPOINTS_DIR = "checkpoints"
STATE_FILE = "trainer_state.json"  # written last into a checkpoint: its presence marks the checkpoint complete
COMPLETED_FILE = "completed.json"


# --- Metrics -------------------------------------------------------------------------------------------------------

class MetricsWriter:
    """Metrics as JSON lines, one scalar per line: `{"step": 12, "name": "loss", "value": 0.41}`.

    `step` is the optimizer step the value belongs to (0 before training); names are the trainer's own ("loss",
    "grad_norm", "learning_rate", TRL's "rewards/chosen", PPO's "reward/mean", ...), prefixed by a stage
    ("member1/loss", "orm/loss") when a run trains several models. Non-finite values are written as null.
    """

    # Where echoed lines go: set by the command line to the real stdout once fd 1 points at stderr.
    echo_stream: IO[str] | None = None

    def __init__(self, path: Path, echo: bool, enabled: bool = True):
        self.path = path
        self.echo = echo
        self.enabled = enabled
        self._lock = threading.Lock()
        if enabled:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed in close()
        else:
            self._file = None

    def write(self, step: int, metrics: dict[str, float], prefix: str = "") -> None:
        if not self.enabled or not metrics:
            return
        lines = []
        for name, value in metrics.items():
            value = float(value)
            lines.append(json.dumps({"step": int(step), "name": prefix + name, "value": value if math.isfinite(value) else None}))
        text = "\n".join(lines) + "\n"
        with self._lock:
            self._file.write(text)
            self._file.flush()
            if self.echo:
                stream = MetricsWriter.echo_stream or sys.stdout
                stream.write(text)
                stream.flush()

    def rewind(self, step: int, prefix: str = "") -> None:
        """Forget lines after `step` whose name starts with `prefix`: a resumed run logs those steps again."""
        if not self.enabled:
            return
        with self._lock:
            self._file.close()
            kept = []
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut short by a kill
                if record.get("step", 0) > step and str(record.get("name", "")).startswith(prefix):
                    continue
                kept.append(line)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
            os.replace(tmp, self.path)
            self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


# --- Cancellation --------------------------------------------------------------------------------------------------


class Cancellation:
    """SIGTERM (and SIGINT) ask the run to stop: the trainer finishes its current step, writes a checkpoint and
    returns with status "cancelled". A second signal of the same kind ends the process at once."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.requested = False
        self._previous: dict[int, Any] = {}

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers can only be set from the main thread; cancellation then comes via request()
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: Any) -> None:  # noqa: ARG002
        if self.requested:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.requested = True
        log.warning("received %s: stopping after the current step with a checkpoint", signal.Signals(signum).name)

    def request(self) -> None:
        """Ask for cancellation from code (a test, or a watchdog thread)."""
        self.requested = True

    def agreed(self) -> bool:
        """Whether any process of a distributed run was asked to stop, so that all of them stop at the same step."""
        if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
            from accelerate import PartialState

            flag = torch.tensor([1.0 if self.requested else 0.0], device=PartialState().device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            self.requested = bool(flag.item() > 0)
        return self.requested


# --- Checkpoints ---------------------------------------------------------------------------------------------------

CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")


def checkpoint_step(path: Path) -> int:
    match = CHECKPOINT_NAME.match(Path(path).name)
    if not match:
        raise ValueError(f"{path} is not a checkpoint directory")
    return int(match.group(1))


def last_checkpoint(directory: str | os.PathLike) -> Path | None:
    """The complete checkpoint with the highest step in `directory` (one holding trainer_state.json), or None."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    complete = [p for p in directory.iterdir() if p.is_dir() and CHECKPOINT_NAME.match(p.name) and (p / STATE_FILE).is_file()]
    return max(complete, key=checkpoint_step, default=None)


def drop_checkpoints_after(directory: Path, keep: Path | None) -> None:
    """Remove incomplete checkpoints and any newer than `keep` (a kill can leave half-written ones behind)."""
    if not directory.is_dir():
        return
    limit = checkpoint_step(keep) if keep is not None else -1
    for p in directory.iterdir():
        if p.is_dir() and CHECKPOINT_NAME.match(p.name):
            if not (p / STATE_FILE).is_file() or checkpoint_step(p) > limit:
                shutil.rmtree(p, ignore_errors=True)


# --- Devices, precision, models ------------------------------------------------------------------------------------


def resolve_precision(requested: str) -> str:
    """"fp32", "bf16" or "fp16". auto: bf16 on a GPU that supports it, fp16 on another GPU, fp32 on CPU."""
    cuda = torch.cuda.is_available()
    if requested == "auto":
        if not cuda:
            return "fp32"
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if requested == "fp16" and not cuda:
        raise ConfigError(["precision: fp16 needs a GPU; use fp32 (or bf16) on CPU"])
    return requested


def lora_config(settings: LoraSettings, task_type: str):
    """A peft `LoraConfig` for `settings`; `task_type` is peft's ("CAUSAL_LM", "SEQ_CLS", "TOKEN_CLS")."""
    from peft import LoraConfig

    # A classifier's head is trained in full (peft's modules_to_save for these task types), so no adapter goes on it.
    heads = ["score", "classifier"] if task_type in ("SEQ_CLS", "TOKEN_CLS") else None
    return LoraConfig(
        r=settings.r,
        lora_alpha=settings.alpha,
        lora_dropout=settings.dropout,
        target_modules=settings.target_modules,
        exclude_modules=heads,
        task_type=task_type,
    )


# --- Runs ----------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class TrainResult:
    """What `train()` returns and what result.json holds."""

    status: Literal["succeeded", "cancelled", "failed"]
    method: str
    steps: int  # optimizer steps done, summed over the run's stages
    final_metrics: dict[str, float]  # the last value of every metric written
    evaluation: dict  # the method's held-out evaluation (empty when there is none)
    output_dir: str
    checkpoint: str | None = None  # the last checkpoint written (where a relaunch resumes)
    error: str | None = None  # set when status is "failed"
    runtime_s: float = 0.0
    config: dict = dataclasses.field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class StageOutcome:
    steps: int
    cancelled: bool
    metrics: dict[str, float]
    checkpoint: str | None = None


class Run:
    """One training run: its output directory, metrics, cancellation, precision and the stages it trains.

    A stage is one model trained to completion (the run's model; each ensemble member; the PRM's comparison ORM).
    Stage "" keeps its checkpoints in output_dir/checkpoints; a named stage in output_dir/checkpoints/<name>, and
    its metrics are prefixed "<name>/". A finished stage leaves completed.json so that a resumed run skips it.
    """

    def __init__(self, config: TrainConfig):
        from accelerate import PartialState

        self.config = config
        self.method = type(config).method
        self.output_dir = Path(config.output_dir)
        # cpu=True where there is no GPU, so that a multi-process CPU launch (torchrun) is recognised as one.
        self.state = PartialState(cpu=not torch.cuda.is_available())
        self.is_main = self.state.is_main_process
        self.device = self.state.device
        self.precision = resolve_precision(config.precision)
        self.cancel = Cancellation()
        metrics_path = Path(config.metrics_file) if config.metrics_file else self.output_dir / METRICS_FILE
        self.metrics = MetricsWriter(metrics_path, echo=config.metrics_stdout, enabled=self.is_main)
        self.final_metrics: dict[str, float] = {}
        self.last_checkpoint: str | None = None

    # Stages

    def stage_dir(self, stage: str = "") -> Path:
        base = self.output_dir / CHECKPOINTS_DIR
        return base / stage if stage else base

    @staticmethod
    def prefix(stage: str) -> str:
        return f"{stage}/" if stage else ""

    def completed(self, stage: str = "") -> StageOutcome | None:
        path = self.stage_dir(stage) / COMPLETED_FILE
        if self.config.resume == "never" or not path.is_file():
            return None
        data = json.loads(path.read_text())
        outcome = StageOutcome(**data)
        self.final_metrics.update({self.prefix(stage) + k: v for k, v in outcome.metrics.items()})
        return outcome

    def mark_completed(self, outcome: StageOutcome, stage: str = "") -> None:
        if self.is_main:
            directory = self.stage_dir(stage)
            directory.mkdir(parents=True, exist_ok=True)
            _write_json_atomic(directory / COMPLETED_FILE, dataclasses.asdict(outcome))

    def resume_point(self, stage: str = "") -> Path | None:
        """The checkpoint a stage continues from (None to start fresh); drops newer, incomplete ones and rewinds the
        metrics file to it."""
        directory = self.stage_dir(stage)
        if self.config.resume == "never":
            if self.is_main:
                drop_checkpoints_after(directory, None)
                self.metrics.rewind(0, self.prefix(stage))
            self.state.wait_for_everyone()
            return None
        checkpoint = last_checkpoint(directory)
        if self.is_main:
            drop_checkpoints_after(directory, checkpoint)
            self.metrics.rewind(checkpoint_step(checkpoint) if checkpoint else 0, self.prefix(stage))
        self.state.wait_for_everyone()
        if checkpoint is not None:
            log.info("resuming %s from %s", stage or self.method, checkpoint)
        return checkpoint

    def log_metrics(self, step: int, metrics: dict[str, float], stage: str = "") -> None:
        prefix = self.prefix(stage)
        self.metrics.write(step, metrics, prefix)
        self.final_metrics.update({prefix + k: float(v) for k, v in metrics.items()})

    # Transformers/TRL trainers

    def hf_arguments(self, args_cls: type, stage: str = "", **fields: Any) -> Any:
        """`args_cls` (TrainingArguments or a TRL config) filled from the run config; `fields` add or override."""
        c = self.config
        values: dict[str, Any] = dict(
            output_dir=str(self.stage_dir(stage)),
            use_cpu=self.device.type == "cpu",
            bf16=self.precision == "bf16",
            fp16=self.precision == "fp16",
            activation_checkpointing=c.activation_checkpointing,
            max_steps=c.max_steps,
            num_train_epochs=c.num_epochs,
            per_device_train_batch_size=c.batch_size,
            per_device_eval_batch_size=c.batch_size,
            gradient_accumulation_steps=c.gradient_accumulation_steps,
            learning_rate=c.learning_rate,
            lr_scheduler_type=c.lr_scheduler,
            warmup_steps=c.warmup_steps,
            weight_decay=c.weight_decay,
            max_grad_norm=c.max_grad_norm,
            logging_steps=c.logging_steps,
            save_strategy="steps",
            save_steps=c.save_steps,
            save_total_limit=c.save_total_limit,
            eval_strategy="no",
            report_to="none",
            disable_tqdm=True,
            log_level="warning",
            dataloader_num_workers=0,
            dataloader_pin_memory=self.device.type == "cuda",
            seed=c.seed,
            data_seed=c.seed,
        )
        if c.deepspeed:
            values["deepspeed"] = c.deepspeed
        values.update(fields)
        return args_cls(**values)

    def fit(self, trainer: Any, stage: str = "") -> StageOutcome:
        """Train a transformers/TRL `trainer` for one stage, resuming from the stage's last checkpoint; SIGTERM
        stops it after the current step with a checkpoint."""
        from transformers.trainer_callback import PrinterCallback, ProgressCallback

        checkpoint = self.resume_point(stage)
        start = checkpoint_step(checkpoint) if checkpoint else 0
        trainer.remove_callback(PrinterCallback)
        trainer.remove_callback(ProgressCallback)
        metrics_cb = _MetricsCallback(self, stage)
        cancel_cb = _CancelCallback(self)
        trainer.add_callback(metrics_cb)
        trainer.add_callback(cancel_cb)
        if self.cancel.agreed():
            self.last_checkpoint = str(checkpoint) if checkpoint else None
            return StageOutcome(steps=start, cancelled=True, metrics={}, checkpoint=self.last_checkpoint)
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        last = last_checkpoint(self.stage_dir(stage))
        self.last_checkpoint = str(last) if last else None
        return StageOutcome(
            steps=int(trainer.state.global_step),
            cancelled=cancel_cb.cancelled,
            metrics=dict(metrics_cb.last),
            checkpoint=self.last_checkpoint,
        )

    def fit_evaluate_save(self, trainer: Any, tokenizer: Any, eval_set: Any, evaluation: dict | None = None
                          ) -> tuple[str, int, dict]:
        """The ending of a single-model method: `fit`, then (unless cancelled) `trainer.evaluate()` on the held-out
        set merged into `evaluation`, and the final model saved to output_dir. Returns what `execute` expects."""
        outcome = self.fit(trainer)
        if outcome.cancelled:
            return "cancelled", outcome.steps, {}
        evaluation = dict(evaluation or {})
        if eval_set is not None:
            evaluation.update(trainer.evaluate())
        self.save_model(trainer.model, tokenizer, self.output_dir)
        return "succeeded", outcome.steps, evaluation

    def save_model(self, model: Any, tokenizer: Any, directory: Path) -> None:
        """Write the final model and tokenizer with save_pretrained (LoRA merged in unless `merge_lora` is off)."""
        if not self.is_main:
            return
        model = _unwrap(model)
        if _is_peft(model) and self.config.merge_lora:
            model = model.merge_and_unload()
        directory.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(directory)
        if tokenizer is not None:
            tokenizer.save_pretrained(directory)

    # Models

    def load_tokenizer(self, path: str | None = None) -> Any:
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(path or self.config.tokenizer or self.config.model)
        if tokenizer.eos_token is None and tokenizer.sep_token is not None:
            # Encoders (BERT, MiniLM) end a sequence with [SEP] and name no EOS; TRL appends the EOS.
            tokenizer.eos_token = tokenizer.sep_token
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        return tokenizer

    def weights_dtype(self, frozen: bool = False) -> torch.dtype:
        """fp32 master weights, except frozen weights (a LoRA base, a reference model) on a GPU in bf16/fp16 runs."""
        if frozen and self.device.type == "cuda" and self.precision in ("bf16", "fp16"):
            return torch.bfloat16 if self.precision == "bf16" else torch.float16
        return torch.float32

    def load_model(self, auto_cls: Any, path: str | None = None, *, frozen: bool = False, **kwargs: Any) -> Any:
        """`auto_cls.from_pretrained(path or config.model)`: trained weights in fp32 (mixed precision autocasts),
        frozen ones (`frozen=True`) in bf16/fp16 on a GPU run in those precisions."""
        dtype = self.weights_dtype(frozen=frozen)
        model = auto_cls.from_pretrained(path or self.config.model, dtype=dtype, **kwargs)
        if frozen:
            model.requires_grad_(False)
            model.eval()
        return model

    def peft_config(self, task_type: str) -> Any:
        return lora_config(self.config.lora, task_type) if self.config.lora is not None else None

    # Result

    def write_result(self, result: TrainResult) -> None:
        if self.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            _write_json_atomic(self.output_dir / RESULT_FILE, result.to_dict())

    def previous_result(self) -> TrainResult | None:
        """The result of an earlier run of exactly this config that succeeded (a relaunch then has nothing to do)."""
        path = self.output_dir / RESULT_FILE
        if self.config.resume == "never" or not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            return None
        if data.get("status") != "succeeded" or data.get("config") != config_to_dict(self.config):
            return None
        return TrainResult(**data)


def _write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, default=_json_default) + "\n")
    os.replace(tmp, path)


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _unwrap(model: Any) -> Any:
    while hasattr(model, "module") and isinstance(model, torch.nn.parallel.DistributedDataParallel):
        model = model.module
    return model


def _is_peft(model: Any) -> bool:
    try:
        from peft import PeftModel
    except ImportError:  # pragma: no cover - peft is a dependency
        return False
    return isinstance(model, PeftModel)


def _trainer_callback_base() -> type:
    from transformers import TrainerCallback

    return TrainerCallback


class _MetricsCallback(_trainer_callback_base()):
    """Turns the trainer's log dicts into metrics lines."""

    def __init__(self, run: Run, stage: str):
        self.run = run
        self.stage = stage
        self.last: dict[str, float] = {}

    def on_log(self, args, state, control, logs=None, **kwargs):  # noqa: ARG002
        if not logs or not state.is_world_process_zero:
            return
        numeric = {
            k: float(v) for k, v in logs.items() if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "total_flos"
        }
        self.run.log_metrics(state.global_step, numeric, self.stage)
        self.last.update(numeric)


class _CancelCallback(_trainer_callback_base()):
    """After every optimizer step: when cancellation was asked for, save a checkpoint and stop."""

    def __init__(self, run: Run):
        self.run = run
        self.cancelled = False

    def on_step_end(self, args, state, control, **kwargs):  # noqa: ARG002
        if self.run.cancel.agreed():
            control.should_save = True
            control.should_training_stop = True
            self.cancelled = True
        return control


def execute(config: TrainConfig, body: Callable[[Run], tuple[str, int, dict]]) -> TrainResult:
    """Run `body` (a method's training) under the shared setup, and write result.json.

    `body(run)` returns (status, steps, evaluation); metrics it logged become `final_metrics`. A run whose
    result.json already records a success for exactly this config returns that result without training again.
    """
    from transformers import set_seed
    from transformers.utils import logging as hf_logging

    run = Run(config)
    previous = run.previous_result()
    if previous is not None:
        log.info("%s already succeeded with this config; nothing to do", run.output_dir)
        return previous
    threads = torch.get_num_threads()
    if config.num_threads is not None:
        torch.set_num_threads(config.num_threads)
    hf_verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_warning()
    set_seed(config.seed)
    run.output_dir.mkdir(parents=True, exist_ok=True)
    run.cancel.install()
    started = time.monotonic()
    try:
        status, steps, evaluation = body(run)
        result = TrainResult(
            status=status,
            method=run.method,
            steps=steps,
            final_metrics=run.final_metrics,
            evaluation=evaluation,
            output_dir=str(run.output_dir),
            checkpoint=run.last_checkpoint,
            runtime_s=time.monotonic() - started,
            config=config_to_dict(config),
        )
        run.write_result(result)
        return result
    except BaseException as error:
        run.write_result(
            TrainResult(
                status="failed",
                method=run.method,
                steps=0,
                final_metrics=run.final_metrics,
                evaluation={},
                output_dir=str(run.output_dir),
                checkpoint=run.last_checkpoint,
                error=f"{type(error).__name__}: {error}",
                runtime_s=time.monotonic() - started,
                config=config_to_dict(config),
            )
        )
        raise
    finally:
        run.cancel.restore()
        run.metrics.close()
        torch.set_num_threads(threads)
        hf_logging.set_verbosity(hf_verbosity)
