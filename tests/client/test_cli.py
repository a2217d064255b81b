"""The `quorum` command: exit codes a script can rely on (0 ok, 1 refused with the server's message on stderr,
2 usage, 3 no connection, 4 a waited-for job did not succeed), and --json output that parses."""

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from annotation.models import Prompt
from quorum_client.cli import main
from training.services import model_register
from tests.training.job_messages import hold_messages

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def cli(world, tmp_path, monkeypatch, capsys):
    """cli(*args, role=...) -> (exit code, stdout, stderr), run in this process through main()."""
    monkeypatch.setenv("QUORUM_CONFIG", str(tmp_path / "config.json"))
    for name in ("QUORUM_URL", "QUORUM_TOKEN", "QUORUM_PROJECT"):
        monkeypatch.delenv(name, raising=False)

    def run(*args, role: str | None = "engineer", stdin: str | None = None):
        argv = [str(a) for a in args]
        if role:
            argv = ["--url", world["url"], "--token", world["tokens"][role], *argv]
        if stdin is not None:
            import io

            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        capsys.readouterr()
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse on bad usage
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_login_stores_the_url_and_token_privately_and_later_commands_use_them(cli, world, tmp_path):
    code, out, err = cli("login", "--url", world["url"], "--username", "eng", "--password-stdin", "--project", "lab",
                         "--json", role=None, stdin="correct-horse-battery\n")
    assert code == 0, err
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["url"] == world["url"] and saved["project"] == "lab" and len(saved["token"]) == 40
    assert stat.S_IMODE(os.stat(tmp_path / "config.json").st_mode) == 0o600
    assert json.loads(out)["user"] == "eng" and saved["token"] not in out
    code, out, _ = cli("projects", "--json", role=None)
    assert code == 0 and [p["slug"] for p in json.loads(out)] == ["lab"]
    # The stored token is never sent to another server.
    code, _, err = cli("--url", "http://127.0.0.1:9", "projects", role=None)
    assert code == 2 and "not logged in" in err
    from quorum_client import Client

    assert Client("http://127.0.0.1:9").token == "" and Client().token == saved["token"]
    code, _, err = cli("login", "--url", world["url"], "--username", "eng", "--password-stdin", role=None,
                       stdin="wrong\n")
    assert code == 1 and "wrong username or password" in err
    code, out, _ = cli("logout", "--json", role=None)
    assert code == 0 and not (tmp_path / "config.json").exists()
    code, _, err = cli("projects", role=None)
    assert code == 2 and "not logged in" in err


