"""fer-annotate as a command: one image or video (its annotated copy, JSON lines, the kind by content, a
damaged file), a batch of files and folders (one JSON-lines file and one CSV, a summary, the exit code), the
source's audio kept in an annotated video, and its errors (one line, never a traceback)."""

from __future__ import annotations

import csv
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
    return run("annotate_command", *arguments, "--threads", "1")


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


@pytest.mark.slow
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


@pytest.mark.slow  # 26 s on a busy 2-core machine: a photo, a folder and a video, each model loaded
def test_annotate_chooses_the_model_per_kind_of_input(tmp_path: Path, faces_dir: Path, fer_models_dir: Path) -> None:
    """Images default to the accurate model and videos to the fast one, as the server's calls; --model picks."""
    photo = faces_dir / PHOTO
    video = tmp_path / "clip.avi"
    write_video(video, [cv2.imread(str(photo))] * 2)

    def probabilities(path: Path, *model: str) -> list[list[float]]:
        result = annotate(str(path), "--json", "--out", str(tmp_path / f"out{path.suffix or '.jpg'}"), "--models-dir",
                          str(fer_models_dir), *model)
        assert result.returncode == 0, result.stderr
        records = [json.loads(line) for line in result.stdout.splitlines()]
        return [list(face["probabilities"].values()) for record in records for face in record["faces"]]

    image_default, image_fast = probabilities(photo), probabilities(photo, "--model", "fast")
    assert image_default == probabilities(photo, "--model", "accurate") != image_fast
    video_default = probabilities(video)
    assert video_default == probabilities(video, "--model", "fast") != probabilities(video, "--model", "accurate")
    assert len(video_default) == 2 * len(image_fast) == 6
    mistyped = annotate(str(photo), "--models-dir", str(fer_models_dir), "--model", "precise")
    assert mistyped.returncode == 1 and "unknown model 'precise'; choose one of fast, accurate" in mistyped.stderr


@pytest.mark.slow
def test_annotate_decides_the_kind_by_content(tmp_path: Path, faces_dir: Path, fer_models_dir: Path) -> None:
    """A JPEG without a suffix is an image; a video named .jpg is a video; neither overwrites the other's output."""
    photo = tmp_path / "photo"
    shutil.copy(faces_dir / PHOTO, photo)
    video = tmp_path / "photo.jpg"
    write_video(tmp_path / "video.avi", [cv2.imread(str(faces_dir / PHOTO))] * 2)  # OpenCV picks the format by name
    (tmp_path / "video.avi").rename(video)
    for path in (photo, video):
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


@pytest.mark.slow
def test_annotate_says_what_is_wrong_with_the_input_path(tmp_path: Path) -> None:
    """Bad usage is one line and exit 2, before any work: a missing path (alone or in a batch), a folder
    (a batch) without --jsonl or --csv, and --out or --timeline for more than one file."""
    folder = annotate(str(tmp_path))
    assert folder.returncode == 2 and "give at least one" in one_error_line(folder, "fer-annotate")
    missing = annotate(str(tmp_path / "absent.jpg"))
    assert missing.returncode == 2 and "absent.jpg: no such file" in one_error_line(missing, "fer-annotate")
    in_batch = annotate(str(tmp_path), str(tmp_path / "absent.jpg"), "--csv", str(tmp_path / "faces.csv"))
    assert in_batch.returncode == 2 and "absent.jpg: no such file" in one_error_line(in_batch, "fer-annotate")
    out = annotate(str(tmp_path), "--out", str(tmp_path / "x.jpg"), "--csv", str(tmp_path / "faces.csv"))
    assert out.returncode == 2 and "--out" in one_error_line(out, "fer-annotate")
    assert list(tmp_path.iterdir()) == []
    empty = annotate(str(tmp_path), "--csv", str(tmp_path / "faces.csv"))
    assert empty.returncode == 1 and "no image or video files" in one_error_line(empty, "fer-annotate")


def test_annotate_says_when_the_server_backend_cannot_be_used(tmp_path: Path, faces_dir: Path) -> None:
    """--server: an unreachable server and an http:// URL are each one line, exit 1, nothing written."""
    photo = str(faces_dir / PHOTO)
    out = tmp_path / "out.jpg"
    down = run("annotate_command", photo, "--out", str(out), "--server", "127.0.0.1:9", "--connect-timeout", "1")
    assert down.returncode == 1 and "cannot reach the server at 127.0.0.1:9" in one_error_line(down, "fer-annotate")
    url = run("annotate_command", photo, "--out", str(out), "--server", "http://127.0.0.1:9")
    assert url.returncode == 1 and "not HTTP" in one_error_line(url, "fer-annotate")
    assert list(tmp_path.iterdir()) == []


