"""quorum_client stands alone: its wheel holds only the client and needs only httpx; importing it, its command
line included, loads no Django."""

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_client_wheel_builds_on_its_own_with_only_httpx_required(tmp_path):
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
         "-w", str(tmp_path), str(ROOT / "quorum_client")],
        capture_output=True, text=True, timeout=300,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    wheel = next(tmp_path.glob("quorum_client-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    modules = {n for n in names if n.endswith(".py")}
    assert {"quorum_client/__init__.py", "quorum_client/client.py", "quorum_client/cli.py"} <= modules
    assert all(n.startswith(("quorum_client/", "quorum_client-")) for n in names), names
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA"))).decode()
    required = [line for line in metadata.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert required == ["Requires-Dist: httpx>=0.27"]
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "quorum = quorum_client.cli:main" in entry_points


def test_importing_the_client_and_its_command_line_loads_no_django():
    code = ("import sys, quorum_client, quorum_client.cli; "
            "assert 'django' not in sys.modules and 'pandas' not in sys.modules, sorted(sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
