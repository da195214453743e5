"""fer-ckplus on a few CK+ subjects, with fine-tuning: fer-train's loop adapts the model to CK+."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from ferstream.model.labels import canonical_name
from ferstream.training.ckplus import main as ckplus_main

FOLDS = 4


@pytest.fixture(scope="module")
def few_subjects(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """CK+48 cut to every fifth subject (24 of 118, about 200 faces), in a temp folder."""
    source = shared / "datasets" / "ckplus" / "CK+48"
    subjects = sorted({re.match(r"(S\d+)_", image.name).group(1) for image in source.rglob("*.png")})
    keep = set(subjects[::5])
    root = tmp_path_factory.mktemp("ckplus") / "CK+48"
    for folder in source.iterdir():
        (root / folder.name).mkdir(parents=True)
        for image in folder.iterdir():
            if image.name.split("_")[0] in keep:
                shutil.copy(image, root / folder.name / image.name)
    return root


def run(data: Path, epochs: int, capsys: pytest.CaptureFixture) -> dict:
    assert ckplus_main([str(data), "--folds", str(FOLDS), "--epochs", str(epochs), "--threads", "2", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


@pytest.mark.slow
def test_fine_tuning_on_the_other_folds_beats_the_model_as_shipped(few_subjects: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    as_shipped = run(few_subjects, 0, capsys)
    tuned = run(few_subjects, 2, capsys)
    # Every face of CK+'s six FER2013 classes is scored once (contempt has no class of ours).
    faces = [image for folder in few_subjects.iterdir() if canonical_name(folder.name) for image in folder.iterdir()]
    assert tuned["n"] == as_shipped["n"] == len(faces)
    assert tuned["classes"] == ["angry", "disgust", "fear", "happy", "sad", "surprise"]
    assert len(tuned["fold_accuracies"]) == FOLDS
    assert tuned["mean_accuracy"] == pytest.approx(sum(tuned["fold_accuracies"]) / FOLDS)
    # Far above chance (1/6) as shipped, and better after two epochs on the other subjects.
    assert as_shipped["mean_accuracy"] > 0.5
    assert tuned["mean_accuracy"] > as_shipped["mean_accuracy"]


def test_more_folds_than_subjects_is_a_clear_error(few_subjects: Path, capsys: pytest.CaptureFixture) -> None:
    assert ckplus_main([str(few_subjects), "--folds", "30", "--epochs", "0"]) == 2
    # One error line; the loader's note on CK+'s contempt folder may come before it (on a first read only,
    # before the dataset cache holds the folder).
    lines = capsys.readouterr().err.strip().splitlines()
    [line] = [line for line in lines if not line.startswith("warning: ")]
    assert re.search(r": \d+ subjects cannot fill 30 folds$", line), line
