"""Data safety: a snapshot changed after export is caught by its sha256 (by `manage.py verify_snapshots` and before
any training run uses it), annotations are never deleted (edits and undo keep every row, and the raw export shows
them all), and the backup recipe of platform/README.md (pg_dump, restore into a new database) gives back the same
rows and snapshot hashes."""

import json
import os
import shutil
import subprocess
import uuid

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import ProtectedError

from annotation import services
from annotation.models import Annotation, DatasetSnapshot, Project, Role, Task
from annotation.services.exports import snapshot_create
from annotation.services.integrity import file_sha256, snapshot_verify, snapshots_verify
from annotation.services.undo import annotation_undo
from tests.training.job_messages import hold_messages


def _label_all(project, annotator, choice="A"):
    made = []
    while (lease := services.task_next_for(annotator=annotator, project=project)) is not None:
        payload = {"choice": choice, "strength": 2} if lease.task.kind == "pairwise" else {"labels": [1, -1, 0], "first_error": 1}
        made.append(services.annotation_submit(assignment=lease, annotator=annotator, payload=payload,
                                                client_id=uuid.uuid4()))
    return made


@pytest.fixture
def snapshot(project, member, make_task, settings, tmp_path):
    settings.SNAPSHOT_DIR = tmp_path / "snapshots"
    services.project_update(project=project, required_annotations=1)
    for _ in range(4):
        make_task("pairwise", required=1)
    _label_all(project, member())
    return snapshot_create(project=project, format="preference")


# --- snapshots ---------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_a_snapshot_changed_after_export_is_caught_by_its_sha256(snapshot, capsys):
    original = open(snapshot.path, "rb").read()
    assert snapshot.sha256 == file_sha256(snapshot.path)[0] and snapshot.size_bytes == len(original)
    assert snapshot_verify(snapshot=snapshot).ok
    call_command("verify_snapshots")
    assert "1 snapshots checked, 0 missing or changed" in capsys.readouterr().out

    # One character changed in place, same length: only the hash can tell.
    tampered = original.replace(b"Question", b"Questiom", 1)
    assert len(tampered) == len(original) and tampered != original
    open(snapshot.path, "wb").write(tampered)
    check = snapshot_verify(snapshot=snapshot)
    assert not check.ok and check.problem == "sha256" and check.actual_sha256 != snapshot.sha256
    with pytest.raises(CommandError, match="1 snapshots checked, 1 missing or changed"):
        call_command("verify_snapshots", "--json")
    reported = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert reported == [check.as_dict()]

    open(snapshot.path, "ab").write(b'{"prompt": "x", "chosen": "y", "rejected": "z"}\n')  # a row slipped in
    assert snapshot_verify(snapshot=snapshot).problem == "sha256"
    os.remove(snapshot.path)
    assert snapshot_verify(snapshot=snapshot).problem == "missing"
    open(snapshot.path, "wb").write(original)  # the exported bytes again
    assert [c.ok for c in snapshots_verify(project=snapshot.project)] == [True]


@pytest.mark.django_db
def test_a_training_run_refuses_a_snapshot_changed_after_launch(snapshot, tmp_path, settings, monkeypatch):
    from training.models import JobStatus, TrainingMetric
    from training.services import model_register
    from training.services.runs import training_run_create, training_run_execute_now
    from tests.support.tiny import save_tiny_model

    settings.MODEL_DIR = tmp_path / "models"
    hold_messages(monkeypatch)
    base = model_register(name="tiny", backend="transformers", path=str(save_tiny_model(tmp_path / "tiny")))
    run = training_run_create(project=snapshot.project, method="dpo", base_model=base, snapshot=snapshot,
                              hyperparameters={"max_steps": 1})
    with open(snapshot.path, "a") as f:
        f.write(json.dumps({"prompt": "Say yes.", "chosen": "No.", "rejected": "Yes."}) + "\n")
    assert training_run_execute_now(run_id=run.pk) == JobStatus.FAILED
    run.refresh_from_db()
    assert run.status == JobStatus.FAILED and "changed since export" in run.error and snapshot.sha256 in run.error
    # The trainer never started: no metrics, no files, no model.
    assert not TrainingMetric.objects.filter(run=run).exists() and run.output_model is None
    assert not os.path.exists(os.path.join(run.output_dir, "run.json"))


