"""The GPU recipe's CPU smoke run: both stages (teacher, then distillation into the served width) on a few
hundred real FER2013 images for one epoch, with the files a GPU run brings back."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from ferstream.model.modelfile import SHIPPED_MODEL, load_model


@pytest.fixture(scope="module")
def few_faces(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Kaggle-layout FER2013 with 40 training and 10 PublicTest images per class (in a temp dir)."""
    root = tmp_path_factory.mktemp("fer2013-few")
    for split, per_class in (("train", 40), ("test", 10)):
        for class_dir in sorted((shared / "datasets" / "fer2013" / split).iterdir()):
            (root / split / class_dir.name).mkdir(parents=True)
            for image in sorted(class_dir.iterdir())[:per_class]:
                shutil.copy(image, root / split / class_dir.name / image.name)
    return root


def recipe(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ferstream.training.gpu_recipe", *args],
                          capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_the_smoke_run_trains_a_teacher_and_distils_the_served_width_from_it(few_faces: Path, tmp_path: Path) -> None:
    out = tmp_path / "gpu"
    finished = recipe("--smoke", "--stage", "both", "--data", str(few_faces), "--out", str(out))
    assert finished.returncode == 0, finished.stderr[-3000:]
    report = json.loads((out / "recipe.json").read_text())
    assert [report[stage]["returncode"] for stage in ("teacher", "student")] == [0, 0]

    teacher = load_model(out / "teacher" / "best.pt")
    assert (teacher.spec.name, teacher.spec.width) == ("vgg", 1.0)  # the full-width reference
    student = load_model(out / "student" / "best.pt")
    shipped = load_model(SHIPPED_MODEL)
    assert student.spec == shipped.spec  # the served network, continued
    # The student continued the shipped model and learnt from this teacher: its chain and inputs say so.
    assert student.meta["training_command"].startswith(shipped.meta["training_command"] + " && fer-train ")
    record = student.meta["provenance"][-1]
    teacher_bytes = (out / "teacher" / "best.pt").read_bytes()
    assert record["inputs"]["teacher"]["sha256"] == hashlib.sha256(teacher_bytes).hexdigest()
    assert record["argv"] == report["student"]["argv"]
    # What a GPU run brings back: logs with one line per epoch, metrics and curves per stage.
    for stage in ("teacher", "student"):
        rows = json.loads((out / stage / "metrics.json").read_text())
        assert len(rows) == 1
        assert (out / stage / "curves.png").stat().st_size > 0
        log = (out / f"{stage}.log").read_text()
        epochs = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
        assert [row["epoch"] for row in epochs] == [1]
        assert "epoch 1/1: " in log and " images/s" in log
        assert report[stage]["result"]["public_test_accuracy"] == rows[0]["val_acc"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU: the teacher stage would train")
def test_the_teacher_stage_without_a_gpu_is_a_clear_error(few_faces: Path, tmp_path: Path) -> None:
    finished = recipe("--data", str(few_faces), "--out", str(tmp_path))
    assert finished.returncode == 2
    assert finished.stderr.strip().splitlines() == [
        "python -m ferstream.training.gpu_recipe: error: the teacher stage needs a CUDA GPU (torch sees none); "
        "--smoke runs it on the CPU"]
