"""Emotion timelines (annotate/timeline.py) and the container times they and the JSON lines carry: a
variable-frame-rate video made here with PyAV (OpenCV writes constant rates only) goes through fer-annotate,
whose records must carry each frame's presentation time, not index / fps."""

from __future__ import annotations

import fractions
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from ferstream.annotate.records import FaceRecord, FrameRecord, read_jsonl
from ferstream.annotate.timeline import CSV_COLUMNS, Timeline, read_timeline_csv
from ferstream.model.labels import EMOTIONS

av = pytest.importorskip("av", reason="PyAV is in the dev extra: pip install -e .[dev]")

PHOTO = "2008_002506.jpg"  # three people
# Presentation times in ms of the test video's frames: bursts and pauses, as a phone records a still
# scene. At the container's nominal 25 fps, index / fps would give 0, 40, 80, 120, 160, 200.
VFR_TIMES_MS = [0, 40, 500, 533, 1700, 2900]


def write_vfr_video(path: Path, frames: list[np.ndarray], times_ms: list[int]) -> None:
    """An MJPEG Matroska video of BGR frames (H, W, 3), each shown from its time in times_ms (ms, rising);
    the container's nominal rate is 25 fps, which none of the gaps follows."""
    height, width = frames[0].shape[:2]
    millisecond = fractions.Fraction(1, 1000)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mjpeg", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuvj420p"
        stream.time_base = stream.codec_context.time_base = millisecond
        for image, time_ms in zip(frames, times_ms):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
            frame.pts, frame.time_base = time_ms, millisecond
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def vfr_clip(folder: Path, faces_dir: Path) -> Path:
    """The people photo at half size on frames 0, 1, 2, 4, 5 and a grey frame at 3 (the tracks must bridge it)."""
    photo = cv2.imread(str(faces_dir / PHOTO))
    photo = cv2.resize(photo, (photo.shape[1] // 4 * 2, photo.shape[0] // 4 * 2))  # even sizes for 4:2:0
    frames = [photo, photo, photo, np.full_like(photo, 128), photo, photo]
    path = folder / "vfr.mkv"
    write_vfr_video(path, frames, VFR_TIMES_MS)
    return path


def annotate(*arguments: str) -> subprocess.CompletedProcess:
    """fer-annotate with one inference thread, output captured."""
    return subprocess.run([sys.executable, "-m", "ferstream.annotate_command", *arguments, "--threads", "1"],
                          capture_output=True, text=True, timeout=180)


def test_the_test_video_really_has_a_variable_frame_rate(tmp_path: Path, faces_dir: Path) -> None:
    """The file itself: OpenCV reads the irregular times back (the property the next test relies on)."""
    capture = cv2.VideoCapture(str(vfr_clip(tmp_path, faces_dir)))
    times = []
    while capture.read()[0]:
        times.append(capture.get(cv2.CAP_PROP_POS_MSEC))
    fps = capture.get(cv2.CAP_PROP_FPS)
    assert times == pytest.approx(VFR_TIMES_MS)
    assert times != pytest.approx([1000 * index / fps for index in range(len(times))])


@pytest.mark.slow
def test_fer_annotate_writes_container_times_and_a_timeline(tmp_path: Path, faces_dir: Path,
                                                            fer_models_dir: Path) -> None:
    clip = vfr_clip(tmp_path, faces_dir)
    result = annotate(str(clip), "--models-dir", str(fer_models_dir), "--detector", "ssd")
    assert result.returncode == 0, result.stderr
    records = read_jsonl(tmp_path / "vfr.annotated.jsonl")
    assert [record["time_ms"] for record in records] == pytest.approx(VFR_TIMES_MS)
    assert [len(record["faces"]) for record in records] == [3, 3, 3, 0, 3, 3]

    rows = read_timeline_csv(tmp_path / "vfr.annotated.timeline.csv")
    assert tuple(rows[0]) == CSV_COLUMNS
    # One row per track per frame with its face, at that frame's container time.
    expected = sorted((float(record["time_ms"]), face["track_id"]) for record in records for face in record["faces"])
    found = sorted((float(row["time_ms"]), int(row["track_id"])) for row in rows)
    # pytest.approx takes flat sequences only (on a list of pairs it compared exactly): times and ids apart.
    assert [time_ms for time_ms, _ in found] == pytest.approx([time_ms for time_ms, _ in expected])
    assert [track for _, track in found] == [track for _, track in expected]
    assert {int(row["track_id"]) for row in rows} == {1, 2, 3}
    smoothed = {(record["time_ms"], face["track_id"]): face["track_probabilities"]
                for record in records for face in record["faces"]}
    for row in rows:
        probabilities = {name: float(row[name]) for name in EMOTIONS}
        assert probabilities == pytest.approx(smoothed[(float(row["time_ms"]), int(row["track_id"]))], abs=1e-4)
        assert row["emotion"] == max(probabilities, key=probabilities.get)

    plot = cv2.imread(str(tmp_path / "vfr.annotated.timeline.png"))
    assert plot is not None and plot.shape[0] > plot.shape[1] / 2  # three panels stacked
    assert "3 track(s)" in result.stderr


@pytest.mark.slow
def test_timeline_option_and_its_absence(tmp_path: Path, faces_dir: Path, fer_models_dir: Path) -> None:
    """--timeline PREFIX puts both files there; --no-timeline writes none; a still image never gets one."""
    clip = vfr_clip(tmp_path, faces_dir)
    result = annotate(str(clip), "--models-dir", str(fer_models_dir), "--detector", "haar",
                      "--timeline", str(tmp_path / "emotions"), "--out", str(tmp_path / "a.avi"))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "emotions.csv").is_file() and (tmp_path / "emotions.png").is_file()
    result = annotate(str(clip), "--models-dir", str(fer_models_dir), "--detector", "haar", "--no-timeline",
                      "--out", str(tmp_path / "b.avi"))
    assert result.returncode == 0, result.stderr
    assert not list(tmp_path.glob("b.*timeline*"))


def face(track_id: int | None, probabilities: dict[str, float], smoothed: dict[str, float] | None = None) -> FaceRecord:
    """A face record at a fixed box."""
    return FaceRecord((0, 0, 10, 10), 0.9, max(probabilities, key=probabilities.get), probabilities, track_id,
                      smoothed)


def test_timeline_rows_use_smoothed_probabilities_and_break_at_missed_frames(tmp_path: Path) -> None:
    own, smooth = {"happy": 0.9, "neutral": 0.1}, {"happy": 0.3, "neutral": 0.7}
    timeline = Timeline()
    timeline.add(FrameRecord(0, 64, 48, [face(1, own, smooth), face(None, own)], 10.0))
    timeline.add(FrameRecord(1, 64, 48, [face(1, own)], 25.5))  # smoothing off: the frame's own
    timeline.add(FrameRecord(2, 64, 48, [], 30.0))
    timeline.add(FrameRecord(3, 64, 48, [face(1, own, smooth)], 90.0))
    timeline.add(FrameRecord(0, 64, 48, [face(1, own)], None))  # a still image: no time, no point
    timeline.write_csv(tmp_path / "t.csv")
    rows = read_timeline_csv(tmp_path / "t.csv")
    assert [(row["time_ms"], row["track_id"], row["emotion"]) for row in rows] == [
        ("10.000", "1", "neutral"), ("25.500", "1", "happy"), ("90.000", "1", "neutral")]
    assert rows[0]["angry"] == "" and rows[0]["neutral"] == "0.7000"  # an unserved class is left empty
    assert [[point.frame for point in segment] for segment in timeline._segments(1)] == [[0, 1], [3]]
    assert (timeline.start_ms, timeline.end_ms) == (10.0, 90.0)
    timeline.plot(tmp_path / "t.png", "test")
    assert cv2.imread(str(tmp_path / "t.png")) is not None