def test_push_prompts_from_a_file_prints_what_it_wrote(cli, world, tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": "What is 2+2?", "id": "a"}\n{"prompt": "Name a prime."}\n')
    code, out, err = cli("push", "prompts", path, "--project", "lab", "--json")
    assert code == 0, err
    assert json.loads(out)["prompts_created"] == 2
    code, out, _ = cli("push", "prompts", path, "-p", "lab")
    assert code == 0 and "prompts existing 2" in out
    csv = tmp_path / "more.csv"
    csv.write_text("prompt,external_id\nWhy?,w\n")
    assert cli("push", "prompts", csv, "-p", "lab")[0] == 0
    assert Prompt.objects.count() == 3
    code, out, _ = cli("prompts", "lab", "--json")
    assert code == 0 and {p["external_id"] for p in json.loads(out)} == {"a", "", "w"}


def test_a_push_larger_than_one_batch_prints_the_totals_of_every_batch(cli, world, tmp_path):
    # 5,001 rows go as two requests (5,000 + 1); the last row repeats the first, across the batch boundary.
    rows = [{"prompt": f"Question {i}?"} for i in range(5000)] + [{"prompt": "Question 0?"}]
    path = tmp_path / "many.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, err = cli("push", "prompts", path, "-p", "lab")
    assert code == 0, err
    assert out == "lab: records 5001, prompts created 5000, prompts existing 1\n"
    code, out, err = cli("push", "prompts", path, "-p", "lab", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert (report["lines"], report["records"], report["prompts_created"], report["prompts_existing"]) == (
        5001, 5001, 0, 5001)
    # Exactly one batch: one request, nothing left over for an empty second one.
    path.write_text("".join(json.dumps({"prompt": f"Question {i}?"}) + "\n" for i in range(1, 5001)))
    code, out, err = cli("push", "prompts", path, "-p", "lab")
    assert code == 0, err
    assert out == "lab: records 5000, prompts created 1, prompts existing 4999\n"
    assert Prompt.objects.filter(project=world["project"]).count() == 5001


def test_a_bad_request_exits_1_with_the_servers_message(cli, world, tmp_path):
    code, out, err = cli("train", "lab", "--method", "dpo", "--snapshot", "deadbeefdeadbeef", "--base-model", "nope")
    assert code == 1 and out == ""
    assert err.startswith("error: 400") and "no such snapshot" in err and "base_model" in err
    # A bad line in a pushed file: the server names the line.
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "ok"}\n{"nothing": 1}\n')
    code, _, err = cli("push", "prompts", bad, "-p", "lab")
    assert code == 1 and "line 2" in err
    # A role that may not: 403, and its message.
    code, _, err = cli("push", "prompts", bad, "-p", "lab", role="annotator")
    assert code == 1 and err.startswith("error: 403")


def test_usage_and_connection_errors_have_their_own_exit_codes(cli, world, tmp_path):
    assert cli("frobnicate")[0] == 2
    assert cli("train", "lab", "--method", "dpo")[0] == 2  # required options missing
    code, _, err = cli("push", "prompts", tmp_path / "missing.jsonl", "-p", "lab")
    assert code == 2 and "no such file" in err
    code, _, err = cli("push", "prompts", tmp_path / "missing.jsonl")
    assert code == 2
    code, _, err = cli("--url", "http://127.0.0.1:9", "--token", "x", "--timeout", "2", "models", role=None)
    assert code == 3 and "cannot reach" in err


def test_export_writes_the_snapshot_file_and_lists_parse_as_json(cli, world, tmp_path):
    records = tmp_path / "prefs.jsonl"
    records.write_text("".join(json.dumps({"prompt": f"Q{i}?", "chosen": f"Yes {i}.", "rejected": f"No {i}."}) + "\n"
                               for i in range(3)))
    assert cli("push", "records", records, "-p", "lab")[0] == 0
    out_file = tmp_path / "out" / "prefs.jsonl"
    code, out, err = cli("export", "lab", "--format", "preference", "-o", out_file, "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["path"] == str(out_file) and result["snapshot"]["row_count"] == 3
    assert hashlib.sha256(out_file.read_bytes()).hexdigest() == result["snapshot"]["sha256"]
    assert len(out_file.read_text().splitlines()) == 3
    code, out, _ = cli("snapshots", "lab", "--json")
    assert code == 0 and [s["sha256"] for s in json.loads(out)] == [result["snapshot"]["sha256"]]
    again = tmp_path / "again.jsonl"
    code, _, _ = cli("export", "lab", "--snapshot", result["snapshot"]["sha256"][:12], "-o", again)
    assert code == 0 and again.read_bytes() == out_file.read_bytes()
    for command in (["tasks", "lab"], ["annotations", "lab"], ["members", "lab"], ["models"], ["jobs", "list", "lab"]):
        code, out, err = cli(*command, "--json", role="boss")
        assert code == 0, (command, err)
        assert isinstance(json.loads(out), list)
    code, out, _ = cli("tasks", "lab", role="boss")
    assert code == 0 and out.splitlines()[0].split()[:2] == ["ID", "KIND"]


@pytest.mark.slow
def test_train_and_watch_a_run_to_its_end(cli, world, tmp_path, tiny_model_dir, inline_worker):
    model_register(name="tiny", backend="transformers", path=str(tiny_model_dir))
    records = tmp_path / "sft.jsonl"
    records.write_text("".join(json.dumps({"messages": [{"role": "user", "content": f"Say {i}."},
                                                        {"role": "assistant", "content": f"{i}."}]}) + "\n"
                               for i in range(4)))
    assert cli("push", "records", records, "-p", "lab")[0] == 0
    code, out, _ = cli("export", "lab", "--format", "sft", "-o", tmp_path, "--json")
    sha = json.loads(out)["snapshot"]["sha256"]
    code, out, err = cli("train", "lab", "--method", "sft", "--snapshot", sha[:16], "--base-model", "tiny",
                         "--set", "max_steps=2", "--set", "batch_size=2", "--hyperparameters",
                         '{"max_length": 32, "num_threads": 1}', "--json")
    assert code == 0, err
    launched = json.loads(out)
    assert launched["status"] == "queued" and launched["ref"].startswith("run-")
    code, out, err = cli("jobs", "watch", launched["ref"], "-p", "lab", "--poll", "0.5", "--json")
    assert code == 0, err
    final = json.loads(out)
    assert final["status"] == "succeeded" and final["step"] == 2 and final["output_model"]
    code, out, _ = cli("models", "--json")
    assert final["output_model"] in {m["name"] for m in json.loads(out)}
    # Cancelling a finished run is refused by the server (409), exit 1.
    code, _, err = cli("jobs", "cancel", launched["ref"], "-p", "lab")
    assert code == 1 and "409" in err


def test_the_installed_command_runs_as_its_own_process(world):
    """Run as a separate process (the `quorum` console script that `make install` puts beside the interpreter,
    else `python -m quorum_client`): JSON on stdout, the refusal on stderr."""
    env = {**os.environ, "QUORUM_URL": world["url"], "QUORUM_TOKEN": world["tokens"]["engineer"],
           "QUORUM_CONFIG": "/nonexistent/quorum.json"}
    script = Path(sys.executable).with_name("quorum")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "quorum_client"]
    ok = subprocess.run([*command, "projects", "--json"], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0, ok.stderr
    assert [p["slug"] for p in json.loads(ok.stdout)] == ["lab"]
    refused = subprocess.run([*command, "export", "lab", "--format", "preference",
                              "--file-format", "parquet", "-o", "/tmp/never-written.parquet"],
                             cwd=ROOT, env={**env, "QUORUM_TOKEN": world["tokens"]["annotator"]},
                             capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr.startswith("error: 403") and "permission" in refused.stderr.lower()


def test_snapshot_references_digits_only_sha256_prefixes_ids_and_ambiguity(cli, world):
    from annotation.models import DatasetSnapshot

    def stored(sha256):
        return DatasetSnapshot.objects.create(project=world["project"], format="preference", sha256=sha256,
                                              path="/nonexistent/data.jsonl").pk

    digits, a, b = stored("12345678" + "0" * 56), stored("aaaa0000" + "1" * 56), stored("aaaa0000" + "2" * 56)
    code, out, err = cli("export", "lab", "--snapshot", "12345678", "-o", "", "--json")
    assert code == 0, err
    assert json.loads(out)["snapshot"]["id"] == digits
    code, out, err = cli("export", "lab", "--snapshot", f"id:{a}", "-o", "", "--json")
    assert code == 0 and json.loads(out)["snapshot"]["id"] == a
    code, out, err = cli("export", "lab", "--snapshot", "aaaa0000", "-o", "")
    assert code == 1 and out == "" and "ambiguous" in err
    assert f"aaaa000011111111 (id {a}" in err and f"aaaa000022222222 (id {b}" in err
    code, _, err = cli("export", "lab", "--snapshot", "aaaa000", "-o", "")
    assert code == 2 and "at least 8 hex digits" in err
    code, _, err = cli("train", "lab", "--method", "dpo", "--snapshot", "aaaa000", "--base-model", "tiny")
    assert code == 2 and "at least 8 hex digits" in err


def _load_offline(*folders: Path) -> list[dict]:
    """`datasets.load_dataset(folder)` of each folder as it is, in a process with no network: split sizes and the
    train split's columns."""
    code = ("import datasets, json, sys\n"
            "out = []\n"
            "for folder in sys.argv[1:]:\n"
            "    ds = datasets.load_dataset(folder)\n"
            "    out.append({'splits': {k: v.num_rows for k, v in ds.items()}, 'columns': ds['train'].column_names})\n"
            "print(json.dumps(out))\n")
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1",
           "HF_HOME": str(folders[0].parent / "hf-home")}
    done = subprocess.run([sys.executable, "-c", code, *map(str, folders)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1])


def test_export_to_a_directory_writes_data_and_card_that_datasets_loads_as_they_are(cli, world, tmp_path):
    import yaml

    records = tmp_path / "prefs.jsonl"
    records.write_text("".join(json.dumps({"prompt": f"Q{i}?", "chosen": f"Yes {i}.", "rejected": f"No {i}."}) + "\n"
                               for i in range(4)))
    assert cli("push", "records", records, "-p", "lab")[0] == 0
    # A directory named with a trailing slash (not there yet), and one that exists.
    fresh = tmp_path / "fresh"
    code, out, err = cli("export", "lab", "--format", "preference", "-o", f"{fresh}/", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["path"] == str(fresh / "data.jsonl") and result["card"] == str(fresh / "README.md")
    assert sorted(p.name for p in fresh.iterdir()) == ["README.md", "data.jsonl"]
    assert hashlib.sha256((fresh / "data.jsonl").read_bytes()).hexdigest() == result["snapshot"]["sha256"]
    existing = tmp_path / "existing"
    existing.mkdir()
    code, out, err = cli("export", "lab", "--format", "preference", "--file-format", "parquet", "-o", existing)
    assert code == 0, err
    assert sorted(p.name for p in existing.iterdir()) == ["README.md", "data.parquet"]
    assert f"written to {existing / 'data.parquet'}" in out and f"card {existing / 'README.md'}" in out
    # A file name: the card goes beside it and names that file.
    named = tmp_path / "named"
    code, out, err = cli("export", "lab", "--snapshot", result["snapshot"]["id"], "-o", named / "prefs-v1.jsonl",
                         "--json")
    assert code == 0, err
    card = (named / "README.md").read_text()
    header = yaml.safe_load(card.split("---\n")[1])
    assert header["configs"] == [{"config_name": "default", "data_files": [{"split": "train", "path": "prefs-v1.jsonl"}]}]
    assert "data.jsonl" not in card and result["snapshot"]["sha256"] in card

    loaded = _load_offline(fresh, existing, named)
    assert [r["splits"] for r in loaded] == [{"train": 4}] * 3
    assert all({"prompt", "chosen", "rejected"} <= set(r["columns"]) for r in loaded)

    # Someone else's README beside the file is left as it is; the card takes a name of its own.
    (named / "README.md").write_text("# My notes\n")
    code, out, err = cli("export", "lab", "--snapshot", result["snapshot"]["id"], "-o", named / "again.jsonl", "--json")
    assert code == 0, err
    assert (named / "README.md").read_text() == "# My notes\n"
    assert json.loads(out)["card"] == str(named / "again.jsonl.README.md")
    assert "again.jsonl" in (named / "again.jsonl.README.md").read_text()


def _as_a_process(world, role="engineer"):
    """The command as its own process, on this tree's code, and the environment it reads its server from."""
    env = {**os.environ, "QUORUM_URL": world["url"], "QUORUM_TOKEN": world["tokens"][role],
           "QUORUM_CONFIG": "/nonexistent/quorum.json", "PYTHONPATH": str(ROOT)}
    return [sys.executable, "-m", "quorum_client"], env


def test_version_prints_the_packages_version_and_exits_0(world):
    from importlib.metadata import PackageNotFoundError, version

    try:  # the client installed on its own, else the server's package that ships it
        expected = version("quorum-client")
    except PackageNotFoundError:
        expected = version("quorum")
    command, env = _as_a_process(world)
    done = subprocess.run([*command, "--version"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"quorum {expected}\n" and done.stderr == ""


def test_a_reader_that_stops_early_ends_the_command_quietly(cli, world, tmp_path):
    records = tmp_path / "prefs.jsonl"
    records.write_text("".join(json.dumps({"prompt": f"Q{i}?", "chosen": f"Yes {i}.", "rejected": f"No {i}."}) + "\n"
                               for i in range(3000)))
    assert cli("push", "records", records, "-p", "lab")[0] == 0
    command, env = _as_a_process(world)
    # Far more than a pipe holds (64 KiB): the writes after the reader closed its end fail with EPIPE.
    listing = subprocess.Popen([*command, "tasks", "lab"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    assert listing.stdout.readline().split()[:2] == [b"ID", b"KIND"]
    listing.stdout.close()
    _, err = listing.communicate(timeout=120)
    assert (listing.returncode, err) == (141, b"")
    # Through a shell, as `quorum ... | head -1` runs.
    for args, first_line in (("tasks lab --json", lambda line: line == "[\n"),
                             ("export lab --format preference -o -", lambda line: "chosen" in json.loads(line))):
        shell = subprocess.run(["bash", "-c", f"set -o pipefail; {sys.executable} -m quorum_client {args} | head -1"],
                               cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert (shell.returncode, shell.stderr) == (141, ""), args
        assert first_line(shell.stdout), (args, shell.stdout)


def test_push_a_dataset_directory_and_export_with_its_card(cli, world, tmp_path):
    import datasets

    folder = tmp_path / "prefs"
    datasets.Dataset.from_list([{"prompt": f"Q{i}?", "chosen": f"Yes {i}.", "rejected": f"No {i}."}
                                for i in range(3)]).save_to_disk(str(folder))
    code, out, err = cli("push", "dataset", folder, "-p", "lab", "--json")
    assert code == 0, err
    assert json.loads(out)["records"] == 3
    card = tmp_path / "README.md"
    code, out, err = cli("export", "lab", "--format", "preference", "-o", tmp_path / "data.jsonl", "--card", card,
                         "--json")
    assert code == 0, err
    assert json.loads(out)["snapshot"]["sha256"] in card.read_text()
    code, _, err = cli("push", "dataset", tmp_path / "nowhere", "-p", "lab")
    assert code == 2 and "no such file" in err


def test_a_cancelled_round_watched_exits_4(cli, world, tiny_model_dir, monkeypatch):
    hold_messages(monkeypatch, "training.round_advance")
    model_register(name="tiny", backend="transformers", path=str(tiny_model_dir), roles=["policy", "judge"])
    code, _, err = cli("push", "prompts", "-", "-p", "lab", stdin="".join(f'"Say {i}."\n' for i in range(4)))
    assert code == 0, err
    code, out, err = cli("round", "lab", "--policy", "tiny", "--judge", "tiny", "--config",
                         '{"prompts_per_round": 2, "eval_prompts": 1}', "--json")
    assert code == 0, err
    assert json.loads(out)["ref"] == "round-1"
    assert cli("jobs", "cancel", "round-1", "-p", "lab")[0] == 0
    code, out, err = cli("jobs", "watch", "round-1", "-p", "lab", "--json")
    assert code == 4 and json.loads(out)["status"] == "cancelled" and "cancelled" in err
    code, out, _ = cli("jobs", "list", "lab", "--json")
    assert [j["ref"] for j in json.loads(out)] == ["round-1"]


def test_feedback_without_a_constitution_is_refused_with_the_reason(cli, world, tiny_model_dir):
    model_register(name="tiny-judge", backend="transformers", path=str(tiny_model_dir), roles=["judge"])
    code, out, err = cli("feedback", "lab", "--kind", "judge", "--model", "tiny-judge", "--limit", "2")
    assert code == 1 and out == "" and "constitution" in err
    assert cli("feedback", "lab", "--kind", "vibes", "--model", "tiny-judge")[0] == 2
