"""The Python client round-trips every call against the live server; refusals carry the server's message."""

import hashlib
import http.server
import json
import threading
import uuid

import datasets
import pandas as pd
import pytest

from annotation.models import Annotation, Prompt, Response, Task
from quorum_client import (
    BadRequest,
    Client,
    ConnectionFailed,
    Forbidden,
    Job,
    NotFound,
    ServerError,
    Unauthorized,
)
from training.services import model_register
from tests.training.job_messages import hold_messages

pytestmark = pytest.mark.timeout(300)


def test_login_exchanges_a_password_for_a_token_and_a_wrong_one_is_refused(world):
    client = Client.login(world["url"], "eng", "correct-horse-battery")
    assert [p.slug for p in client.projects()] == ["lab"]
    with pytest.raises(BadRequest) as info:
        Client.login(world["url"], "eng", "wrong")
    assert info.value.status == 400 and "wrong username or password" in str(info.value)
    client.logout()
    with pytest.raises(Unauthorized):
        client.projects()


def test_projects_are_created_by_staff_and_refused_to_others_with_the_servers_message(client_for, world):
    boss = client_for("boss")
    created = boss.create_project("Second", "second", description="more", required_annotations=3)
    assert (created.slug, created.required_annotations, created.description) == ("second", 3, "more")
    assert {p.slug for p in boss.projects()} == {"lab", "second"}
    assert boss.project("second").id == created.id
    assert boss.update_project("second", description="changed").description == "changed"
    with pytest.raises(Forbidden) as info:
        client_for("engineer").create_project("Mine", "mine")
    assert info.value.status == 403 and "Only staff may create projects." in str(info.value)
    with pytest.raises(BadRequest) as info:
        boss.create_project("Dup", "not a slug!")
    assert "slug" in info.value.fields
    # A project the caller is not in does not exist for them.
    with pytest.raises(NotFound):
        client_for("outsider").project("lab")
    member = boss.add_member("second", "ann", "annotator")
    assert (member.username, member.role) == ("ann", "annotator")
    assert [m.username for m in boss.members("second")] == ["ann", "boss"]


def test_prompts_pushed_from_a_list_a_dataframe_and_a_dataset_are_stored_once(client_for, world):
    eng = client_for("engineer")
    first = eng.push_prompts("lab", ["What is 2+2?",
                                     {"prompt": "Name a prime.", "external_id": "p2", "tags": ["math"]}])
    assert (first.prompts_created, first.prompts_existing) == (2, 0)
    frame = pd.DataFrame({"prompt": ["What is 2+2?", "Why is the sky blue?"], "external_id": ["p1", "p3"]})
    again = eng.push_prompts("lab", frame)
    assert (again.prompts_created, again.prompts_existing) == (1, 1)
    ds = datasets.Dataset.from_list([{"messages": [{"role": "system", "content": "Be brief."},
                                                   {"role": "user", "content": "Define entropy."}]}])
    assert eng.push_prompts("lab", ds).prompts_created == 1
    stored = eng.prompts("lab")
    assert Prompt.objects.filter(project=world["project"]).count() == len(stored) == 4
    by_text = {p.messages[-1]["content"]: p for p in stored}
    assert by_text["Name a prime."].external_id == "p2" and by_text["Name a prime."].tags == ["math"]
    assert by_text["Define entropy."].messages[0] == {"role": "system", "content": "Be brief."}
    # Chunks are separate requests; the totals add up.
    many = eng.push_prompts("lab", [f"Question {i}?" for i in range(7)], chunk_size=3)
    assert many.prompts_created == 7 and many.records == 7


