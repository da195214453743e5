"""fer-annotate on the files of real folders: names that are not UTF-8, folders that link back into
themselves, outputs that would land on inputs, earlier annotated copies, and every image kind a single
run takes (HEIC, TIFF)."""

from __future__ import annotations

import csv
import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from ferstream.annotate.records import read_jsonl

from test_annotate_cli import PHOTO, annotate, one_error_line, write_video

# b"caf\xe9": "café" in Latin-1, as names come from old zips and camera cards; not UTF-8.
LATIN1 = b"caf\xe9"


def latin1_path(folder: Path, suffix: str) -> Path:
    """folder/café{suffix} with the é as the Latin-1 byte 0xE9 (Python's surrogateescape str of it)."""
    return folder / os.fsdecode(LATIN1 + suffix.encode())


@pytest.mark.slow
def test_a_name_that_is_not_utf8_is_annotated_and_written_escaped(tmp_path: Path, faces_dir: Path,
                                                                  fer_models_dir: Path) -> None:
    photo = latin1_path(tmp_path, ".jpg")
    shutil.copy(faces_dir / PHOTO, photo)
    video = latin1_path(tmp_path, ".avi")
    image = cv2.imread(str(faces_dir / PHOTO))
    write_video(tmp_path / "clip.avi", [image, image])  # OpenCV itself cannot take the name
    (tmp_path / "clip.avi").rename(video)

    for source in (photo, video):
        result = annotate(str(source), "--models-dir", str(fer_models_dir))
        assert result.returncode == 0, result.stderr
        assert "caf\\xe9" in result.stderr  # the summary names the files as the outputs do
    written = sorted(os.listdir(os.fsencode(tmp_path)))
    assert LATIN1 + b".annotated.jpg" in written and LATIN1 + b".annotated.avi" in written
    annotated = cv2.imdecode(np.fromfile(latin1_path(tmp_path, ".annotated.jpg"), np.uint8), cv2.IMREAD_COLOR)
    assert annotated.shape == image.shape
    assert len(read_jsonl(latin1_path(tmp_path, ".annotated.jsonl"))) == 2

    table, lines = tmp_path / "out" / "faces.csv", tmp_path / "out" / "faces.jsonl"
    table.parent.mkdir()
    result = annotate(str(photo), str(video), "--csv", str(table), "--jsonl", str(lines),
                      "--models-dir", str(fer_models_dir))
    assert result.returncode == 0, result.stderr
    with open(table, encoding="utf-8", newline="") as stream:
        files = {row["file"] for row in csv.DictReader(stream)}
    escaped = str(tmp_path / "caf\\xe9")
    assert files == {escaped + ".jpg", escaped + ".avi"}
    assert {record["file"] for record in read_jsonl(lines)} == files


@pytest.mark.parametrize("option", ["--csv", "--jsonl"])
def test_an_output_naming_the_input_is_refused_and_the_photo_kept(option: str, tmp_path: Path, faces_dir: Path,
                                                                  fer_models_dir: Path) -> None:
    photo = tmp_path / "photo.jpg"
    shutil.copy(faces_dir / PHOTO, photo)
    original = photo.read_bytes()
    for inputs in ([photo], [tmp_path]):  # one file, and a batch of its folder
        result = annotate(*map(str, inputs), option, str(photo), "--models-dir", str(fer_models_dir))
        assert result.returncode == 2
        assert "is an input file" in one_error_line(result, "fer-annotate")
        assert photo.read_bytes() == original
    assert sorted(os.listdir(tmp_path)) == ["photo.jpg"]


def test_csv_and_jsonl_naming_one_file_are_refused(tmp_path: Path, faces_dir: Path, fer_models_dir: Path) -> None:
    photo = tmp_path / "photo.jpg"
    shutil.copy(faces_dir / PHOTO, photo)
    both = tmp_path / "faces.txt"
    for inputs in ([photo], [tmp_path]):
        result = annotate(*map(str, inputs), "--csv", str(both), "--jsonl", str(both),
                          "--models-dir", str(fer_models_dir))
        assert result.returncode == 2
        assert "both name" in one_error_line(result, "fer-annotate")
        assert not both.exists()


