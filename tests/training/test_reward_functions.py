"""PPO's reward_function names a registered reward function (built in, or installed through the
`quorum.reward_functions` entry-point group), never a `module:function` to import: any other name is refused
by the config, the API, the launch form and the trainer process, which imports nothing for it."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before transformers/datasets are imported

import pytest  # noqa: E402
from rest_framework.test import APIClient  # noqa: E402

from annotation import services as annotation_services  # noqa: E402
from annotation.models import DatasetSnapshot  # noqa: E402
from tests.support.snapshots import preference_rows, sft_rows, write_jsonl  # noqa: E402
from training.models import TrainingRun  # noqa: E402
from training.services import model_register  # noqa: E402
from training.trainers import ppo, rewards  # noqa: E402
from training.trainers.cli import EXIT_INVALID_CONFIG  # noqa: E402
from training.trainers.config import ConfigError, load_config  # noqa: E402
from tests.training.job_messages import hold_messages  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
REFUSED = ["os:system", "subprocess:run", "tests.support.snapshots:target_token_reward", "builtins:eval", ""]
PROBE = '''
import os, pathlib
pathlib.Path(os.environ["QUORUM_PROBE_MARKER"]).write_text("imported")

def reward(completion_ids=(), **kwargs):
    return [float(len(c)) for c in completion_ids]
'''


def _ppo(**extra) -> dict:
    return {"model": "m", "data": "d", "output_dir": "o", **extra}


def _probe_package(root: Path) -> Path:
    """An installed distribution (a dist-info on the path) whose module records being imported."""
    root.mkdir()
    (root / "quorum_probe_rewards.py").write_text(PROBE)
    info = root / "quorum_probe_rewards-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: quorum-probe-rewards\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[quorum.reward_functions]\nprobe_length = quorum_probe_rewards:reward\n")
    return root


@pytest.mark.parametrize("name", REFUSED)
def test_a_name_that_is_not_registered_is_refused_by_the_config(name):
    with pytest.raises(ConfigError) as refused:
        load_config(ppo.PPOConfig, _ppo(reward_function=name))
    assert any(p.startswith(f"reward_function: {name!r} is not a registered reward function") for p in refused.value.problems)
    assert "repetition_penalty" in str(refused.value)  # the message says what is registered


def test_built_in_and_installed_reward_functions_are_registered_and_installed_ones_load_only_when_named(tmp_path, monkeypatch):
    marker = tmp_path / "imported"
    monkeypatch.setenv("QUORUM_PROBE_MARKER", str(marker))
    monkeypatch.syspath_prepend(str(_probe_package(tmp_path / "site")))
    assert {"repetition_penalty", "probe_length"} <= set(rewards.names())
    load_config(ppo.PPOConfig, _ppo(reward_function="probe_length"))
    load_config(ppo.PPOConfig, _ppo(reward_function="repetition_penalty"))
    assert not marker.exists()  # listed and validated without being imported
    assert rewards.load("probe_length")(completion_ids=[[1, 2], [3]]) == [2.0, 1.0]
    assert marker.exists()
    assert rewards.load("repetition_penalty")(completion_ids=[[1, 2, 3, 4], [5, 5, 5, 5, 5]]) == [0.0, pytest.approx(-2 / 3)]
    with pytest.raises(LookupError):
        rewards.load("quorum_probe_rewards:reward")  # the entry point's target is not a name


def test_the_trainer_process_refuses_a_hand_written_config_before_importing_anything(tiny_model, tmp_path):
    """Even launched by hand, the trainer exits 2 on an unregistered name and never imports it."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "quorum_probe_rewards.py").write_text(PROBE)  # importable, but not registered
    marker = tmp_path / "imported"
    data = write_jsonl(tmp_path / "preference.jsonl", preference_rows())
    config = tmp_path / "run.json"
    config.write_text(json.dumps({
        "model": str(tiny_model), "data": str(data), "output_dir": str(tmp_path / "out"), "max_steps": 1,
        "batch_size": 2, "mini_batch_size": 2, "ppo_epochs": 1, "max_new_tokens": 4, "num_threads": 1,
        "reward_function": "quorum_probe_rewards:reward",
    }))  # fmt: skip
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), str(ROOT)]), "QUORUM_PROBE_MARKER": str(marker)}
    result = subprocess.run([sys.executable, "-m", "training.trainers.ppo", "--config", str(config)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert result.returncode == EXIT_INVALID_CONFIG, result.stderr[-3000:]
    assert "'quorum_probe_rewards:reward' is not a registered reward function" in result.stderr
    assert not marker.exists()
    assert not (tmp_path / "out" / "metrics.jsonl").exists()


# --- the platform ------------------------------------------------------------------------------
@pytest.fixture
def world(db, make_user, tmp_path, tiny_model, settings, monkeypatch):
    settings.MODEL_DIR = tmp_path / "models"
    hold_messages(monkeypatch)
    engineer = make_user("engineer")
    project = annotation_services.project_create(name="P", slug="p", created_by=make_user("admin"))
    annotation_services.membership_set(project=project, user=engineer, role="engineer")
    path = write_jsonl(tmp_path / "sft.jsonl", sft_rows())
    snapshot = DatasetSnapshot.objects.create(project=project, format="sft", path=str(path), row_count=8,
                                              sha256=hashlib.sha256(path.read_bytes()).hexdigest())  # fmt: skip
    model_register(name="tiny", backend="transformers", path=str(tiny_model))
    return {"engineer": engineer, "snapshot": snapshot}


def test_the_api_refuses_an_unregistered_reward_function_with_a_field_message(world):
    api = APIClient()
    api.force_authenticate(world["engineer"])
    body = {"method": "ppo", "base_model": "tiny", "snapshot": world["snapshot"].sha256,
            "hyperparameters": {"reward_function": "os:system", "max_steps": 1}}  # fmt: skip
    refused = api.post("/api/v1/projects/p/training-runs/", body, format="json")
    assert refused.status_code == 400, refused.content
    (message,) = refused.json()["fields"]["reward_function"]
    assert message.startswith("'os:system' is not a registered reward function")
    assert not TrainingRun.objects.exists()

    body["hyperparameters"]["reward_function"] = "repetition_penalty"
    accepted = api.post("/api/v1/projects/p/training-runs/", body, format="json")
    assert accepted.status_code == 201, accepted.content
    assert TrainingRun.objects.get().hyperparameters["reward_function"] == "repetition_penalty"


def test_the_launch_form_refuses_an_unregistered_reward_function(world, client):
    client.force_login(world["engineer"])
    page = client.post("/training/p/p/runs/", {"method": "ppo", "base_model": "tiny", "snapshot": world["snapshot"].pk,
                                               "hp_reward_function": "os:system", "hp_max_steps": "1"})  # fmt: skip
    assert page.status_code == 400
    assert "is not a registered reward function" in page.content.decode()
    assert not TrainingRun.objects.exists()
