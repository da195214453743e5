"""fer-eval-path: FER2013 faces through the whole frame path, and the border-cut stability of the photos."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from ferstream.training.fullpath import FACE_PX, FRAME_SIZE, place_face, random_centre

FACES = 40


def eval_path(*arguments: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ferstream.training.fullpath", *arguments], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def options(shared: Path, fer_models_dir: Path) -> tuple[str, ...]:
    return ("--models-dir", str(fer_models_dir))


def test_a_placed_face_is_the_face_upscaled_in_its_frame(shared: Path) -> None:
    face = cv2.imread(str(next((shared / "datasets/fer2013/test/happy").iterdir())), cv2.IMREAD_GRAYSCALE)
    centre = random_centre(np.random.default_rng(0), FRAME_SIZE, FACE_PX)
    frame = place_face(face, centre, 0.0)
    assert frame.shape == (FRAME_SIZE[1], FRAME_SIZE[0], 3)
    left, top = round(centre[0] - FACE_PX / 2), round(centre[1] - FACE_PX / 2)
    inner = frame[top + 16:top + FACE_PX - 16, left + 16:left + FACE_PX - 16, 0]  # inside the feathered edge
    upscaled = cv2.resize(face, (FACE_PX, FACE_PX), interpolation=cv2.INTER_CUBIC)[16:-16, 16:-16]
    assert np.abs(inner.astype(int) - upscaled).max() <= 1
    with pytest.raises(ValueError):
        place_face(face, (10.0, 10.0), 0.0)  # a face must lie inside its frame


def test_faces_report_scores_the_path_beside_direct_crops(options) -> None:
    result = eval_path("faces", "--limit", str(FACES), "--json", *options)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    rows = report["rows"]
    assert [(row["condition"], row["alignment"]) for row in rows] == [
        (condition, alignment) for alignment in (True, False) for condition in ("upright", "rolled ±20°", "edge cut")]
    direct = rows[0]["direct_accuracy"]
    assert 0.3 < direct < 0.95  # the served model on PublicTest crops (about 0.67 on all of them)
    for row in rows:
        assert row["faces"] == FACES and row["direct_accuracy"] == direct
        assert 0.0 <= row["not_found"] < 0.5  # most placed faces are found
        found = 1.0 - row["not_found"]
        # Faces not found count as wrong: the path's accuracy is the found faces' accuracy times their share.
        assert row["path_accuracy"] == pytest.approx(row["found_accuracy"] * found, abs=1e-9)
        assert 0.2 < row["found_accuracy"] <= 1.0
        assert (row["unchanged"] is None) == (row["condition"] != "edge cut")
    # Detection does not depend on alignment: the same faces are found with it on and off.
    assert [row["not_found"] for row in rows[:3]] == [row["not_found"] for row in rows[3:]]


@pytest.mark.slow
def test_border_report_counts_every_cut(options, faces_dir: Path) -> None:
    result = eval_path("border", str(faces_dir), "--json", *options)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["faces"] >= 43 and report["fill"] == "replicate" and report["alignment"] is True
    assert report["faces"] * 2 < report["cuts"] <= report["faces"] * 4  # up to four sides per face
    assert report["redetected"] + report["lost"] == report["cuts"]
    assert report["same_box_unchanged"] >= 0.85 * report["cuts"]


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, options) -> None:
    result = eval_path("faces", str(tmp_path / "nowhere"), *options)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "nowhere" in result.stderr
    usage = eval_path("faces", "--limit", "0")
    assert usage.returncode == 2 and "--limit" in usage.stderr


@pytest.fixture(scope="module")
def labelled_photos(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three realfaces-dev photos per class, a class folder the evaluation skips, and an unreadable photo."""
    root = tmp_path_factory.mktemp("labelled")
    for folder in sorted((shared / "datasets" / "realfaces-dev").iterdir()):
        if folder.is_dir():
            (root / folder.name).mkdir()
            for photo in sorted(folder.iterdir())[:3]:
                (root / folder.name / photo.name).symlink_to(photo)
    (root / "contempt").mkdir()
    (root / "contempt" / "a.jpg").symlink_to(next((shared / "datasets" / "realfaces-dev" / "happy").iterdir()))
    (root / "sad" / "broken.jpg").write_bytes(b"not a jpeg")
    return root


@pytest.mark.slow
@pytest.mark.parametrize("model", ["fast", "accurate"])
def test_photos_report_scores_a_tier_on_labelled_photos(options, labelled_photos: Path, model: str) -> None:
    result = eval_path("photos", str(labelled_photos), "--model", model, "--json", *options)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["model"] == model and report["photos"] == 22  # 7 classes x 3, the broken one; not contempt
    confusion = np.array(report["confusion"])
    assert confusion.shape == (7, 8) and confusion.sum() == 22
    assert report["no_face"] == confusion[:, -1].sum() >= 1  # the unreadable photo counts as no face
    assert report["accuracy"] == pytest.approx(np.trace(confusion[:, :7]) / 22)
    assert report["balanced_accuracy"] == pytest.approx(np.mean(list(report["recall"].values())))
    assert 0.2 < report["accuracy"] <= 1.0 and report["ms_per_photo"] > 0
    text = eval_path("photos", str(labelled_photos), "--model", model, "--limit", "5", *options)
    assert text.returncode == 0 and "5 photos, model " + model in text.stdout and "| recall |" in text.stdout


def test_photos_refuses_an_unknown_folder_and_faces_an_accurate_model(tmp_path: Path, options) -> None:
    missing = eval_path("photos", str(tmp_path / "nowhere"), *options)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "nowhere" in missing.stderr
    accurate_faces = eval_path("faces", "--model", "accurate", "--limit", "1", *options)
    assert accurate_faces.returncode == 2 and "photos and light" in accurate_faces.stderr


def test_photos_place_face_crops_in_frames(options, shared: Path, tmp_path: Path) -> None:
    """CK+48's 48x48 crops are too small to detect as they are; placed in frames every face is found."""
    for folder in ("anger", "happy", "contempt"):  # CK+'s spellings; contempt has no class here
        (tmp_path / folder).mkdir()
        for photo in sorted((shared / "datasets" / "ckplus" / "CK+48" / folder).iterdir())[:2]:
            (tmp_path / folder / photo.name).symlink_to(photo)
    result = eval_path("photos", str(tmp_path), "--place", "--model", "fast", "--json", *options)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["photos"] == 4 and report["no_face"] == 0 and set(report["recall"]) == {"angry", "happy"}