# --- annotations -------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_annotations_are_never_deleted_edits_and_undo_keep_history(project, member, make_task, settings, tmp_path):
    settings.SNAPSHOT_DIR = tmp_path / "snapshots"
    services.project_update(project=project, required_annotations=1)
    first, second = make_task("pairwise", required=1), make_task("pairwise", required=1)
    alice, reviewer = member(), member(Role.REVIEWER)
    made = []
    for expected in (first, second):
        lease = services.task_next_for(annotator=alice, project=project)
        made.append(services.annotation_submit(assignment=lease, annotator=alice, client_id=uuid.uuid4(),
                                               payload={"choice": "A", "strength": 1}))
        assert made[-1].task == expected
    counts = [Annotation.objects.count()]

    # Two edits by the author and a reviewer's correction: every earlier row stays, linked.
    v2 = services.annotation_revise(annotation=made[0], author=alice, payload={"choice": "B", "strength": 2})
    v3 = services.annotation_revise(annotation=v2, author=alice, payload={"choice": "tie"})
    v4 = services.annotation_revise(annotation=v3, author=reviewer, payload={"choice": "A", "strength": 3},
                                    as_reviewer=True)
    counts.append(Annotation.objects.count())
    chain = [v4]
    while chain[-1].supersedes_id:
        chain.append(Annotation.objects.get(pk=chain[-1].supersedes_id))
    assert [a.pk for a in chain] == [v4.pk, v3.pk, v2.pk, made[0].pk]
    assert [a.is_current for a in chain] == [True, False, False, False]

    # Undo withdraws the second submission but keeps it, marked.
    annotation_undo(annotation=made[1], annotator=alice)
    counts.append(Annotation.objects.count())
    withdrawn = Annotation.objects.get(pk=made[1].pk)
    assert not withdrawn.is_current and "withdrawn_at" in withdrawn.details
    assert counts == [2, 5, 5]

    # The raw audit export has every revision; the training export only the current ones.
    raw = snapshot_create(project=project, format="raw")
    assert raw.row_count == 5
    assert snapshot_create(project=project, format="preference").row_count == 1

    # Nothing deletes them: not removing the member, not deleting an edited row, not deleting its author,
    # and not the admin site.
    services.membership_remove(project=project, user=alice)
    assert Annotation.objects.count() == 5
    with pytest.raises(ProtectedError):
        Annotation.objects.filter(pk=made[0].pk).delete()  # v2 supersedes it
    with pytest.raises(ProtectedError):
        alice.delete()
    from django.contrib.admin import site

    # Nor through a project or task, whose deletion would cascade to their annotations.
    for model in (Annotation, Project, Task):
        assert site._registry[model].has_delete_permission(request=None) is False, model.__name__
    assert Annotation.objects.count() == 5


# --- backup and restore ------------------------------------------------------------------------------------
def _psql_args(settings_dict: dict, dbname: str) -> tuple[list[str], dict]:
    args = ["-h", settings_dict.get("HOST") or "127.0.0.1", "-p", str(settings_dict.get("PORT") or 5432),
            "-U", settings_dict.get("USER") or "postgres"]
    env = {**os.environ}
    if settings_dict.get("PASSWORD"):
        env["PGPASSWORD"] = settings_dict["PASSWORD"]
    return args + ["-d", dbname], env


def _facts(dbname: str, settings_dict: dict) -> dict:
    """Row counts of every table, a digest of every annotation, and the snapshots' hashes, read by psql."""
    args, env = _psql_args(settings_dict, dbname)

    def query(sql: str) -> str:
        return subprocess.run(["psql", *args, "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql], env=env, check=True,
                              capture_output=True, text=True).stdout.strip()

    tables = query("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1").split()
    counts = {t: int(query(f'SELECT count(*) FROM "{t}"')) for t in tables}
    digest = query("SELECT md5(string_agg(id || ':' || payload::text || ':' || client_id || ':' || is_current, ','"
                   " ORDER BY id)) FROM annotation_annotation")
    snapshots = query("SELECT id || ' ' || sha256 || ' ' || path FROM annotation_datasetsnapshot ORDER BY id")
    return {"counts": counts, "annotations": digest, "snapshots": snapshots.splitlines()}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_backup_with_pg_dump_restores_into_a_new_database_with_the_same_rows_and_hashes(
        project, member, make_task, settings, tmp_path):
    if connection.vendor != "postgresql":
        pytest.skip("the backup recipe is pg_dump/pg_restore: run with DATABASE_URL=postgres://... to test it")
    if not (shutil.which("pg_dump") and shutil.which("pg_restore") and shutil.which("psql")):
        pytest.skip("pg_dump, pg_restore and psql are not installed")
    settings.SNAPSHOT_DIR = tmp_path / "snapshots"
    services.project_update(project=project, required_annotations=2)
    for _ in range(6):
        make_task("pairwise")
    for _ in range(3):
        make_task("steps")
    first, second = member(), member()
    made = _label_all(project, first) + _label_all(project, second, choice="B")
    services.annotation_revise(annotation=made[0], author=first, payload={"choice": "tie"})
    snapshots = [snapshot_create(project=project, format=fmt, style="standard")
                 for fmt in ("preference", "stepwise", "raw")]
    assert Annotation.objects.count() == len(made) + 1 == 19

    source = connection.settings_dict
    restored = f"{source['NAME']}_restored_{uuid.uuid4().hex[:6]}"
    dump = tmp_path / "quorum.dump"
    args, env = _psql_args(source, source["NAME"])
    # The recipe in platform/README.md: a custom-format dump, a new database, pg_restore into it.
    subprocess.run(["pg_dump", *args, "--format=custom", "--no-owner", "-f", str(dump)], env=env, check=True)
    admin_args, _ = _psql_args(source, "postgres")
    subprocess.run(["createdb", *admin_args[:-2], restored], env=env, check=True)
    try:
        restore_args, _ = _psql_args(source, restored)
        subprocess.run(["pg_restore", *restore_args, "--no-owner", "--exit-on-error", str(dump)], env=env, check=True)
        before, after = _facts(source["NAME"], source), _facts(restored, source)
        assert after == before
        assert after["counts"]["annotation_annotation"] == 19 and len(after["snapshots"]) == 3
        # The snapshot files (kept beside the dump, see the README) still hash to what the restored rows say.
        for line in after["snapshots"]:
            snapshot_id, sha, path = line.split(" ", 2)
            assert file_sha256(path)[0] == sha == DatasetSnapshot.objects.get(pk=int(snapshot_id)).sha256
        assert {s.sha256 for s in snapshots} == {line.split(" ")[1] for line in after["snapshots"]}
    finally:
        subprocess.run(["dropdb", *admin_args[:-2], "--if-exists", restored], env=env, check=False)
