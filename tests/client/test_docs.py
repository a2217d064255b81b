"""The docs cannot rot: the API reference matches the code's schema, and the worked example runs end to end
(prompts -> generation -> labels -> snapshot -> DPO -> a registered model) against the live server."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from training.models import JobStatus, Model, TrainingRun
from training.services import model_register

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
sys.path.insert(0, str(DOCS))

import api_reference  # noqa: E402


@pytest.mark.django_db
def test_the_committed_api_reference_is_up_to_date():
    rendered = api_reference.render(api_reference.generate_schema())
    committed = (DOCS / "api.md").read_text()
    assert committed == rendered, "docs/api.md is out of date: run .venv/bin/python docs/api_reference.py"


@pytest.mark.django_db
def test_the_api_reference_documents_the_endpoints_the_client_uses():
    text = api_reference.render(api_reference.generate_schema())
    for endpoint in (
        "POST /api/v1/auth/token/", "GET /api/v1/projects/", "POST /api/v1/projects/{slug}/imports/",
        "POST /api/v1/projects/{slug}/responses/bulk/", "POST /api/v1/projects/{slug}/tasks/bulk/",
        "POST /api/v1/projects/{slug}/next-task/", "POST /api/v1/assignments/{assignment_id}/submit/",
        "GET /api/v1/projects/{slug}/annotations/", "POST /api/v1/projects/{slug}/snapshots/",
        "GET /api/v1/projects/{slug}/snapshots/{snapshot_id}/download/", "GET /api/v1/models/",
        "POST /api/v1/projects/{slug}/generation-jobs/", "POST /api/v1/projects/{slug}/training-runs/",
        "POST /api/v1/projects/{slug}/training-runs/{run_id}/cancel/",
    ):
        assert f"### `{endpoint}`" in text, endpoint
    # Field tables carry the serializers' constraints and descriptions.
    assert "| `key` | string |  | Idempotency key" in text
    assert '<a id="schema-snapshotoutput"></a>' in text and "| `sha256` | string |" in text


def test_every_doc_page_linked_from_the_index_exists():
    index = (DOCS / "README.md").read_text()
    import re

    links = re.findall(r"\]\(([^)#]+)\)", index)
    assert links, "the index links nothing"
    for link in links:
        if not link.startswith("http"):
            assert (DOCS / link).exists(), link


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_prompts_to_dpo_example_runs_end_to_end(world, tiny_model_dir, inline_worker):
    model_register(name="tiny", backend="transformers", path=str(tiny_model_dir), roles=["policy"])
    example = DOCS / "examples" / "prompts_to_dpo.py"
    argv = ["prompts_to_dpo.py", "--url", world["url"], "--token", world["tokens"]["boss"], "--model", "tiny",
            "--max-new-tokens", "8", "--hyperparameters",
            json.dumps({"max_steps": 2, "batch_size": 2, "max_length": 64, "num_threads": 1})]
    # In its own process, as a user runs it; and it must not need Django.
    driver = textwrap.dedent(f"""
        import runpy, sys
        sys.argv = {argv!r}
        runpy.run_path({str(example)!r}, run_name="__main__")
        assert "django" not in sys.modules, "the example imported Django"
    """)
    done = subprocess.run([sys.executable, "-c", driver], cwd=ROOT, capture_output=True, text=True, timeout=540,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": str(world["tmp"])})
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    run = TrainingRun.objects.get(pk=summary["run"])
    assert run.status == JobStatus.SUCCEEDED and run.method == "dpo" and run.snapshot_sha256 == summary["snapshot"]
    trained = Model.objects.get(name=summary["model"])
    assert trained.parent_run_id == run.pk and trained.base_model.name == "tiny"
    assert "labelled 8 tasks" in done.stdout