# ----- batches: files and folders in, one JSON-lines file and one CSV out

CSV_HEADER = ["file", "frame", "time_ms", "x", "y", "width", "height", "detection_score", "emotion",
              *EMOTIONS, "track_id"]


def batch_folder(tmp_path: Path, faces_dir: Path) -> tuple[Path, list[Path]]:
    """A folder of copies of shared photos (one in a subfolder), a short video of one of them, a damaged
    JPEG, and files a batch must leave alone: a text file and a hidden folder with a photo in it.
    Returns the folder and the media files a batch finds in it, in its order."""
    folder = tmp_path / "photos"
    (folder / "more").mkdir(parents=True)
    (folder / ".cache").mkdir()
    good = [folder / "2008_002506.jpg", folder / "2008_001009.jpg", folder / "more" / "2009_004587.jpg"]
    for path in good:
        shutil.copy(faces_dir / path.name, path)
    shutil.copy(faces_dir / PHOTO, folder / ".cache" / "hidden.jpg")
    write_video(folder / "clip.avi", [cv2.imread(str(faces_dir / "2009_004587.jpg"))] * 3)
    (folder / "broken.jpg").write_bytes((faces_dir / PHOTO).read_bytes()[:30_000])
    (folder / "notes.txt").write_text("not a picture\n")
    found = [folder / "2008_001009.jpg", folder / "2008_002506.jpg", folder / "broken.jpg", folder / "clip.avi",
             folder / "more" / "2009_004587.jpg"]
    return folder, found


def test_a_folder_batch_skips_a_broken_file_and_writes_one_jsonl_and_one_csv(tmp_path: Path, faces_dir: Path,
                                                                             fer_models_dir: Path) -> None:
    folder, found = batch_folder(tmp_path, faces_dir)
    before = sorted(path.relative_to(folder) for path in folder.rglob("*"))
    jsonl, table = tmp_path / "faces.jsonl", tmp_path / "faces.csv"
    result = annotate(str(folder), "--jsonl", str(jsonl), "--csv", str(table), "--models-dir", str(fer_models_dir),
                      "--detector", "ssd")

    # The file left out is named first; exit 1 for the broken file, which is one line on stderr; the others
    # are done; then the summary.
    assert result.returncode == 1, result.stderr
    left_out, error, summary = result.stderr.strip().splitlines()
    assert left_out == ("fer-annotate: left out 1 .txt file(s), no image or video it reads "
                        f"(first: {folder / 'notes.txt'})")
    assert error.startswith("fer-annotate: error: ") and str(folder / "broken.jpg") in error
    records = read_jsonl(jsonl)
    faces = sum(len(r["faces"]) for r in records)
    assert summary == (f"fer-annotate: 4 file(s) done, 1 failed, {faces} face(s) in 6 frame(s) -> {jsonl}, {table}")
    # A batch writes nothing beside its inputs.
    assert sorted(path.relative_to(folder) for path in folder.rglob("*")) == before

    assert [(r["file"], r["frame"]) for r in records] == [
        (str(found[0]), 0), (str(found[1]), 0), (str(found[3]), 0), (str(found[3]), 1), (str(found[3]), 2),
        (str(found[4]), 0)]
    with open(table, newline="", encoding="utf-8") as stream:
        rows = list(csv.reader(stream))
    assert rows[0] == CSV_HEADER
    rows = [dict(zip(CSV_HEADER, row)) for row in rows[1:]]
    assert len(rows) == faces
    per_file = {path.name: sum(row["file"] == str(path) for row in rows) for path in found}
    # Every face of the good files, seen by the same detector on the same photo in the video's frames.
    assert per_file["2008_002506.jpg"] == 3 and per_file["broken.jpg"] == 0
    assert per_file["2008_001009.jpg"] > 0 and per_file["clip.avi"] == 3 * per_file["2009_004587.jpg"] > 0
    for row, (record, face) in zip(rows, [(r, face) for r in records for face in r["faces"]]):
        assert row["file"] == record["file"] and int(row["frame"]) == record["frame"]
        box = face["box"]
        assert [int(row[key]) for key in ("x", "y", "width", "height")] == [box[key] for key in box]
        assert float(row["detection_score"]) == face["detection_score"] and row["emotion"] == face["emotion"]
        probabilities = [float(row[name]) for name in EMOTIONS]
        assert probabilities == [face["probabilities"][name] for name in EMOTIONS]
        assert row["emotion"] == EMOTIONS[int(np.argmax(probabilities))] and abs(sum(probabilities) - 1) < 1e-3
        still = not row["file"].endswith(".avi")
        assert (row["time_ms"] == "") == still and (row["track_id"] == "") == still
    video_rows = [row for row in rows if row["file"].endswith("clip.avi")]
    assert sorted({float(row["time_ms"]) for row in video_rows}) == pytest.approx([0.0, 100.0, 200.0])
    assert {row["track_id"] for row in video_rows} == {str(n) for n in range(1, per_file["2009_004587.jpg"] + 1)}


