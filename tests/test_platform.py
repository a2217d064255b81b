"""The deployment files in platform/ say what the code can do: the compose file parses and names only programs,
options, modules, management commands, queues and settings that exist, and the compose services, the Procfile and
the systemd units describe the same four processes."""

import importlib.util
import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PLATFORM = ROOT / "platform"
CODE_DIRS = ("quorum", "annotation", "training", "frontend")
# Variables that compose itself interpolates (from the shell or platform/.env), not Quorum settings.
COMPOSE_VARIABLES = {"POSTGRES_PASSWORD", "QUORUM_PORT"}


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((PLATFORM / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def code_text():
    return "\n".join(p.read_text() for d in CODE_DIRS for p in (ROOT / d).rglob("*.py"))


def _options(command) -> set[str]:
    from celery.bin.beat import beat
    from celery.bin.celery import celery
    from celery.bin.worker import worker
    from gunicorn.config import KNOWN_SETTINGS

    if command == "gunicorn":
        return {o for s in KNOWN_SETTINGS for o in (s.cli or [])}
    top = {o for p in celery.params for o in p.opts}
    return top | {o for p in {"worker": worker, "beat": beat}[command].params for o in p.opts}


def _check_quorum_command(argv: list[str]) -> str:
    """Check one process command against the installed programs; return its role (web, default, gpu, beat)."""
    from django.core.management import get_commands

    program = Path(argv[0]).name
    if program == "gunicorn":
        flags = {a.split("=")[0] for a in argv[1:] if a.startswith("-") and a != "-"}
        assert flags <= _options("gunicorn"), flags - _options("gunicorn")
        module = next(a for a in argv[1:] if not a.startswith("-") and "." in a and ":" not in a)
        assert importlib.util.find_spec(module) is not None, module
        assert module == "quorum.wsgi"
        return "web"
    if program == "celery":
        assert argv[1:3] == ["-A", "quorum"] and importlib.util.find_spec("quorum.celery") is not None
        sub = argv[3]
        flags = {a for a in argv[4:] if a.startswith("-")}
        assert flags <= _options(sub), flags - _options(sub)
        if sub == "beat":
            return "beat"
        queues = argv[argv.index("-Q") + 1].split(",")
        from quorum.celery import app

        assert set(queues) <= {q.name for q in app.conf.task_queues}, queues
        assert len(queues) == 1
        return queues[0]
    if program == "sh":
        for part in argv[-1].split("&&"):
            words = shlex.split(part)
            assert words[:2] == ["python", "manage.py"] and words[2] in get_commands(), words
        return "setup"
    raise AssertionError(f"unknown program {argv[0]}")


def test_compose_file_parses_and_names_only_what_exists(compose, code_text):
    services = compose["services"]
    assert set(services) == {"postgres", "redis", "migrate", "web", "worker-cpu", "worker-gpu", "beat"}
    roles = {}
    for name, service in services.items():
        if name in ("postgres", "redis"):
            continue
        build = service["build"]
        assert (PLATFORM / build["context"] / build["dockerfile"]).is_file()
        assert (PLATFORM / build["context"] / "manage.py").is_file()
        assert [e["path"] for e in service["env_file"]] == ["quorum.env"]
        roles[name] = _check_quorum_command(service["command"])
        for key in service["environment"]:
            assert re.search(rf"[\"']{key}[\"']", code_text), f"{name}: {key} is read by no code"
        for volume in service["volumes"]:
            source, target = volume.split(":")
            assert source in compose["volumes"] and target == service["environment"]["QUORUM_DATA_DIR"]
        for dependency in service.get("depends_on", {}):
            assert dependency in services
    assert roles == {"migrate": "setup", "web": "web", "worker-cpu": "default", "worker-gpu": "gpu", "beat": "beat"}
    assert services["worker-gpu"]["profiles"] == ["gpu"] and "--concurrency" in services["worker-gpu"]["command"]
    assert services["worker-gpu"]["command"][services["worker-gpu"]["command"].index("--concurrency") + 1] == "1"
    # Every ${VAR} compose interpolates is compose's own or a setting of the example env file.
    example = _example_keys()
    for var in re.findall(r"\$\{(\w+)", (PLATFORM / "compose.yaml").read_text()):
        assert var in COMPOSE_VARIABLES or var in example, var
    assert services["postgres"]["healthcheck"] and services["redis"]["healthcheck"]


def _example_keys() -> set[str]:
    lines = (PLATFORM / "quorum.env.example").read_text().splitlines()
    return {line.split("=", 1)[0] for line in lines if line and not line.startswith("#")}


def test_every_setting_of_the_example_env_is_used(code_text):
    commands = (PLATFORM / "Procfile").read_text() + "".join(
        p.read_text() for p in (PLATFORM / "systemd").iterdir())
    for key in _example_keys():
        assert re.search(rf"[\"']{key}[\"']", code_text) or "${" + key in commands, key


def _procfile() -> dict[str, list[str]]:
    out = {}
    for line in (PLATFORM / "Procfile").read_text().splitlines():
        name, _, command = line.partition(":")
        out[name] = shlex.split(command)
    return out


def _units() -> dict[str, list[str]]:
    out = {}
    for unit in sorted((PLATFORM / "systemd").glob("*.service")):
        text = unit.read_text()
        assert "EnvironmentFile=/etc/quorum/quorum.env" in text and "WantedBy=quorum.target" in text, unit.name
        exec_start = re.search(r"^ExecStart=(.+)$", text, re.M).group(1)
        out[unit.name] = shlex.split(exec_start)
    return out


def _shape(argv: list[str]) -> tuple:
    """What must agree between the three descriptions: program, app, subcommand, queue and GPU concurrency."""
    program = Path(argv[0]).name
    if program == "gunicorn":
        return (program, argv[1])
    queue = argv[argv.index("-Q") + 1] if "-Q" in argv else None
    concurrency = argv[argv.index("--concurrency") + 1] if queue == "gpu" else None
    return (program, argv[2], argv[3], queue, concurrency)


def test_procfile_systemd_and_compose_describe_the_same_processes(compose):
    procfile = _procfile()
    units = _units()
    assert set(procfile) == {"web", "worker-cpu", "worker-gpu", "beat"}
    assert set(units) == {"quorum-web.service", "quorum-worker@.service", "quorum-worker-gpu@.service",
                          "quorum-beat.service"}
    for argv in list(procfile.values()) + list(units.values()):
        _check_quorum_command(argv)
    pairs = {"web": ("web", "quorum-web.service"), "worker-cpu": ("worker-cpu", "quorum-worker@.service"),
             "worker-gpu": ("worker-gpu", "quorum-worker-gpu@.service"), "beat": ("beat", "quorum-beat.service")}
    for proc, (service, unit) in pairs.items():
        shapes = {_shape(procfile[proc]), _shape(units[unit]), _shape(compose["services"][service]["command"])}
        assert len(shapes) == 1, (proc, shapes)
    assert "CUDA_VISIBLE_DEVICES=%i" in (PLATFORM / "systemd" / "quorum-worker-gpu@.service").read_text()


def test_platform_holds_deployment_files_only():
    assert not list(PLATFORM.rglob("*.py")) and not (PLATFORM / "__init__.py").exists()
    readme = (PLATFORM / "README.md").read_text()
    for topic in ("Scaling out", "single source of truth", "-Q gpu", "tensor-parallel-size", "accelerate",
                  "DeepSpeed", "pg_dump", "pg_restore", "verify_snapshots"):
        assert topic in readme, topic


def test_the_embedded_broker_is_prepared_before_its_processes_start(tmp_path, monkeypatch):
    """`make demo` creates the embedded broker's tables and queues before web, workers and beat connect at once;
    on Redis or RabbitMQ there is nothing to prepare."""
    import sqlite3

    from quorum.celery import app, embedded_broker_prepare

    monkeypatch.setattr(app.conf, "broker_url", "redis://127.0.0.1:6379/0")
    assert embedded_broker_prepare() is False
    broker = tmp_path / "broker.sqlite3"
    monkeypatch.setattr(app.conf, "broker_url", f"sqla+sqlite:///{broker}")
    assert embedded_broker_prepare() is True
    queues = sqlite3.connect(broker).execute("SELECT name FROM kombu_queue ORDER BY name").fetchall()
    assert queues == [("default",), ("gpu",)]
    assert embedded_broker_prepare() is True  # again: nothing changes
    assert "embedded_broker_prepare" in (Path(__file__).parents[1] / "platform" / "demo.sh").read_text()