def test_a_push_of_several_batches_returns_the_totals_of_all_of_them(client_for, world):
    eng = client_for("engineer")
    rows = [f"Question {i}?" for i in range(5000)] + ["Question 0?", "Question 5000?"]
    report = eng.push_prompts("lab", rows)
    assert (report.records, report.prompts_created, report.prompts_existing) == (5002, 5001, 1)
    # `raw` (what --json prints) holds the same totals, not one batch's counts.
    assert {k: report.raw[k] for k in ("lines", "records", "prompts_created", "prompts_existing")} == {
        "lines": 5002, "records": 5002, "prompts_created": 5001, "prompts_existing": 1}
    assert report.raw["format"] == "prompts"
    again = eng.push_prompts("lab", rows[:5000])
    assert (again.prompts_created, again.prompts_existing, again.raw["prompts_existing"]) == (0, 5000, 5000)


def test_import_reports_add_every_count_the_server_sends_even_ones_the_client_does_not_know():
    from quorum_client.types import ImportReport, from_dict

    first = from_dict(ImportReport, {"format": "preference", "filename": "a.jsonl", "records": 3,
                                     "prompts_created": 2, "lines_skipped": 1, "dry_run": False})
    second = from_dict(ImportReport, {"format": "preference", "filename": "a.jsonl", "records": 4,
                                      "prompts_created": 1, "prompts_existing": 1, "lines_skipped": 2,
                                      "dry_run": False})
    total = first + second
    assert (total.records, total.prompts_created, total.prompts_existing) == (7, 3, 1)
    assert total.raw["lines_skipped"] == 3 and total.raw["prompts_created"] == 3 and total.raw["dry_run"] is False
    assert total.raw["format"] == "preference" and total.raw["filename"] == "a.jsonl"


def test_responses_and_tasks_pushed_in_bulk_round_trip_and_a_retry_writes_nothing_twice(client_for, world):
    eng = client_for("engineer")
    eng.push_prompts("lab", [{"prompt": "Capital of France?", "external_id": "q1"}])
    rows = [{"prompt_external_id": "q1", "content": "Paris.", "model_name": "me"},
            {"prompt_external_id": "q1", "content": "Lyon."}]
    responses = eng.push_responses("lab", rows)
    assert [r.content for r in responses] == ["Paris.", "Lyon."] and responses[0].model_name == "me"
    assert [r.id for r in eng.push_responses("lab", rows)] == [r.id for r in responses]
    assert Response.objects.count() == 2
    assert {r.id for r in eng.responses("lab", prompt=responses[0].prompt)} == {r.id for r in responses}

    tasks = eng.push_tasks("lab", pd.DataFrame([{"kind": "pairwise", "responses": [r.id for r in responses],
                                                 "priority": 5},
                                                {"kind": "rating", "responses": [responses[0].id], "key": "r1"}]))
    assert [(t.kind, t.responses, t.prompt) for t in tasks] == [
        ("pairwise", [responses[0].id, responses[1].id], responses[0].prompt),
        ("rating", [responses[0].id], responses[0].prompt),
    ]
    assert tasks[0].priority == 5
    assert [t.id for t in eng.push_tasks("lab", [{"kind": "rating", "responses": [responses[0].id], "key": "r1"}])] \
        == [tasks[1].id]
    assert {t.id for t in eng.tasks("lab", kind="pairwise")} == {tasks[0].id}
    assert eng.task("lab", tasks[0].id).responses == tasks[0].responses
    assert [t.id for t in eng.tasks("lab", text="lyon", gold=False)] == [tasks[0].id]
    done = eng.task_action("lab", "set_priority", filter={"kind": "rating"}, priority=9)
    assert done["task_ids"] == [tasks[1].id] and eng.task("lab", tasks[1].id).priority == 9

    # One bad item refuses the whole request, naming the item and field; nothing is written.
    with pytest.raises(BadRequest) as info:
        eng.push_tasks("lab", [{"kind": "pairwise", "responses": [responses[0].id, responses[1].id], "key": "ok"},
                               {"kind": "pairwise", "prompt_external_id": "nope", "responses": [responses[0].id]}])
    assert "items[1].prompt_external_id" in info.value.fields
    assert "no prompt with this external id" in str(info.value)
    assert Task.objects.count() == 2
    with pytest.raises(BadRequest) as info:
        eng.push_responses("lab", [{"prompt_external_id": "q1"}])
    assert "content" in str(info.value)