@pytest.mark.slow
def test_a_folder_run_leaves_the_annotated_copies_of_earlier_runs_out(tmp_path: Path, faces_dir: Path,
                                                                     fer_models_dir: Path) -> None:
    photo = tmp_path / "photo.jpg"
    shutil.copy(faces_dir / PHOTO, photo)
    assert annotate(str(photo), "--models-dir", str(fer_models_dir)).returncode == 0
    assert (tmp_path / "photo.annotated.jpg").exists()
    lines = tmp_path / "faces.jsonl"
    result = annotate(str(tmp_path), "--jsonl", str(lines), "--models-dir", str(fer_models_dir))
    assert result.returncode == 0, result.stderr
    assert [record["file"] for record in read_jsonl(lines)] == [str(photo)]
    assert "1 file(s) done" in result.stderr


def test_links_back_into_the_folder_end_the_search_and_each_file_is_done_once(tmp_path: Path, faces_dir: Path,
                                                                              fer_models_dir: Path) -> None:
    folder = tmp_path / "photos"
    (folder / "inner").mkdir(parents=True)
    shutil.copy(faces_dir / PHOTO, folder / "inner" / "photo.jpg")
    (folder / "again").symlink_to(".")  # two links to the folder itself, one up from below
    (folder / "inner" / "up").symlink_to("..")
    lines = tmp_path / "faces.jsonl"
    result = annotate(str(folder), "--jsonl", str(lines), "--models-dir", str(fer_models_dir))
    assert result.returncode == 0, result.stderr
    assert [record["file"] for record in read_jsonl(lines)] == [str(folder / "inner" / "photo.jpg")]


def test_a_crowd_says_what_the_face_limit_left_out_and_max_faces_is_honoured(tmp_path: Path, faces_dir: Path,
                                                                             fer_models_dir: Path,
                                                                             face_boxes) -> None:
    from helpers import face_mosaic

    mosaic, tiles = face_mosaic(faces_dir, face_boxes)  # 43 faces, over the default limit of 32
    cv2.imwrite(str(tmp_path / "crowd.png"), mosaic)
    table, lines = tmp_path / "out" / "faces.csv", tmp_path / "out" / "faces.jsonl"
    table.parent.mkdir()

    def run(*options: str) -> tuple[dict, int, str]:
        result = annotate(str(tmp_path / "crowd.png"), str(tmp_path / "crowd.png"), "--csv", str(table),
                          "--jsonl", str(lines), "--models-dir", str(fer_models_dir), *options)
        assert result.returncode == 0, result.stderr
        [record] = read_jsonl(lines)
        with open(table, encoding="utf-8", newline="") as stream:
            rows = len(list(csv.DictReader(stream)))
        return record, rows, result.stderr

    record, rows, said = run()
    assert len(record["faces"]) == rows == 32 and record["faces_omitted"] > 0
    assert f"{record['faces_omitted']} more left out by the face limit" in said
    everyone, rows, said = run("--max-faces", "200")
    assert len(everyone["faces"]) == rows == 32 + record["faces_omitted"]
    assert "faces_omitted" not in everyone and "left out" not in said


def write_heic(path: Path, image: np.ndarray) -> None:
    """image (BGR) as a HEIC file, the iPhone's default format (HEVC in a HEIF container)."""
    import pillow_heif

    height, width = image.shape[:2]
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    pillow_heif.from_bytes(mode="RGB", size=(width, height), data=rgb.tobytes()).save(str(path), quality=90)


@pytest.mark.slow
def test_a_folder_run_takes_heic_and_tiff_as_a_single_run_does_and_names_what_it_leaves_out(
        tmp_path: Path, faces_dir: Path, fer_models_dir: Path) -> None:
    folder = tmp_path / "phone"
    folder.mkdir()
    image = cv2.imread(str(faces_dir / PHOTO))
    write_heic(folder / "IMG_0001.HEIC", image)
    cv2.imwrite(str(folder / "scan.tif"), image)
    (folder / "notes.txt").write_text("not a photo\n")
    (folder / "readme.txt").write_text("nor this\n")

    alone = annotate(str(folder / "IMG_0001.HEIC"), "--json", "--models-dir", str(fer_models_dir))
    assert alone.returncode == 0, alone.stderr

    lines = tmp_path / "faces.jsonl"
    result = annotate(str(folder), "--jsonl", str(lines), "--models-dir", str(fer_models_dir))
    assert result.returncode == 0, result.stderr
    records = read_jsonl(lines)
    assert [record["file"] for record in records] == [str(folder / "IMG_0001.HEIC"), str(folder / "scan.tif")]
    assert all(len(record["faces"]) == 3 for record in records)
    [skipped] = [line for line in result.stderr.splitlines() if "left out" in line]
    assert "2 .txt file(s)" in skipped and "notes.txt" in skipped
