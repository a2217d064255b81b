"""The command line as a launcher uses it: a trainer process killed with SIGKILL and relaunched continues from its
last checkpoint, and SIGTERM makes it save a checkpoint and exit with status "cancelled"; stdout carries only
metrics lines."""

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.support.snapshots import sft_rows, write_jsonl
from tests.support.tiny import save_tiny_model
from training.trainers.cli import EXIT_CANCELLED
from training.trainers.runtime import last_checkpoint

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow

DEADLINE_S = 240  # generous: each launch imports torch and TRL, which takes tens of seconds on a busy machine


class _Trainer:
    """A `python -m training.trainers.sft` process whose stdout lines are collected as they come."""

    def __init__(self, config: Path, log: Path):
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
        self._stderr = open(log, "ab")  # noqa: SIM115 - closed in wait()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "training.trainers.sft", "--config", str(config)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
        )
        self.lines: list[str] = []
        self._queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.process.stdout:
            self._queue.put(line)

    def steps(self) -> list[int]:
        while not self._queue.empty():
            self.lines.append(self._queue.get())
        return [json.loads(line)["step"] for line in self.lines if line.strip()]

    def wait_until(self, condition, what: str):
        end = time.monotonic() + DEADLINE_S
        while time.monotonic() < end:
            if condition():
                return
            if self.process.poll() is not None:
                pytest.fail(f"the trainer exited ({self.process.returncode}) before {what}")
            time.sleep(0.05)
        self.process.kill()
        pytest.fail(f"timed out waiting for {what}")

    def wait(self) -> int:
        code = self.process.wait(timeout=DEADLINE_S)
        time.sleep(0.2)  # let the reader thread drain stdout
        self.steps()
        self._stderr.close()
        return code


@pytest.fixture(scope="module")
def killed_then_cancelled(tmp_path_factory):
    """Launch, SIGKILL after a checkpoint, relaunch (resume is the default), SIGTERM after two more steps."""
    root = tmp_path_factory.mktemp("cli")
    model = save_tiny_model(root / "tiny-causal", kind="causal")
    data = write_jsonl(root / "sft.jsonl", sft_rows())
    out = root / "run"
    config = root / "run.json"
    config.write_text(
        json.dumps(
            {
                "method": "sft",
                "model": str(model),
                "data": str(data),
                "output_dir": str(out),
                "max_steps": 100000,
                "batch_size": 2,
                "save_steps": 3,
                "learning_rate": 1e-3,
                "max_length": 128,
                "num_threads": 1,
            }
        )
    )
    checkpoints = out / "checkpoints"

    first = _Trainer(config, root / "first.log")
    first.wait_until(lambda: (last_checkpoint(checkpoints) or Path("checkpoint-0")).name != "checkpoint-0", "a checkpoint")
    first.process.send_signal(signal.SIGKILL)
    first.wait()
    resume_from = last_checkpoint(checkpoints)
    resume_step = int(resume_from.name.split("-")[1])

    second = _Trainer(config, root / "second.log")
    second.wait_until(lambda: any(step >= resume_step + 2 for step in second.steps()), "two steps after resuming")
    second.process.send_signal(signal.SIGTERM)
    code = second.wait()
    return {
        "out": out,
        "first_steps": first.steps(),
        "resume_step": resume_step,
        "second_lines": second.lines,
        "second_steps": second.steps(),
        "code": code,
        "log": (root / "second.log").read_text(),
    }


def test_killed_run_relaunched_continues_from_its_last_checkpoint(killed_then_cancelled):
    run = killed_then_cancelled
    assert run["resume_step"] >= 3 and run["resume_step"] % 3 == 0
    assert max(run["first_steps"]) >= run["resume_step"]
    # The relaunch starts at the step after the checkpoint, not at 1.
    assert min(run["second_steps"]) == run["resume_step"] + 1
    # The metrics file was rewound to the checkpoint, so every step appears once.
    lines = [json.loads(line) for line in (run["out"] / "metrics.jsonl").read_text().splitlines()]
    loss_steps = [line["step"] for line in lines if line["name"] == "loss"]
    assert loss_steps == list(range(1, max(loss_steps) + 1))


def test_sigterm_leaves_a_checkpoint_and_status_cancelled(killed_then_cancelled):
    run = killed_then_cancelled
    assert run["code"] == EXIT_CANCELLED, run["log"][-3000:]
    result = json.loads((run["out"] / "result.json").read_text())
    assert result["status"] == "cancelled" and result["method"] == "sft"
    assert result["steps"] == max(run["second_steps"]) > run["resume_step"]
    checkpoint = Path(result["checkpoint"])
    assert checkpoint.name == f"checkpoint-{result['steps']}"  # written at the step where it stopped
    assert (checkpoint / "trainer_state.json").is_file() and (checkpoint / "model.safetensors").is_file()
    assert not (run["out"] / "model.safetensors").exists()  # no final model for a cancelled run
    assert "Traceback" not in run["log"]


def test_stdout_carries_only_metrics_lines(killed_then_cancelled):
    lines = [line for line in killed_then_cancelled["second_lines"] if line.strip()]
    assert lines
    for line in lines:
        record = json.loads(line)
        assert set(record) == {"step", "name", "value"}
        assert isinstance(record["step"], int) and isinstance(record["name"], str)
