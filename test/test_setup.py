"""`make setup`'s system check (scripts/check_system.sh): passes here, names what is missing and how to get it."""
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts/check_system.sh"


def test_this_machine_has_every_system_package():
    done = subprocess.run([str(SCRIPT)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


def test_a_missing_python_is_named_with_the_command_that_installs_it():
    env = {**os.environ, "CHECK_ONLY": "1"}  # never install from a test, even as root
    done = subprocess.run([str(SCRIPT), "python9.9"], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 1
    assert "missing system packages: python9.9 python9.9-venv" in done.stderr
    assert "apt-get install -y --no-install-recommends python9.9 python9.9-venv" in done.stderr
