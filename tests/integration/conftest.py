import shutil
import tempfile
from pathlib import Path

import pytest


@pytest.fixture
def workdir():
    """A folder for the workers' models, data, broker file and logs.

    Not pytest's tmp_path: other pytest runs on the same machine prune old base directories, which would pull the
    model and the broker file from under the running workers."""
    path = Path(tempfile.mkdtemp(prefix="quorum-worker-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)