def test_a_batch_of_files_and_folders_without_failures_exits_0(tmp_path: Path, faces_dir: Path,
                                                                fer_models_dir: Path) -> None:
    """Files and folders mixed; a file found twice is annotated once; --csv alone is enough."""
    folder = tmp_path / "more"
    folder.mkdir()
    photo = tmp_path / PHOTO
    shutil.copy(faces_dir / PHOTO, photo)
    shutil.copy(faces_dir / "2009_004587.jpg", folder / "two.jpg")
    table = tmp_path / "faces.csv"
    result = annotate(str(photo), str(folder), str(folder / "two.jpg"), "--csv", str(table),
                      "--models-dir", str(fer_models_dir), "--detector", "ssd")
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == f"fer-annotate: 2 file(s) done, 0 failed, 5 face(s) in 2 frame(s) -> {table}"
    with open(table, newline="", encoding="utf-8") as stream:
        files = [row["file"] for row in csv.DictReader(stream)]
    assert files == [str(photo)] * 3 + [str(folder / "two.jpg")] * 2


def test_a_named_file_that_is_no_image_fails_in_a_batch_without_ending_it(tmp_path: Path, faces_dir: Path,
                                                                            fer_models_dir: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture\n")
    photo = tmp_path / PHOTO
    shutil.copy(faces_dir / PHOTO, photo)
    result = annotate(str(notes), str(photo), "--json", "--models-dir", str(fer_models_dir))
    assert result.returncode == 1
    error, summary = result.stderr.strip().splitlines()
    assert error == f"fer-annotate: error: {notes}: not a readable image or video"
    assert summary.startswith("fer-annotate: 1 file(s) done, 1 failed, 3 face(s)")
    [record] = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["file"] == str(photo) and len(record["faces"]) == 3


def test_a_single_file_can_write_the_csv_too(tmp_path: Path, faces_dir: Path, fer_models_dir: Path) -> None:
    photo = tmp_path / PHOTO
    shutil.copy(faces_dir / PHOTO, photo)
    table = tmp_path / "faces.csv"
    result = annotate(str(photo), "--csv", str(table), "--models-dir", str(fer_models_dir))
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "2008_002506.annotated.jpg").exists()
    with open(table, newline="", encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 3 and {row["file"] for row in rows} == {str(photo)}


def broken_avi(path: Path, faces_dir: Path) -> None:
    """The first 3000 bytes of an MJPG AVI: a RIFF header and no index."""
    whole = path.with_name("whole.avi")
    write_video(whole, [cv2.imread(str(faces_dir / PHOTO))] * 3)
    path.write_bytes(whole.read_bytes()[:3000])
    whole.unlink()


@pytest.mark.parametrize("kind", ["empty", "png_signature", "truncated_avi", "truncated_mp4", "gif_header"])
def test_a_bad_input_file_is_one_line_and_exit_1_never_a_traceback(kind: str, tmp_path: Path, faces_dir: Path,
                                                                    fer_models_dir: Path) -> None:
    """Files that start like an image or a video and are not one. OpenCV's own AVI reader used to add a
    line of its own for a broken AVI."""
    path = tmp_path / {"empty": "empty.jpg", "png_signature": "sig.png", "truncated_avi": "clip.avi",
                       "truncated_mp4": "clip.mp4", "gif_header": "anim.gif"}[kind]
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "png_signature":
        path.write_bytes(b"\x89PNG\r\n\x1a\n")
    elif kind == "truncated_avi":
        broken_avi(path, faces_dir)
    elif kind == "truncated_mp4":
        whole = tmp_path / "whole.mp4"
        write_video_av(whole, [cv2.imread(str(faces_dir / PHOTO))] * 3, audio_seconds=0.0)
        path.write_bytes(whole.read_bytes()[:200])
        whole.unlink()
    else:
        path.write_bytes(b"GIF89a\x01")
    result = annotate(str(path), "--models-dir", str(fer_models_dir))
    assert result.returncode == 1
    assert path.name in one_error_line(result, "fer-annotate")
    assert sorted(item.name for item in tmp_path.iterdir()) == [path.name]


# ----- the annotated copy of a video keeps the source's audio

AUDIO_RATE = 16_000


def write_video_av(path: Path, frames: list[np.ndarray], fps: int = 10, audio_seconds: float = 1.0) -> None:
    """A video written by PyAV (MPEG-4 Part 2 in the container path's suffix names) with, when
    audio_seconds > 0, an AAC track of a 440 Hz tone that long."""
    import av

    height, width = frames[0].shape[:2]
    with av.open(str(path), "w") as output:
        video = output.add_stream("mpeg4", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        audio = output.add_stream("aac", rate=AUDIO_RATE, layout="mono") if audio_seconds > 0 else None
        for frame in frames:
            output.mux(video.encode(av.VideoFrame.from_ndarray(frame, format="bgr24")))
        output.mux(video.encode(None))
        if audio is not None:
            count = int(AUDIO_RATE * audio_seconds)
            tone = (0.5 * np.sin(2 * np.pi * 440 * np.arange(count) / AUDIO_RATE)).astype(np.float32)
            step = audio.codec_context.frame_size
            for start in range(0, count, step):
                chunk = av.AudioFrame.from_ndarray(tone[None, start:start + step], format="fltp", layout="mono")
                chunk.sample_rate, chunk.pts = AUDIO_RATE, start
                output.mux(audio.encode(chunk))
            output.mux(audio.encode(None))


def audio_packets(path: Path) -> list[bytes]:
    """The bytes of every packet of path's first audio stream."""
    import av

    with av.open(str(path)) as container:
        return [bytes(packet) for packet in container.demux(container.streams.audio[0]) if packet.size]


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_the_annotated_copy_of_a_video_keeps_its_audio(suffix: str, tmp_path: Path, faces_dir: Path,
                                                       fer_models_dir: Path) -> None:
    """The audio track is copied packet for packet (no re-encoding); the drawn frames are all there."""
    import av

    photo = cv2.resize(cv2.imread(str(faces_dir / PHOTO)), (320, 240))
    source = tmp_path / f"talk{suffix}"
    write_video_av(source, [photo] * 10)
    result = annotate(str(source), "--models-dir", str(fer_models_dir), "--detector", "ssd", "--no-timeline")
    assert result.returncode == 0, result.stderr
    out = tmp_path / f"talk.annotated{suffix}"
    assert audio_packets(out) == audio_packets(source) != []
    with av.open(str(out)) as container:
        [video] = container.streams.video
        drawn = [frame.to_ndarray(format="bgr24") for frame in container.decode(video)]
    assert len(drawn) == 10 and drawn[0].shape == photo.shape
    assert np.abs(drawn[0].astype(int) - photo).mean() > 1  # boxes and labels drawn on it
    assert sorted(item.name for item in tmp_path.iterdir()) == sorted(
        [source.name, out.name, "talk.annotated.jsonl"])


def test_a_video_without_audio_is_written_as_before(tmp_path: Path, faces_dir: Path, fer_models_dir: Path) -> None:
    import av

    source = tmp_path / "silent.mp4"
    write_video_av(source, [cv2.resize(cv2.imread(str(faces_dir / PHOTO)), (320, 240))] * 4, audio_seconds=0.0)
    result = annotate(str(source), "--models-dir", str(fer_models_dir), "--detector", "ssd", "--no-timeline")
    assert result.returncode == 0, result.stderr
    with av.open(str(tmp_path / "silent.annotated.mp4")) as container:
        assert not container.streams.audio and container.streams.video[0].frames == 4


@pytest.mark.parametrize("extra, named", [(["--tta", "none"], "--tta"), (["--model", "other.onnx"], "--model FILE")])
def test_options_for_the_in_process_model_are_refused_with_a_server(tmp_path: Path, extra: list[str],
                                                                      named: str) -> None:
    """With --server the server's models serve: options that would shape a model in this process would be
    silently ignored there, so they are refused before anything is read or sent."""
    photo = tmp_path / "photo.jpg"
    photo.write_bytes(b"not read")
    result = subprocess.run([sys.executable, "-m", "ferstream.annotate_command", str(photo), "--server", "127.0.0.1:9",
                             *extra], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert named in result.stderr and len(result.stderr.strip().splitlines()) == 1