def test_a_403_raises_forbidden_with_the_servers_message(client_for, world):
    annotator = client_for("annotator")
    with pytest.raises(Forbidden) as info:
        annotator.push_prompts("lab", ["Sneaky?"])
    error = info.value
    assert error.status == 403 and error.message and str(error).startswith("403: ")
    assert "permission" in error.message.lower() or "only" in error.message.lower()
    with pytest.raises(Forbidden):
        annotator.create_snapshot("lab", "preference")
    assert Prompt.objects.count() == 0


def test_labelling_through_the_client_and_annotations_as_a_dataframe(client_for, world):
    eng, annotator = client_for("engineer"), client_for("annotator")
    eng.push_records("lab", [{"prompt": "2+2?", "chosen": "4", "rejected": "5"}], format="preference")
    eng.push_prompts("lab", [{"prompt": "Pick one.", "external_id": "pick"}])
    pair = eng.push_responses("lab", [{"prompt_external_id": "pick", "content": c} for c in ("Left.", "Right.")])
    eng.push_tasks("lab", [{"kind": "pairwise", "responses": [r.id for r in pair]}])

    leased = annotator.next_task("lab")
    assert leased is not None and leased.kind == "pairwise" and len(leased.responses) == 2
    client_id = uuid.uuid4()
    first = annotator.submit(leased, {"choice": "A", "strength": 2}, client_id=client_id, seconds_spent=3.5)
    again = annotator.submit(leased.assignment, {"choice": "A", "strength": 2}, client_id=client_id)
    assert first["id"] == again["id"] and Annotation.objects.filter(source="human", author__username="ann").count() == 1
    assert annotator.next_task("lab") is None  # the imported task is already labelled; one annotation each

    frame = eng.annotations_df("lab")
    assert isinstance(frame, pd.DataFrame) and len(frame) == 2
    mine = frame[frame["author"] == "ann"].iloc[0]
    # The payload is stored in the task's own order, whatever order the annotator was shown.
    canonical = "A" if leased.responses[0]["id"] == pair[0].id else "B"
    assert mine["task"] == leased.task and mine["payload.choice"] == canonical and mine["seconds_spent"] == 3.5
    assert {"id", "kind", "source", "payload", "guideline_version", "created_at"} <= set(frame.columns)
    # Annotators see only their own work.
    assert [a.author for a in annotator.annotations("lab")] == ["ann"]


