"""fer-client's command line, run as a command: --version, --help, and one-line errors on stderr."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

from ferstream.client.cli import build_parser


def fer_client(*arguments: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, **(env or {})}
    environment.pop("DISPLAY", None)  # none of these may get as far as opening a window
    return subprocess.run([sys.executable, "-m", "ferstream.client.cli", *arguments], capture_output=True,
                          text=True, timeout=60, env=environment)


def test_version_names_the_command_and_the_package():
    result = fer_client("--version")
    assert result.returncode == 0 and result.stdout.startswith("fer-client ") and "ferstream" in result.stdout


def test_help_describes_every_option():
    undescribed = [action.option_strings for action in build_parser()._actions
                   if action.option_strings and (not action.help or action.help == argparse.SUPPRESS)]
    assert not undescribed
    result = fer_client("--help")
    assert result.returncode == 0
    for option in ("--server", "--source", "--out", "--jsonl", "--snapshot-dir", "--connect-timeout", "--version"):
        assert option in result.stdout


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fer-client: error: "), result.stderr
    return lines[0]


def test_an_http_url_as_server_is_called_out():
    assert "not HTTP" in one_line_error(fer_client("--server", "http://127.0.0.1:50051"))
    assert "not HTTP" in one_line_error(fer_client("--headless", "--jsonl", "x.jsonl",
                                                   env={"FER_SERVER": "https://example.org:443"}))


def test_bad_arguments_get_one_line_each(tmp_path):
    assert "--out" in one_line_error(fer_client("--headless"))
    assert "--headless" in one_line_error(fer_client("--out", str(tmp_path / "video.mp4")))
    assert "--output" in one_line_error(fer_client("--headless", "--output", str(tmp_path / "video.mp4")))
    assert "between 0 and 1" in one_line_error(fer_client("--min-score", "abc"))
    assert "between 10 and 100" in one_line_error(fer_client("--jpeg-quality", "5"))
    assert "seconds" in one_line_error(fer_client("--connect-timeout", "-1"))
    assert "no such file" in one_line_error(fer_client("--headless", "--jsonl", str(tmp_path / "faces.jsonl"),
                                                       "--source", str(tmp_path / "missing.mp4")))
    assert "missing.pem" in one_line_error(fer_client("--tls-ca", str(tmp_path / "missing.pem"), "--headless",
                                                      "--jsonl", str(tmp_path / "faces.jsonl")))
