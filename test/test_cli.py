"""`sixdpose --help` and every `sixdpose ... --help`: only the help text on stdout, and no heavy module imported.

Speed is a benchmark's business, not a test's; what makes the start fast is checked instead: building the
parser and printing any help imports none of torch, pybullet, moderngl or rclpy (with them, `sixdpose --help`
took 3.8 s here; without, about 0.3 s).
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ros2_sixdpose.cli import EXIT_INTERRUPTED, build_parser

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "pybullet", "moderngl", "rclpy")
# Every command and sub-command of the parser, each asked for its help.
HELP_COMMANDS = [
    [], ["objects"], ["objects", "build"], ["objects", "list"], ["synth"], ["bag"], ["train"], ["train", "detector"],
    ["train", "nocs"], ["eval"], ["eval", "detector"], ["study"], ["study", "nocs"], ["bench"],
    *[["bench", target] for target in ("render", "synth", "detector", "estimator", "pipeline")],
    ["run"], ["replay"], ["demo"],
]
COLUMNS = "100"  # argparse wraps help to the terminal's width; the same width here and in the child


SIXDPOSE = "import sys; from ros2_sixdpose.cli import main; sys.argv[0] = 'sixdpose'; sys.exit(main())"
ENV = {**os.environ, "COLUMNS": COLUMNS, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def _python(code: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=ENV, cwd=cwd,
                          timeout=120)


def test_top_level_help_prints_exactly_the_help_text(monkeypatch):
    # The console script's own code path: main() reads sys.argv.
    done = _python(SIXDPOSE, "--help")
    assert done.returncode == 0, done.stderr
    monkeypatch.setenv("COLUMNS", COLUMNS)
    assert done.stdout == build_parser().format_help()


def test_no_help_imports_a_heavy_module():
    code = (
        "import contextlib, io, json, sys\n"
        "from ros2_sixdpose.cli import main\n"
        f"for argv in {HELP_COMMANDS!r}:\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        try:\n"
        "            main([*argv, '--help'])\n"
        "        except SystemExit as exc:\n"
        "            assert exc.code == 0, (argv, exc.code)\n"
        "    assert out.getvalue().startswith('usage: '), argv\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    done = _python(code)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []


def test_every_subcommand_is_in_the_help_list():
    parser = build_parser()
    choices = next(a for a in parser._actions if a.dest == "command").choices
    assert sorted(choices) == sorted({argv[0] for argv in HELP_COMMANDS if argv})


def test_a_user_error_is_one_line_from_any_folder_and_debug_shows_the_traceback(tmp_path):
    argv = ["eval", "detector", "--dataset", "no_such_dataset", "--split", "test", "--out", "o"]
    done = _python(SIXDPOSE, *argv, cwd=tmp_path)  # not the checkout: the config's weights are still found
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "FileNotFoundError:" in done.stderr and "no_such_dataset" in done.stderr, done.stderr
    debug = _python(SIXDPOSE, "--debug", *argv, cwd=tmp_path)
    assert debug.returncode == 1 and "Traceback (most recent call last)" in debug.stderr


def test_ctrl_c_ends_a_command_with_one_line(tmp_path):
    argv = ["synth", "--out", str(tmp_path), "--split", "test", "--scenes", "50", "--images-per-scene", "5",
            "--seed", "1", "--no-progress"]
    # PYTHONFAULTHANDLER: if the command hangs after Ctrl-C, SIGABRT makes it print where each thread is.
    process = subprocess.Popen([sys.executable, "-c", SIXDPOSE, *argv], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, env={**ENV, "PYTHONFAULTHANDLER": "1"}, cwd=tmp_path)
    time.sleep(4.0)  # inside the command: imports done or under way, scenes being made
    process.send_signal(signal.SIGINT)
    try:
        _, stderr = process.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGABRT)
        pytest.fail(f"no exit within 60 s of Ctrl-C; where it hung:\n{process.communicate(timeout=30)[1]}")
    assert process.returncode == EXIT_INTERRUPTED, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr, stderr
