"""Python client for Quorum's HTTP API (no Django needed): projects, prompts, responses, tasks, annotations,
snapshots as `datasets.Dataset`, generation jobs, training runs and the model registry.

    from quorum_client import Client
    client = Client("http://127.0.0.1:8000", token="...")

See docs/client.md in the repository, and `quorum --help` for the command line.
"""

from .client import Client
from .config import Config, config_path, load_config, save_config
from .errors import (
    AmbiguousSnapshot,
    ApiError,
    BadRequest,
    ChecksumMismatch,
    Conflict,
    ConnectionFailed,
    Forbidden,
    NotFound,
    QuorumError,
    RateLimited,
    ServerError,
    Unauthorized,
)
from .jobs import Job, JobTimeout
from .types import (
    Annotation,
    FeedbackJob,
    GenerationJob,
    ImportReport,
    LeasedTask,
    Membership,
    Model,
    Project,
    Prompt,
    Response,
    Round,
    Snapshot,
    Task,
    TrainingRun,
)

__version__ = "0.1.0"

__all__ = [
    "Client", "Config", "config_path", "load_config", "save_config",
    "AmbiguousSnapshot", "ApiError", "BadRequest", "ChecksumMismatch", "Conflict", "ConnectionFailed", "Forbidden",
    "NotFound", "QuorumError", "RateLimited", "ServerError", "Unauthorized",
    "Job", "JobTimeout",
    "Annotation", "FeedbackJob", "GenerationJob", "ImportReport", "LeasedTask", "Membership", "Model", "Project",
    "Prompt", "Response", "Round", "Snapshot", "Task", "TrainingRun",
]
