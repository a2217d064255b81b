"""The trainers' command line: `python -m training.trainers.<method> --config run.json` (or `--describe`), with
stdout kept for metrics and the exit status the launcher reads; see the package docstring for the contract."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Callable
from typing import Any

from training.trainers import runtime
from training.trainers.config import ConfigError, describe_config, load_config
from training.trainers.data import DataError

log = logging.getLogger("quorum.trainers")

__all__ = ["EXIT_CANCELLED", "EXIT_FAILED", "EXIT_INVALID_CONFIG", "EXIT_SUCCEEDED", "main", "quiet_progress_bars"]

EXIT_SUCCEEDED = 0
EXIT_FAILED = 1
EXIT_INVALID_CONFIG = 2
EXIT_CANCELLED = 3


def main(config_cls: type, train: Callable[[Any], runtime.TrainResult], argv: list[str] | None = None) -> int:
    """`python -m training.trainers.<method> --config run.json`; see the package docstring for the contract."""
    parser = argparse.ArgumentParser(
        prog=f"python -m training.trainers.{config_cls.method}",
        description=f"Train with {config_cls.method}. Metrics go to stdout as JSON lines; logs go to stderr.",
    )
    parser.add_argument("--config", help="run spec: a JSON object with this method's fields")
    parser.add_argument("--describe", action="store_true", help="print the config fields as JSON and exit")
    args = parser.parse_args(argv)
    if args.describe:
        print(json.dumps(describe_config(config_cls), indent=2, default=str))
        return EXIT_SUCCEEDED
    if not args.config:
        parser.error("--config is required")

    # Keep stdout for metrics alone: the real stdout is kept aside and fd 1 (print, C extensions) goes to stderr.
    sys.stdout.flush()
    echo_stream = runtime.MetricsWriter.echo_stream = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    quiet_progress_bars()

    try:
        config = load_config(config_cls, args.config)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return EXIT_INVALID_CONFIG
    try:
        result = train(config)
    except (ConfigError, DataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_INVALID_CONFIG if isinstance(error, ConfigError) else EXIT_FAILED
    except Exception:
        traceback.print_exc()
        return EXIT_FAILED
    finally:
        echo_stream.flush()
    log.info("%s %s after %d steps: %s", config_cls.method, result.status, result.steps, result.output_dir)
    return EXIT_CANCELLED if result.status == "cancelled" else EXIT_SUCCEEDED


def quiet_progress_bars() -> None:
    """Progress bars are for terminals; a launched trainer reports progress through its metrics."""
    import datasets
    import huggingface_hub.utils
    from transformers.utils import logging as hf_logging

    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()
    huggingface_hub.utils.disable_progress_bars()
