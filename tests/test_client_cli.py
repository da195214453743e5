"""fer-client's command line, run as a command: --version, --help, and one-line errors on stderr."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest

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
    # Below 75 more than 5 % of faces change their top emotion (client/library.py MIN_JPEG_QUALITY).
    for low in ("5", "10", "74"):
        assert "between 75 and 100" in one_line_error(fer_client("--jpeg-quality", low))
    assert "seconds" in one_line_error(fer_client("--connect-timeout", "-1"))
    assert "no such file" in one_line_error(fer_client("--headless", "--jsonl", str(tmp_path / "faces.jsonl"),
                                                       "--source", str(tmp_path / "missing.mp4")))
    assert "missing.pem" in one_line_error(fer_client("--tls-ca", str(tmp_path / "missing.pem"), "--headless",
                                                      "--jsonl", str(tmp_path / "faces.jsonl")))


@pytest.mark.slow
def test_faces_keep_their_emotion_at_the_lowest_jpeg_quality_offered(shared, fer_models_dir):
    """At MIN_JPEG_QUALITY at least 95 % of faces keep the top emotion of the uncompressed frame (300 of the
    development photos, the shipped model and YuNet); at 10, the old floor, far fewer do."""
    import random

    import cv2

    from ferstream.bench.detectors import iou
    from ferstream.client.messages import MIN_JPEG_QUALITY
    from ferstream.pipeline.framepath import load_frame_path
    from ferstream.pipeline.settings import MAX_PIXELS, parse_classes

    frame_path = load_frame_path(fer_models_dir, None, parse_classes(None), MAX_PIXELS, 32)
    photos = sorted((shared / "datasets" / "realfaces-dev").rglob("*.jpg"))
    random.Random(0).shuffle(photos)

    def faces(image):
        return [((f.box.x, f.box.y, f.box.width, f.box.height), f.top_class) for f in frame_path.annotate(image).faces]

    held = {MIN_JPEG_QUALITY: 0, 10: 0}
    total = 0
    for path in photos[:300]:
        image = cv2.imread(str(path))
        original = faces(image)
        total += len(original)
        for quality in held:
            sent = cv2.imdecode(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])[1], cv2.IMREAD_COLOR)
            answer = faces(sent)
            held[quality] += sum(any(iou(box, other) > 0.5 and emotion == top for other, emotion in answer)
                                 for box, top in original)
    assert total > 250
    assert held[MIN_JPEG_QUALITY] >= 0.95 * total, held
    assert held[10] < 0.9 * total, held
