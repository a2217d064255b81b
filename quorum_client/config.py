"""Where `quorum login` keeps the server URL and token: a small JSON file, readable only by its owner.

The path is `$QUORUM_CONFIG` when set, else `$XDG_CONFIG_HOME/quorum/config.json` (`~/.config/...`).
`QUORUM_URL` and `QUORUM_TOKEN` in the environment take precedence over the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass
class Config:
    url: str = ""
    token: str = ""
    project: str = ""  # the default project of the command line, when --project is not given


def config_path() -> Path:
    if os.environ.get("QUORUM_CONFIG"):
        return Path(os.environ["QUORUM_CONFIG"]).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "quorum" / "config.json"


def load_config(path: Path | None = None) -> Config:
    """The stored config overlaid by QUORUM_URL / QUORUM_TOKEN / QUORUM_PROJECT; empty fields when absent."""
    path = path or config_path()
    stored: dict = {}
    try:
        stored = json.loads(path.read_text())
    except FileNotFoundError:
        pass
    except (OSError, ValueError) as exc:
        raise ValueError(f"cannot read the config file {path}: {exc}") from None
    cfg = Config(**{k: str(v) for k, v in stored.items() if k in Config.__dataclass_fields__})
    cfg.url = os.environ.get("QUORUM_URL") or cfg.url
    cfg.token = os.environ.get("QUORUM_TOKEN") or cfg.token
    cfg.project = os.environ.get("QUORUM_PROJECT") or cfg.project
    return cfg


def save_config(cfg: Config, path: Path | None = None) -> Path:
    """Write the config atomically with mode 0600 (it holds a token)."""
    path = path or config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(asdict(cfg), f, indent=2)
    os.replace(tmp, path)
    return path
