"""The installed fer-* commands, run as a user runs them (from PATH): one line for a bad option, --version
before heavy imports, and a quiet end when the reader of their output goes away."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from importlib import metadata

import pytest

import ferstream.commands
from ferstream.commandline import EXIT_BROKEN_PIPE, EXIT_USAGE, package_version

# Every installed command (each entry point goes through ferstream.commands).
COMMANDS = tuple(ferstream.commands.COMMANDS)
# Modules that take seconds to import and have no business in `--version`.
HEAVY_MODULES = ("torch", "cv2", "openvino", "onnxruntime", "grpc")


def command(prog: str) -> str:
    """The installed command's path; fails (never skips) when the package is not installed."""
    path = shutil.which(prog)
    if path is None:
        pytest.fail(f"{prog} is not on PATH: install the package (pip install -e .)")
    return path


@pytest.mark.parametrize("prog", COMMANDS)
def test_a_bad_option_is_one_error_line_and_exit_2(prog: str) -> None:
    result = subprocess.run([command(prog), "--bogus"], capture_output=True, text=True, timeout=300)
    assert result.returncode == EXIT_USAGE
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), result.stderr
    assert "usage:" not in result.stderr and result.stdout == ""


@pytest.mark.parametrize("prog", COMMANDS)
def test_version_answers_before_heavy_imports(prog: str) -> None:
    result = subprocess.run([command(prog), "--version"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{prog} {package_version()} (ferstream, Python ")
    # The same entry point in a fresh interpreter, then which modules it loaded.
    [entry] = [entry for entry in metadata.entry_points(group="console_scripts") if entry.name == prog]
    probe = (f"import sys; from importlib import metadata; sys.argv = [{prog!r}, '--version']\n"
             f"[entry] = [e for e in metadata.entry_points(group='console_scripts') if e.name == {prog!r}]\n"
             f"code = entry.load()()\n"
             f"print(code, sorted(name for name in {HEAVY_MODULES!r} if name in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip().splitlines()[-1] == "0 []", f"{entry.value}: {loaded.stdout}"


@pytest.mark.parametrize("arguments", [("fer-models", "list", "--json"), ("fer-models", "list"),
                                       ("fer-server", "--help"), ("fer-train", "--help")])
def test_a_closed_pipe_ends_the_command_quietly(arguments: tuple[str, ...]) -> None:
    """`fer-models list --json | head -1`: the reader is gone before the command writes (the read end is
    closed at once, so the write fails every time, not only when the reader wins a race)."""
    process = subprocess.Popen([command(arguments[0]), *arguments[1:]], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE,
                               env={name: value for name, value in os.environ.items() if name != "PYTHONUNBUFFERED"})
    process.stdout.close()
    stderr = process.stderr.read().decode()
    process.stderr.close()
    code = process.wait(timeout=300)
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr
    assert stderr == "" and code in (0, EXIT_BROKEN_PIPE)
