"""fer-client as a command: headless annotation of a video (the JSON-lines format fer-annotate writes too),
and clear errors for bad sources."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import pytest

from ferstream.annotate.records import read_jsonl


def fer_client(*args: str) -> list[str]:
    """The fer-client command line (the installed script beside this Python, else the one on PATH)."""
    script = Path(sys.executable).with_name("fer-client")
    return [str(script) if script.exists() else shutil.which("fer-client") or "fer-client", *args]


@pytest.fixture(scope="module")
def server(fer_server_factory, fer_models_dir):
    """A fer-server on loopback for this module."""
    return fer_server_factory("--models-dir", str(fer_models_dir))


def test_headless_writes_every_frame_and_the_faces_of_each(server, client_faces_video, client_box_iou, tmp_path):
    video = client_faces_video
    output, jsonl = tmp_path / "annotated.mp4", tmp_path / "faces.jsonl"
    done = subprocess.run(
        fer_client("--headless", "--server", server.address, "--source", str(video.path), "--detector", "ssd",
                   "--out", str(output), "--jsonl", str(jsonl)),
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr

    capture = cv2.VideoCapture(str(output))
    written = 0
    while (frame := capture.read())[0]:
        assert frame[1].shape == (480, 640, 3)
        written += 1
    assert written == video.frame_count

    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [record["frame"] for record in records] == list(range(video.frame_count))
    # The container's time of each frame: the test video is 10 fps with constant frame durations.
    assert [record["time_ms"] for record in records] == pytest.approx([100.0 * i for i in range(video.frame_count)])
    matched = total = 0
    for record in records:
        expected = video.boxes[video.photo_at(record["frame"])]
        boxes = [(f["box"]["x"], f["box"]["y"], f["box"]["width"], f["box"]["height"]) for f in record["faces"]]
        assert boxes, f"no face in frame {record['frame']}"
        matched += sum(any(client_box_iou(box, truth) >= 0.3 for truth in expected) for box in boxes)
        total += len(boxes)
        assert all(abs(sum(f["probabilities"].values()) - 1) < 0.01 for f in record["faces"])
    assert matched >= 0.8 * total, f"{matched} of {total} boxes are on a hand-labelled face"


def test_headless_and_fer_annotate_write_one_format(server, faces_dir, fer_models_dir, client_box_iou, tmp_path):
    """The same photo through the server (fer-client --headless) and in-process (fer-annotate): the same
    record keys, the same faces in the same order, probabilities within what JPEG re-encoding moves."""
    photo = faces_dir / "2008_002506.jpg"
    remote, local = tmp_path / "remote.jsonl", tmp_path / "local.jsonl"
    done = subprocess.run(fer_client("--headless", "--server", server.address, "--source", str(photo),
                                     "--detector", "ssd", "--jsonl", str(remote), "--jpeg-quality", "100"),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    done = subprocess.run([sys.executable, "-m", "ferstream.annotate_command", str(photo), "--detector", "ssd",
                           "--models-dir", str(fer_models_dir), "--out", str(tmp_path / "local.jpg"),
                           "--jsonl", str(local), "--threads", "1"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    [from_server] = read_jsonl(remote)
    [from_annotate] = read_jsonl(local)
    assert from_server.keys() == from_annotate.keys() == {"frame", "width", "height", "faces"}
    assert len(from_server["faces"]) == len(from_annotate["faces"]) == 3
    for served, offline in zip(from_server["faces"], from_annotate["faces"]):
        # A still image is on no track through either backend (the remote one asks with a unary call).
        assert served.keys() == offline.keys() == {"box", "detection_score", "emotion", "probabilities"}
        assert client_box_iou(box_of(served), box_of(offline)) > 0.9
        assert list(served["probabilities"]) == list(offline["probabilities"])
        assert served["probabilities"] == pytest.approx(offline["probabilities"], abs=0.05)


def box_of(face: dict) -> tuple[int, int, int, int]:
    """(x, y, width, height) of a JSON-lines face."""
    box = face["box"]
    return (box["x"], box["y"], box["width"], box["height"])


@pytest.mark.parametrize("headless", [True, False], ids=["headless", "window"])
@pytest.mark.parametrize(
    ("source", "message"),
    [("{tmp}/missing.mp4", "no such file"), ("{tmp}/garbage.mp4", "not a readable video"), ("97", "camera 97")],
    ids=["missing-file", "unreadable-file", "missing-camera"],
)
def test_a_bad_source_is_one_clear_message(tmp_path, source, message, headless):
    (tmp_path / "garbage.mp4").write_text("not a video")
    extra = ["--headless", "--jsonl", str(tmp_path / "out.jsonl")] if headless else []
    done = subprocess.run(
        fer_client("--server", "127.0.0.1:9", "--source", source.format(tmp=tmp_path), *extra),
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()], "one line"
    assert done.stderr.startswith("fer-client: error:") and message in done.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_headless_reports_an_unreachable_server(client_faces_video, tmp_path):
    done = subprocess.run(
        fer_client("--headless", "--server", "127.0.0.1:9", "--source", str(client_faces_video.path),
                   "--jsonl", str(tmp_path / "faces.jsonl"), "--connect-timeout", "1"),
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 1
    assert "cannot reach the server at 127.0.0.1:9" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.slow
def test_both_backends_write_container_times_and_one_format(server, faces_dir, fer_models_dir, tmp_path):
    """A variable-frame-rate video (made by the test with PyAV) through fer-annotate in-process, fer-annotate
    --server and fer-client --headless: every record carries the container's time of its frame (not index /
    fps), and the three write the same records: keys, times, faces, tracks (probabilities within what JPEG
    re-encoding moves), and the two fer-annotate runs the same timeline rows."""
    pytest.importorskip("av", reason="PyAV is in the dev extra: pip install -e .[dev]")
    from test_annotate_timeline import VFR_TIMES_MS, vfr_clip

    from ferstream.annotate.timeline import read_timeline_csv

    clip = vfr_clip(tmp_path, faces_dir)
    annotate = [sys.executable, "-m", "ferstream.annotate_command", str(clip), "--detector", "ssd",
                "--jpeg-quality", "100"]
    runs = {
        "local": [*annotate, "--out", str(tmp_path / "local.avi"), "--models-dir", str(fer_models_dir),
                  "--threads", "1"],
        "remote": [*annotate, "--out", str(tmp_path / "remote.avi"), "--server", server.address],
        "headless": fer_client("--headless", "--server", server.address, "--source", str(clip), "--detector", "ssd",
                               "--jpeg-quality", "100", "--out", str(tmp_path / "headless.avi"),
                               "--jsonl", str(tmp_path / "headless.jsonl")),
    }
    records = {}
    for name, command in runs.items():
        done = subprocess.run(command, capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, f"{name}: {done.stderr}"
        records[name] = read_jsonl(tmp_path / f"{name}.jsonl")
        assert [record["time_ms"] for record in records[name]] == pytest.approx(VFR_TIMES_MS), name
        assert cv2.VideoCapture(str(tmp_path / f"{name}.avi")).read()[0], name
    for name in ("remote", "headless"):
        for local, other in zip(records["local"], records[name], strict=True):
            assert other.keys() == local.keys() == {"frame", "time_ms", "width", "height", "faces"}
            assert [face.keys() for face in other["faces"]] == [face.keys() for face in local["faces"]]
            assert [f["track_id"] for f in other["faces"]] == [f["track_id"] for f in local["faces"]]
            for theirs, ours in zip(other["faces"], local["faces"]):
                assert theirs["track_probabilities"] == pytest.approx(ours["track_probabilities"], abs=0.05)
    local_rows = read_timeline_csv(tmp_path / "local.timeline.csv")
    remote_rows = read_timeline_csv(tmp_path / "remote.timeline.csv")
    key = [(row["time_ms"], row["track_id"]) for row in local_rows]
    assert key == [(row["time_ms"], row["track_id"]) for row in remote_rows] and len(key) == 15


@pytest.mark.parametrize("suffix", [".jpg", ".avi"])
def test_headless_takes_a_name_that_is_not_utf8(server, client_faces_video, faces_dir, tmp_path, suffix):
    # b"caf\xe9": "café" in Latin-1 (an old zip, a camera card); OpenCV cannot take such a name itself.
    name = os.fsdecode(b"caf\xe9")
    source = tmp_path / f"{name}{suffix}"
    shutil.copy(faces_dir / "2008_002506.jpg" if suffix == ".jpg" else client_faces_video.path, source)
    output, jsonl = tmp_path / f"{name}.annotated{suffix}", tmp_path / f"{name}.jsonl"
    done = subprocess.run(
        fer_client("--headless", "--server", server.address, "--source", str(source), "--out", str(output),
                   "--jsonl", str(jsonl)),
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    records = read_jsonl(jsonl)
    assert len(records) == (1 if suffix == ".jpg" else client_faces_video.frame_count)
    assert any(record["faces"] for record in records)
    assert output.stat().st_size > 0


@pytest.mark.parametrize("outputs", [("--jsonl", "SOURCE"), ("--out", "SOURCE"),
                                     ("--out", "x.jpg", "--jsonl", "x.jpg")])
def test_headless_refuses_outputs_on_the_source_or_on_one_file(faces_dir, tmp_path, outputs):
    source = tmp_path / "photo.jpg"
    shutil.copy(faces_dir / "2008_002506.jpg", source)
    original = source.read_bytes()
    arguments = [str(source) if value == "SOURCE" else str(tmp_path / value) if value == "x.jpg" else value
                 for value in outputs]
    done = subprocess.run(fer_client("--headless", "--server", "127.0.0.1:1", "--source", str(source), *arguments),
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("fer-client: error: ") and ("is an input file" in line or "both name" in line)
    assert source.read_bytes() == original and sorted(os.listdir(tmp_path)) == ["photo.jpg"]


def test_headless_says_what_the_face_limit_left_out_and_takes_a_limit(server, faces_dir, face_boxes, tmp_path):
    from helpers import face_mosaic

    mosaic, tiles = face_mosaic(faces_dir, face_boxes)  # 43 faces, over the server's limit of 32
    crowd = tmp_path / "crowd.png"
    cv2.imwrite(str(crowd), mosaic)
    jsonl = tmp_path / "crowd.jsonl"

    def faces(*options: str) -> tuple[dict, str]:
        done = subprocess.run(fer_client("--headless", "--server", server.address, "--source", str(crowd),
                                         "--jsonl", str(jsonl), *options),
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        [record] = read_jsonl(jsonl)
        return record, done.stderr

    record, said = faces()
    assert len(record["faces"]) == 32 and record["faces_omitted"] > 0
    assert f"{record['faces_omitted']} more left out by the face limit" in said
    record, said = faces("--max-faces", "10")
    assert len(record["faces"]) == 10 and record["faces_omitted"] > 22
