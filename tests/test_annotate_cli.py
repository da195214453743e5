"""fer-annotate as a command: one image or video (its annotated copy, JSON lines, the kind by content, a
damaged file), a batch of files and folders (one JSON-lines file and one CSV, a summary, the exit code), the
source's audio kept in an annotated video, and its errors (one line, never a traceback)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from ferstream.annotate.records import read_jsonl
from ferstream.model.labels import EMOTIONS

PHOTO = "2008_002506.jpg"  # three people


def run(module: str, *arguments: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """`python -m ferstream.MODULE ARGUMENTS`, its output captured as text."""
    environment = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", f"ferstream.{module}", *arguments], capture_output=True,
                          text=True, timeout=180, env=environment)


def annotate(*arguments: str) -> subprocess.CompletedProcess:
    """fer-annotate with one inference thread."""
    return run("annotate.cli", *arguments, "--threads", "1")


def one_error_line(result: subprocess.CompletedProcess, prog: str) -> str:
    """The one line a failed command printed on stderr (asserting there was exactly one, and no traceback)."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), result.stderr
    return lines[0]


def test_annotate_a_photo(tmp_path: Path, faces_dir: Path, fer_models_dir: Path) -> None:
    out = tmp_path / "annotated.png"
    result = annotate(str(faces_dir / PHOTO), "--out", str(out), "--models-dir", str(fer_models_dir))
    assert result.returncode == 0, result.stderr
    original = cv2.imread(str(faces_dir / PHOTO))
    annotated = cv2.imread(str(out))
    assert annotated.shape == original.shape and not np.array_equal(annotated, original)
    [record] = read_jsonl(out.with_suffix(".jsonl"))
    assert record["frame"] == 0 and "time_ms" not in record
    assert record["width"] == original.shape[1] and len(record["faces"]) == 3
    for face in record["faces"]:
        assert face["emotion"] in EMOTIONS and list(face["probabilities"]) == list(EMOTIONS)
        assert abs(sum(face["probabilities"].values()) - 1.0) < 1e-3
        assert face["emotion"] == max(face["probabilities"], key=face["probabilities"].get)


def write_video(path: Path, frames: list[np.ndarray], fps: float = 10.0) -> None:
    """An MJPG video of the frames."""
    height, width = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    for frame in frames:
        writer.write(frame)
    writer.release()


def test_annotate_a_video(tmp_path: Path, faces_dir: Path, fer_models_dir: Path) -> None:
    photo = cv2.imread(str(faces_dir / PHOTO))
    video = tmp_path / "clip.avi"
    write_video(video, [photo, photo, np.full_like(photo, 128), photo])

    result = annotate(str(video), "--models-dir", str(fer_models_dir), "--detector", "ssd",
                      "--classes", "happy,neutral")
    assert result.returncode == 0, result.stderr
    out = tmp_path / "clip.annotated.avi"
    capture = cv2.VideoCapture(str(out))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 4
    capture.release()
    records = read_jsonl(out.with_suffix(".jsonl"))
    assert [r["frame"] for r in records] == [0, 1, 2, 3]
    assert [r["time_ms"] for r in records] == pytest.approx([0.0, 100.0, 200.0, 300.0])
    assert [len(r["faces"]) for r in records] == [3, 3, 0, 3]
    assert all(list(face["probabilities"]) == ["happy", "neutral"] for r in records for face in r["faces"])
    # The same three people keep their tracks across the blank frame, smoothed over the video's time.
    assert [sorted(face["track_id"] for face in r["faces"]) for r in records] == [[1, 2, 3], [1, 2, 3], [], [1, 2, 3]]
    assert all(list(face["track_probabilities"]) == ["happy", "neutral"] for r in records for face in r["faces"])

    unsmoothed = tmp_path / "unsmoothed.avi"
    result = annotate(str(video), "--out", str(unsmoothed), "--models-dir", str(fer_models_dir), "--detector", "ssd",
                      "--track-smoothing-ms", "0")
    assert result.returncode == 0, result.stderr
    faces = [face for r in read_jsonl(unsmoothed.with_suffix(".jsonl")) for face in r["faces"]]
    assert all("track_id" in face and "track_probabilities" not in face for face in faces)


