"""Every dataset format, on the real files in ../shared or on small files the test writes."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from ferstream.training.data import DatasetError, load_dataset
from ferstream.training.data.detect import cache_dir
from ferstream.model.labels import EMOTIONS


def write_class_folder(root: Path, per_class: dict[str, int], seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    for name, count in per_class.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            cv2.imwrite(str(root / name / f"img_{i}.png"), rng.integers(0, 256, (48, 48), dtype=np.uint8))


def test_kaggle_layout_splits_by_folder_and_prefix(shared: Path) -> None:
    root = shared / "datasets" / "fer2013"
    public = load_dataset(root, "PublicTest")
    assert len(public) == 3589
    assert public.images.shape == (3589, 48, 48) and public.images.dtype == np.uint8
    # Counts published with the data: angry 467, disgust 56, fear 496, happy 895, neutral 607, sad 653, surprise 415.
    assert public.class_counts() == {"angry": 467, "disgust": 56, "fear": 496, "happy": 895,
                                     "sad": 653, "surprise": 415, "neutral": 607}
    # The test/ folder holds PublicTest files only here, so asking for PrivateTest finds nothing.
    with pytest.raises(DatasetError, match="no images"):
        load_dataset(root, "PrivateTest")


def test_bare_class_folder_is_the_same_data(shared: Path) -> None:
    bare = load_dataset(shared / "datasets" / "fer2013" / "test")
    kaggle = load_dataset(shared / "datasets" / "fer2013", "PublicTest")
    assert np.array_equal(bare.images, kaggle.images) and np.array_equal(bare.labels, kaggle.labels)


def test_root_with_several_splits_needs_a_split(shared: Path) -> None:
    with pytest.raises(DatasetError, match="several splits"):
        load_dataset(shared / "datasets" / "fer2013")


def test_second_load_comes_from_the_cache(shared: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first load writes the decoded cache; the second reads it (shown by marking the cached pixels)."""
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))  # empty: no earlier test cached this path
    path = shared / "datasets" / "fer2013" / "test"
    first = load_dataset(path)
    [cached] = cache_dir().glob("*.npz")
    with np.load(cached) as data:
        arrays = dict(data)
    arrays["images"][0] = 255 - arrays["images"][0]
    np.savez(cached, **arrays)
    second = load_dataset(path)
    assert np.array_equal(second.images[0], 255 - first.images[0])
    assert np.array_equal(second.images[1:], first.images[1:]) and np.array_equal(second.labels, first.labels)


def test_cache_notices_changed_files(tmp_path: Path) -> None:
    write_class_folder(tmp_path, {"happy": 3, "sad": 2})
    assert len(load_dataset(tmp_path)) == 5
    write_class_folder(tmp_path, {"angry": 4}, seed=1)
    assert len(load_dataset(tmp_path)) == 9


def test_corrupt_image_and_empty_class_are_counted_skips(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_class_folder(tmp_path, {"happy": 3, "fear": 2})
    (tmp_path / "happy" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (tmp_path / "neutral").mkdir()
    faces = load_dataset(tmp_path, use_cache=False)
    assert len(faces) == 5 and faces.skipped == 1
    errors = capsys.readouterr().err
    assert "skipped 1 unreadable image" in errors and "neutral: class folder has no images" in errors


def test_missing_and_malformed_folders_give_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no such file or folder"):
        load_dataset(tmp_path / "absent")
    (tmp_path / "misc").mkdir()
    with pytest.raises(DatasetError, match="not a dataset"):
        load_dataset(tmp_path)


def test_kaggle_csv_with_a_bad_row(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    rng = np.random.default_rng(0)
    rows = ["emotion,pixels,Usage"]
    expected = []
    for label, usage in [(3, "Training"), (0, "PublicTest"), (6, "Training")]:
        pixels = rng.integers(0, 256, 48 * 48)
        expected.append((label, usage, pixels))
        rows.append(f"{label},{' '.join(map(str, pixels))},{usage}")
    rows.insert(2, "9,1 2 3,Training")  # bad label and too few pixels
    path = tmp_path / "fer2013.csv"
    path.write_text("\n".join(rows) + "\n")

    everything = load_dataset(path, use_cache=False)
    assert everything.labels.tolist() == [3, 0, 6] and everything.skipped == 1
    assert np.array_equal(everything.images[2].ravel(), expected[2][2])
    assert "skipped 1 malformed row(s) (lines 3)" in capsys.readouterr().err
    training = load_dataset(path, "Training", use_cache=False)
    assert training.labels.tolist() == [3, 6]


def test_csv_with_the_wrong_header(tmp_path: Path) -> None:
    path = tmp_path / "other.csv"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(DatasetError, match="expected a header"):
        load_dataset(path)


def test_ferplus_real_labels(shared: Path) -> None:
    valid = load_dataset(shared / "datasets" / "ferplus", "PublicTest")
    assert 3000 < len(valid) < 3589  # unknown/NF and contempt majorities are dropped
    assert valid.soft_labels.shape == (len(valid), 7)
    assert np.allclose(valid.soft_labels.sum(axis=1), 1)
    assert np.array_equal(valid.labels, valid.soft_labels.argmax(axis=1))


def test_ferplus_contempt_and_unknown_handling(tmp_path: Path) -> None:
    # votes: neutral, happiness, surprise, sadness, anger, disgust, fear, contempt, unknown, NF
    rows = {
        "a.png": [0, 8, 0, 0, 0, 0, 0, 2, 0, 0],  # happy; contempt votes removed from the soft label
        "b.png": [1, 0, 0, 0, 0, 0, 0, 9, 0, 0],  # contempt majority: dropped
        "c.png": [0, 0, 0, 0, 0, 0, 0, 0, 3, 7],  # not a face: dropped
        "d.png": [2, 0, 0, 0, 6, 0, 0, 0, 2, 0],  # angry
    }
    for name in rows:
        cv2.imwrite(str(tmp_path / name), np.full((48, 48), 128, np.uint8))
    (tmp_path / "label.csv").write_text(
        "".join(f'{name},"(0, 0, 48, 48)",{",".join(map(str, votes))}\n' for name, votes in rows.items()))
    faces = load_dataset(tmp_path, use_cache=False)
    assert [EMOTIONS[i] for i in faces.labels] == ["happy", "angry"]
    assert faces.soft_labels[0, EMOTIONS.index("happy")] == pytest.approx(1.0)
    assert faces.soft_labels[1, EMOTIONS.index("angry")] == pytest.approx(0.75)
    assert faces.soft_labels[1, EMOTIONS.index("neutral")] == pytest.approx(0.25)
    assert "dropped 1 unknown/NF and 1 contempt" in faces.source


def test_ckplus_maps_classes_and_keeps_subjects(shared: Path, capsys: pytest.CaptureFixture) -> None:
    faces = load_dataset(shared / "datasets" / "ckplus" / "CK+48", use_cache=False)
    assert len(faces) == 981 - 54  # contempt has no FER2013 class
    assert "contempt" in capsys.readouterr().err
    counts = faces.class_counts()
    assert counts["angry"] == 135 and counts["sad"] == 84 and counts["neutral"] == 0
    assert faces.groups is not None and all(g.startswith("S") for g in faces.groups)