def test_snapshots_are_created_downloaded_with_their_sha256_and_loaded_as_datasets(client_for, world, tmp_path):
    eng = client_for("engineer")
    rows = [{"prompt": f"Q{i}?", "chosen": f"Good answer {i}.", "rejected": f"Bad {i}."} for i in range(5)]
    eng.push_records("lab", rows)
    snap = eng.create_snapshot("lab", "preference")
    assert snap.row_count == 5 and len(snap.sha256) == 64 and snap.format == "preference"
    path = eng.download_snapshot("lab", snap, tmp_path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == snap.sha256
    assert eng.snapshot("lab", snap.sha256[:10]).id == snap.id
    assert [s.id for s in eng.snapshots("lab")] == [snap.id]

    ds = eng.snapshot_dataset("lab", snap.id, cache_dir=tmp_path / "cache")
    assert isinstance(ds, datasets.Dataset) and len(ds) == 5
    assert {"prompt", "chosen", "rejected"} <= set(ds.column_names)
    assert sorted(r["chosen"][-1]["content"] for r in ds) == sorted(r["chosen"] for r in rows)

    parquet = eng.create_snapshot("lab", "preference", file_format="parquet", style="standard")
    table = eng.snapshot_dataset("lab", parquet, cache_dir=tmp_path / "cache")
    assert len(table) == 5 and sorted(table["chosen"]) == sorted(r["chosen"] for r in rows)
    with pytest.raises(NotFound):
        eng.snapshot("lab", 999999)


def test_a_snapshot_is_found_by_id_or_by_any_sha256_prefix_of_8_digits_or_more_in_its_project(client_for, world):
    from annotation import services
    from annotation.models import DatasetSnapshot
    from quorum_client import AmbiguousSnapshot

    eng = client_for("engineer")
    eng.push_records("lab", [{"prompt": "Q?", "chosen": "A.", "rejected": "B."}])
    first = eng.create_snapshot("lab", "preference")
    again = eng.create_snapshot("lab", "preference")
    # The same rows give the same bytes: equal sha256s are one content, not an ambiguity; the newest is given.
    assert again.sha256 == first.sha256 and again.id > first.id
    assert eng.snapshot("lab", first.sha256[:8]).id == again.id
    assert eng.snapshot("lab", str(first.id)).id == first.id == eng.snapshot("lab", f"id:{first.id}").id

    other = services.project_create(name="Other", slug="other", created_by=world["users"]["boss"])

    def stored(project, sha256):
        return DatasetSnapshot.objects.create(project=project, format="preference", sha256=sha256,
                                              path="/nonexistent/data.jsonl").pk

    digits = stored(world["project"], "1234567890" + "a" * 54)
    mine = stored(world["project"], "abcdef01" + "1" * 56)
    stored(other, "abcdef01" + "2" * 56)
    a, b = stored(world["project"], "fedcba98" + "0" * 56), stored(world["project"], "fedcba98" + "f" * 56)
    # Digits only, 8 or more: a sha256 prefix, not an id.
    for prefix in ("12345678", "123456789", "1234567890", "1234567890AAAA"):
        assert eng.snapshot("lab", prefix).id == digits, prefix
    # Another project's snapshots are not looked at, so they make nothing ambiguous.
    assert eng.snapshot("lab", "abcdef01").id == mine
    with pytest.raises(AmbiguousSnapshot) as info:
        eng.snapshot("lab", "fedcba98")
    assert {c.id for c in info.value.candidates} == {a, b}
    assert "ambiguous" in str(info.value) and "fedcba9800000000" in str(info.value) and "fedcba98ffffffff" in str(
        info.value)
    assert eng.snapshot("lab", "fedcba98f").id == b
    with pytest.raises(ValueError, match="at least 8 hex digits"):
        eng.snapshot("lab", "abc1234")
    with pytest.raises(ValueError, match="neither a snapshot id"):
        eng.snapshot("lab", "data.jsonl")
    with pytest.raises(NotFound):
        eng.snapshot("lab", "1234567")  # fewer than 8 digits: an id
    with pytest.raises(NotFound):
        eng.snapshot("lab", "abcdef012")

    # The server reads references the same way, in the project only.
    found = eng.request("GET", "projects/lab/snapshots/", params={"sha256_prefix": "12345678"}).json()
    assert [r["id"] for r in found["results"]] == [digits]
    with pytest.raises(BadRequest) as info:
        eng.request("GET", "projects/lab/snapshots/", params={"sha256_prefix": "abc"})
    assert "sha256_prefix" in info.value.fields
    for ref, problem in (("abcdef01", None), ("fedcba98", "ambiguous"), ("abcdef0122", "no such snapshot"),
                         ("12345678", None), ("abc1234", "at least 8 hex digits")):
        with pytest.raises(BadRequest) as info:  # the model does not exist: refused whatever the snapshot
            eng.request("POST", "projects/lab/training-runs/", json={
                "method": "dpo", "base_model": "nope", "snapshot": ref, "client_id": str(uuid.uuid4())})
        assert "base_model" in info.value.fields
        assert (problem in str(info.value.fields["snapshot"])) if problem else "snapshot" not in info.value.fields, ref


def test_models_are_listed_and_a_bad_training_launch_names_the_fields(client_for, world, tiny_model_dir):
    boss = client_for("boss")
    model = boss.register_model("tiny", "transformers", path=str(tiny_model_dir), roles=["policy"])
    child = boss.register_model("tiny-child", "transformers", path=str(tiny_model_dir), base_model="tiny")
    assert [m.name for m in client_for("annotator").models()] == ["tiny", "tiny-child"]
    assert boss.model("tiny-child").lineage[:2] == ["tiny-child", "tiny"] or boss.model(child.id).base_model == "tiny"
    assert boss.model(model.id).roles == ["policy"]

    eng = client_for("engineer")
    eng.push_records("lab", [{"prompt": "Q?", "chosen": "A.", "rejected": "B."}])
    snap = eng.create_snapshot("lab", "preference")
    with pytest.raises(BadRequest) as info:
        eng.train("lab", method="dpo", base_model="tiny", snapshot=snap.sha256, hyperparameters={"beta": "strong"})
    assert "beta" in info.value.fields
    with pytest.raises(BadRequest) as info:
        eng.train("lab", method="kto", base_model="tiny", snapshot=snap)
    assert "snapshot" in info.value.fields and "unpaired" in str(info.value)


@pytest.mark.slow
def test_generation_and_training_jobs_are_followed_to_their_end(client_for, world, tiny_model_dir, inline_worker):
    model_register(name="tiny", backend="transformers", path=str(tiny_model_dir),
                   sampling={"max_new_tokens": 6, "temperature": 1.0})
    eng = client_for("engineer")
    eng.push_prompts("lab", ["One?", "Two?"])
    job = eng.generate("lab", "tiny", n=2)
    assert isinstance(job, Job) and job.kind == "generation" and job.ref == f"gen-{job.id}"
    assert job.wait(timeout=240, poll_interval=0.3, progress=True) == "succeeded"
    assert job.progress() == (4, 4) and job.info.tasks_created == 2
    assert len(eng.tasks("lab", kind="pairwise")) == 2

    eng.push_records("lab", [{"messages": [{"role": "user", "content": f"Say {i}."},
                                           {"role": "assistant", "content": f"{i}."}]} for i in range(4)])
    snap = eng.create_snapshot("lab", "sft")
    run = eng.train("lab", method="sft", base_model="tiny", snapshot=snap.sha256[:12],
                    hyperparameters={"max_steps": 2, "batch_size": 2, "max_length": 32, "num_threads": 1})
    assert run.status == "queued"
    assert run.wait(timeout=240, poll_interval=0.5) == "succeeded"
    assert run.progress() == (2, 2) and run.info.output_model
    assert run.info.output_model in {m.name for m in eng.models()}
    assert eng.job("lab", "training", run.id).status == "succeeded"
    assert [j.id for j in eng.training_runs("lab")] == [run.id]
    assert [j.id for j in eng.generation_jobs("lab")] == [job.id]


# --- retries and connection failures, against a small real HTTP server -----------------------
class _Flaky(http.server.BaseHTTPRequestHandler):
    failures_left = 0
    seen: list = []
    bodies: list = []

    def _answer(self):
        type(self).seen.append(self.command)
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            raw = self.rfile.read(length)
            try:
                type(self).bodies.append(json.loads(raw))
            except ValueError:  # an upload (multipart)
                type(self).bodies.append(raw)
        if type(self).failures_left > 0:
            type(self).failures_left -= 1
            self.send_response(503)
            self.end_headers()
            self.wfile.write(b"busy")
            return
        body = b'{"count": 1, "next": null, "results": [{"id": 1, "name": "P", "slug": "p"}]}'
        if "/imports/" in self.path:
            body = b'{"format": "prompts", "records": 1, "prompts_created": 1}'
        if "/generation-jobs/" in self.path:
            body = b'{"id": 7, "model": "tiny", "status": "queued", "done": 0, "total": 4}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def flaky_server():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Flaky)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Flaky.seen, _Flaky.bodies = [], []
    yield server, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_reads_are_retried_after_5xx_and_writes_are_not(flaky_server):
    _, url = flaky_server
    client = Client(url, token="t", retries=3, backoff=0.01)
    _Flaky.failures_left = 2
    assert [p.slug for p in client.projects()] == ["p"]
    assert _Flaky.seen == ["GET", "GET", "GET"]
    _Flaky.seen, _Flaky.failures_left = [], 5
    with pytest.raises(ServerError) as info:
        client.create_snapshot("p", "preference")
    assert info.value.status == 503 and _Flaky.seen == ["POST"]
    _Flaky.seen, _Flaky.failures_left = [], 10
    with pytest.raises(ServerError):
        client.projects()
    assert len(_Flaky.seen) == 4  # the first try and three retries
    # An import is idempotent on the server, so the client repeats it.
    _Flaky.seen, _Flaky.failures_left = [], 1
    assert client.push_prompts("p", ["Again?"]).prompts_created == 1 and _Flaky.seen == ["POST", "POST"]


def test_a_launch_is_retried_with_the_same_client_id(flaky_server):
    """A job launch is a write, but it carries a client id the server deduplicates on, so the client may repeat it
    after a 503 without starting a second job."""
    _, url = flaky_server
    client = Client(url, token="t", retries=3, backoff=0.01)
    _Flaky.failures_left = 2
    job = client.generate("p", "tiny", n=2)
    assert job.id == 7 and _Flaky.seen == ["POST", "POST", "POST"]
    ids = {body["client_id"] for body in _Flaky.bodies}
    assert len(ids) == 1 and uuid.UUID(ids.pop())
    # The next launch is a new one: a new id.
    client.generate("p", "tiny", n=2)
    assert _Flaky.bodies[-1]["client_id"] != _Flaky.bodies[0]["client_id"]


def test_an_unreachable_server_raises_connection_failed():
    client = Client("http://127.0.0.1:9", token="t", retries=1, backoff=0.01, timeout=2)
    with pytest.raises(ConnectionFailed) as info:
        client.projects()
    assert "cannot reach http://127.0.0.1:9" in str(info.value)


def test_hugging_face_datasets_go_in_as_they_are_on_disk_and_snapshots_come_with_a_card(client_for, world, tmp_path):
    eng = client_for("engineer")
    rows = [{"prompt": f"Q{i}?", "chosen": f"Yes {i}.", "rejected": f"No {i}."} for i in range(4)]
    folder = tmp_path / "prefs"
    datasets.Dataset.from_list(rows).save_to_disk(str(folder))
    report = eng.import_dataset("lab", folder)
    assert report.format == "preference" and report.records == 4 and report.annotations_created == 4
    assert eng.import_dataset("lab", folder).annotations_existing == 4
    parquet = tmp_path / "prompts.parquet"
    datasets.Dataset.from_list([{"prompt": "From parquet?"}]).to_parquet(str(parquet))
    assert eng.import_dataset("lab", parquet, format="prompts").prompts_created == 1

    snap = eng.create_snapshot("lab", "preference")
    card = eng.snapshot_card("lab", snap)
    assert snap.sha256 in card and "4" in card
    with pytest.raises(Forbidden):
        client_for("annotator").import_dataset("lab", parquet)


def test_a_snapshot_saved_to_a_folder_comes_with_a_card_that_names_its_data_file(client_for, world, tmp_path):
    import yaml

    eng = client_for("engineer")
    eng.push_records("lab", [{"prompt": f"Q{i}?", "chosen": f"Yes {i}.", "rejected": f"No {i}."} for i in range(3)])
    snap = eng.create_snapshot("lab", "preference", file_format="parquet")
    data, card = eng.save_snapshot("lab", snap, f"{tmp_path}/prefs/")
    assert (data, card) == (tmp_path / "prefs" / "data.parquet", tmp_path / "prefs" / "README.md")
    assert hashlib.sha256(data.read_bytes()).hexdigest() == snap.sha256
    data, card = eng.save_snapshot("lab", snap, tmp_path / "named" / "v1.parquet")
    assert card == tmp_path / "named" / "README.md"
    header = yaml.safe_load(card.read_text().split("---\n")[1])
    assert header["configs"][0]["data_files"] == [{"split": "train", "path": "v1.parquet"}]
    assert header["quorum"]["sha256"] == snap.sha256
    with pytest.raises(BadRequest) as info:
        eng.snapshot_card("lab", snap, data_file="../elsewhere.parquet")
    assert "data_file" in info.value.fields


def test_a_round_is_started_followed_and_cancelled_through_the_client(client_for, world, tiny_model_dir, monkeypatch):
    # The round's worker is not the point here: its message is dropped and the round stays queued until cancelled.
    hold_messages(monkeypatch, "training.round_advance")
    model_register(name="tiny", backend="transformers", path=str(tiny_model_dir), roles=["policy", "judge"])
    eng = client_for("engineer")
    eng.push_prompts("lab", [f"Say {i}." for i in range(4)])
    with pytest.raises(BadRequest) as info:
        eng.start_round("lab", policy="tiny", label_mode="robots")
    assert "label_mode" in str(info.value)
    job = eng.start_round("lab", policy="tiny", judge="tiny", config={"prompts_per_round": 2, "eval_prompts": 1})
    assert (job.kind, job.id, job.ref, job.status) == ("round", 1, "round-1", "queued")
    assert job.progress() == (0, 6) and job.info.policy == "tiny"
    from quorum_client import JobTimeout

    with pytest.raises(JobTimeout):
        job.wait(timeout=0.5, poll_interval=0.1, progress=False)
    assert job.cancel().status == "cancelled"
    assert job.wait(timeout=5) == "cancelled"
    assert [r.id for r in eng.rounds("lab")] == [1] and eng.job("lab", "round", 1).info.lineage["policy"] == "tiny"
    with pytest.raises(Forbidden):
        client_for("annotator").start_round("lab", policy="tiny", judge="tiny")


PRINCIPLE = {"key": "honest", "name": "Honest", "critique_request": "Point out anything dishonest.",
             "revision_request": "Rewrite the response to be honest.",
             "comparison_question": "Which of these assistant responses is more honest?"}


@pytest.mark.slow
def test_an_ai_judge_job_labels_tasks_under_the_constitution(client_for, world, tiny_model_dir, inline_worker):
    model_register(name="tiny-judge", backend="transformers", path=str(tiny_model_dir), roles=["policy", "judge"],
                   sampling={"max_new_tokens": 6, "temperature": 0.0})
    boss, eng = client_for("boss"), client_for("engineer")
    eng.push_prompts("lab", [{"prompt": f"Is {i} even?", "external_id": f"q{i}"} for i in range(3)])
    responses = eng.push_responses("lab", [{"prompt_external_id": f"q{i}", "content": c}
                                           for i in range(3) for c in ("Yes.", "No.")])
    eng.push_tasks("lab", [{"kind": "pairwise", "responses": [a.id, b.id]}
                           for a, b in zip(responses[::2], responses[1::2], strict=True)])
    with pytest.raises(BadRequest) as info:
        eng.feedback("lab", "judge", "tiny-judge")
    assert "constitution" in str(info.value)
    with pytest.raises(Forbidden):
        eng.create_constitution("lab", [PRINCIPLE])
    assert boss.create_constitution("lab", [PRINCIPLE], note="first")["number"] == 1
    assert boss.create_guideline("lab", "# Be exact", note="v1")["number"] == 1

    job = eng.feedback("lab", "judge", "tiny-judge")
    assert (job.kind, job.ref) == ("feedback", f"fb-{job.id}") and job.info.constitution_version == 1
    assert job.wait(timeout=240, poll_interval=0.3) == "succeeded"
    assert job.progress() == (3, 3)
    ai = [a for a in eng.annotations("lab") if a.source == "ai"]
    assert len(ai) == 3 and all(a.constitution_version == 1 for a in ai)
    assert isinstance(eng.ai_agreement("lab"), dict)
    assert [j.id for j in eng.feedback_jobs("lab")] == [job.id]


def test_files_import_as_they_are_tasks_can_be_skipped_and_a_cancelled_run_relaunched(
        client_for, world, tmp_path, tiny_model_dir, monkeypatch):
    hold_messages(monkeypatch, "training.training_run_execute")  # the runs stay queued
    eng, annotator = client_for("engineer"), client_for("annotator")
    path = tmp_path / "sft.jsonl"
    path.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Say {i}."},
                                                     {"role": "assistant", "content": f"{i}."}]}) + "\n"
                            for i in range(3)))
    report = eng.import_file("lab", path)
    assert (report.format, report.filename, report.tasks_created) == ("sft", "sft.jsonl", 3)
    eng.push_prompts("lab", [{"prompt": "Rate me.", "external_id": "r"}])
    response = eng.push_responses("lab", [{"prompt_external_id": "r", "content": "Rated."}])[0]
    eng.push_tasks("lab", [{"kind": "rating", "responses": [response.id]}])
    leased = annotator.next_task("lab")
    assert leased.kind == "rating"
    assert annotator.skip(leased, "unsure")["state"] == "skipped"
    assert annotator.next_task("lab") is None  # a skipped task is not handed back to the same person

    model_register(name="tiny", backend="transformers", path=str(tiny_model_dir))
    snap = eng.create_snapshot("lab", "sft")
    run = eng.train("lab", method="sft", base_model="tiny", snapshot=snap, hyperparameters={"max_steps": 1})
    assert run.cancel().status == "cancelled"
    assert run.relaunch().status == "queued" and run.info.attempts == 1
    assert run.cancel().wait(timeout=5) == "cancelled"


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        type(self).received.append((dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_webhooks_are_registered_pinged_and_their_signature_checks_out(client_for, world, inline_worker, settings):
    from quorum_client.webhooks import verify

    settings.WEBHOOK_ALLOW_PRIVATE = ["127.0.0.1"]  # the receiver below listens on loopback

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    _Receiver.received = []
    try:
        boss = client_for("boss")
        url = f"http://127.0.0.1:{server.server_address[1]}/hook"
        hook = boss.create_webhook("lab", url, ["snapshot.created"], description="CI")
        assert len(hook["secret"]) >= 16 and "secret" not in boss.webhooks("lab")[0]
        with pytest.raises(Forbidden):
            client_for("engineer").create_webhook("lab", url, ["snapshot.created"])
        with pytest.raises(BadRequest) as info:
            boss.create_webhook("lab", url, ["moon.landed"])
        assert "events" in info.value.fields
        delivery = boss.ping_webhook("lab", hook["id"])
        for _ in inline_worker:
            _.join(timeout=60)
        [(headers, body)] = _Receiver.received
        assert verify(hook["secret"], body=body, headers=headers)
        assert not verify("another-secret-0123456789", body=body, headers=headers)
        assert not verify(hook["secret"], body=body + b" ", headers=headers)
        assert [d["status"] for d in boss.deliveries("lab", webhook=hook["id"])] == ["succeeded"]
        assert boss.deliveries("lab")[0]["id"] == delivery["id"]
        assert boss.update_webhook("lab", hook["id"], active=False)["active"] is False
        boss.delete_webhook("lab", hook["id"])
        assert boss.webhooks("lab") == []
    finally:
        server.shutdown()
        server.server_close()