def test_annotate_decides_the_kind_by_content(tmp_path: Path, faces_dir: Path, fer_models_dir: Path) -> None:
    """A JPEG without a suffix is an image; a video named .jpg is a video; neither overwrites the other's output."""
    photo = tmp_path / "photo"
    shutil.copy(faces_dir / PHOTO, photo)
    video = tmp_path / "photo.jpg"
    write_video(tmp_path / "video.avi", [cv2.imread(str(faces_dir / PHOTO))] * 2)  # OpenCV picks the format by name
    (tmp_path / "video.avi").rename(video)
    for path, expected_frames in ((photo, 1), (video, 2)):
        result = annotate(str(path), "--models-dir", str(fer_models_dir), "--detector", "haar")
        assert result.returncode == 0, result.stderr
    assert cv2.imread(str(tmp_path / "photo.annotated.jpg")).shape == cv2.imread(str(faces_dir / PHOTO)).shape
    assert len(read_jsonl(tmp_path / "photo.annotated.jsonl")) == 1
    assert len(read_jsonl(tmp_path / "photo.jpg.annotated.jsonl")) == 2
    assert cv2.VideoCapture(str(tmp_path / "photo.jpg.annotated.avi")).read()[0]


def test_annotate_json_switch_writes_the_lines_to_stdout(tmp_path: Path, faces_dir: Path,
                                                          fer_models_dir: Path) -> None:
    out = tmp_path / "out.jpg"
    result = annotate(str(faces_dir / PHOTO), "--out", str(out), "--json", "--models-dir", str(fer_models_dir))
    assert result.returncode == 0, result.stderr
    [record] = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(record["faces"]) == 3 and out.exists() and not out.with_suffix(".jsonl").exists()


def test_annotate_refuses_a_damaged_file_as_the_server_does(tmp_path: Path, faces_dir: Path,
                                                             fer_models_dir: Path) -> None:
    """Truncated and garbage files: exit 1, one line naming the file, no output left behind."""
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes((faces_dir / PHOTO).read_bytes()[:30_000])
    garbage = tmp_path / "broken.jpg"
    garbage.write_bytes(b"not a jpeg")
    for path in (truncated, garbage):
        result = annotate(str(path), "--models-dir", str(fer_models_dir))
        assert result.returncode == 1
        assert path.name in one_error_line(result, "fer-annotate")
    assert sorted(item.name for item in tmp_path.iterdir()) == ["broken.jpg", "truncated.jpg"]


def test_annotate_says_what_is_wrong_with_the_input_path(tmp_path: Path) -> None:
    folder = annotate(str(tmp_path))
    assert folder.returncode == 2 and "is a folder" in one_error_line(folder, "fer-annotate")
    missing = annotate(str(tmp_path / "absent.jpg"))
    assert missing.returncode == 2 and "absent.jpg: no such file" in one_error_line(missing, "fer-annotate")


def test_annotate_says_when_the_server_backend_cannot_be_used(tmp_path: Path, faces_dir: Path) -> None:
    """--server: an unreachable server and an http:// URL are each one line, exit 1, nothing written."""
    photo = str(faces_dir / PHOTO)
    out = tmp_path / "out.jpg"
    down = run("annotate.cli", photo, "--out", str(out), "--server", "127.0.0.1:9", "--connect-timeout", "1")
    assert down.returncode == 1 and "cannot reach the server at 127.0.0.1:9" in one_error_line(down, "fer-annotate")
    url = run("annotate.cli", photo, "--out", str(out), "--server", "http://127.0.0.1:9")
    assert url.returncode == 1 and "not HTTP" in one_error_line(url, "fer-annotate")
    assert list(tmp_path.iterdir()) == []
