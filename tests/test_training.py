"""Smoke training on a few hundred real FER2013 images: loss falls, files appear, resume continues."""

from __future__ import annotations

import json
import subprocess
import sys
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from ferstream.model.modelfile import load_model, weights_sha256
from ferstream.training.data import load_dataset
from ferstream.training.data.votes import attach_votes
from ferstream.training.losses import distillation_loss
from ferstream.training.train import evaluate, main as train_main


@pytest.fixture(scope="module")
def small_fer2013(shared: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Kaggle-layout folder with the first few hundred real images of each split (in a temp dir)."""
    root = tmp_path_factory.mktemp("fer2013-small")
    source = shared / "datasets" / "fer2013"
    for split, per_class in (("train", 60), ("test", 20)):
        for class_dir in sorted((source / split).iterdir()):
            target = root / split / class_dir.name
            target.mkdir(parents=True)
            for image in sorted(class_dir.iterdir())[:per_class]:
                shutil.copy(image, target / image.name)
    return root


def smoke_args(data: Path, out: Path, *extra: str) -> list[str]:
    return ["--data", str(data), "--out", str(out), "--epochs", "3", "--batch-size", "32", "--lr", "0.02",
            "--ema-decay", "0.5", "--threads", "2", "--seed", "1", *extra]


def test_smoke_training_learns_and_writes_its_files(small_fer2013: Path, tmp_path: Path) -> None:
    assert train_main(smoke_args(small_fer2013, tmp_path)) == 0
    history = json.loads((tmp_path / "metrics.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    for name in ("best.pt", "last.pt", "metrics.csv", "curves.png"):
        assert (tmp_path / name).stat().st_size > 0

    # best.pt is the epoch with the best PublicTest score, and scoring it again gives the logged numbers.
    best = max(history, key=lambda r: (r["val_acc"], -r["val_loss"]))
    classifier = load_model(tmp_path / "best.pt")
    assert classifier.meta["metrics"]["epoch"] == best["epoch"]
    val_loss, val_acc = evaluate(classifier.network, load_dataset(small_fer2013, "PublicTest"), torch.device("cpu"))
    assert val_loss == pytest.approx(best["val_loss"], rel=1e-4) and val_acc == pytest.approx(best["val_acc"])
    assert classifier.meta["training_command"].startswith("fer-train --data")
    assert classifier.meta["metrics"]["train_images"] == 7 * 60

    # final.pt is the last epoch's, chosen by no score.
    final = load_model(tmp_path / "final.pt")
    assert final.meta["metrics"]["epoch"] == 3
    val_loss, _ = evaluate(final.network, load_dataset(small_fer2013, "PublicTest"), torch.device("cpu"))
    assert val_loss == pytest.approx(history[-1]["val_loss"], rel=1e-4)


def test_resume_continues_where_it_stopped(small_fer2013: Path, tmp_path: Path) -> None:
    whole, split = tmp_path / "whole", tmp_path / "split"
    assert train_main(smoke_args(small_fer2013, whole, "--epochs", "2")) == 0
    assert train_main(smoke_args(small_fer2013, split, "--epochs", "2", "--stop-after", "1")) == 0
    assert len(json.loads((split / "metrics.json").read_text())) == 1
    assert not (split / "final.pt").exists()  # the schedule has not ended
    assert train_main(["--out", str(split), "--resume"]) == 0
    assert load_model(split / "final.pt").meta["metrics"]["epoch"] == 2
    resumed = json.loads((split / "metrics.json").read_text())
    uninterrupted = json.loads((whole / "metrics.json").read_text())
    assert [r["epoch"] for r in resumed] == [1, 2]
    for a, b in zip(resumed, uninterrupted):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["val_acc"] == pytest.approx(b["val_acc"])


def test_init_starts_from_a_model_files_weights(small_fer2013: Path, tmp_path: Path) -> None:
    """--init continues the shipped model: its first epoch already scores like it, not like chance."""
    shipped = load_model()
    gentle = ("--epochs", "1", "--lr", "0.0001", "--width", str(shipped.spec.width),
              "--channels", ",".join(map(str, shipped.spec.channels)))
    assert train_main(smoke_args(small_fer2013, tmp_path / "fresh", *gentle)) == 0
    assert train_main(smoke_args(small_fer2013, tmp_path / "init", *gentle, "--init", str(shipped.path))) == 0
    fresh = json.loads((tmp_path / "fresh" / "metrics.json").read_text())[0]
    continued = json.loads((tmp_path / "init" / "metrics.json").read_text())[0]
    assert continued["train_acc"] > fresh["train_acc"] + 0.2
    assert continued["train_loss"] < fresh["train_loss"] - 0.3
    # The model file records the whole chain of commands that produced it.
    command = load_model(tmp_path / "init" / "best.pt").meta["training_command"]
    assert command.startswith(shipped.meta["training_command"] + " && fer-train ")


def test_init_grows_a_wider_network_that_starts_where_the_model_file_was(small_fer2013: Path,
                                                                          tmp_path: Path) -> None:
    """--init into wider blocks: the grown network's first PublicTest score is the model file's own score."""
    shipped = load_model()
    wider = ",".join(str(count * 2) for count in shipped.spec.channels[:3]) + "," + ",".join(
        map(str, shipped.spec.channels[3:]))
    out = tmp_path / "wider"
    frozen = ("--epochs", "1", "--lr", "0", "--ema-decay", "0", "--width", str(shipped.spec.width))
    assert train_main(smoke_args(small_fer2013, out, *frozen, "--channels", wider, "--init", str(shipped.path))) == 0
    grown = load_model(out / "best.pt")
    assert grown.parameters > shipped.parameters
    # With lr 0 only batch norm's running statistics move, so the score stays the shipped model's to a few faces.
    _, shipped_acc = evaluate(shipped.network, load_dataset(small_fer2013, "PublicTest"), torch.device("cpu"))
    assert grown.meta["metrics"]["public_test_accuracy"] == pytest.approx(shipped_acc, abs=0.05)
    assert shipped_acc > 0.4


def test_init_from_a_wider_model_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    shipped = load_model()
    narrower = str(shipped.spec.width / 2)
    assert train_main(["--init", str(shipped.path), "--width", narrower, "--out", str(tmp_path)]) == 2
    assert "nor a narrower version of it" in capsys.readouterr().err


def test_channels_that_are_not_five_integers_are_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    for channels in ("64,128,wide,256,512", "64,128,256"):
        assert train_main(["--channels", channels, "--out", str(tmp_path)]) == 2
        assert "channels" in capsys.readouterr().err


def test_distillation_loss_vanishes_only_where_the_student_matches_the_teacher() -> None:
    teacher = torch.randn(16, 7, generator=torch.Generator().manual_seed(0))
    student = teacher.clone().requires_grad_()
    distillation_loss(student, teacher, temperature=4.0).backward()
    assert student.grad.abs().max() < 1e-6
    assert distillation_loss(teacher.flip(1), teacher, temperature=4.0) > 0.1


def teacher_disagreement(student: Path, teacher_probabilities: torch.Tensor, faces) -> float:
    """Mean KL(teacher || student) over the faces: how far the student is from imitating the teacher."""
    student_log = torch.log(torch.from_numpy(load_model(student).for_inference()(faces.images)))
    return torch.sum(teacher_probabilities * (teacher_probabilities.log() - student_log), dim=1).mean().item()


def test_distillation_pulls_the_student_towards_the_teacher(small_fer2013: Path, tmp_path: Path) -> None:
    shipped = load_model()
    faces = load_dataset(small_fer2013, "Training")
    teacher_probabilities = torch.from_numpy(shipped.for_inference()(faces.images))
    distilled, plain = tmp_path / "distilled", tmp_path / "plain"
    two_epochs = ("--epochs", "2", "--distill-weight", "1.0", "--temperature", "1.0")
    assert train_main(smoke_args(small_fer2013, plain, *two_epochs)) == 0
    assert train_main(smoke_args(small_fer2013, distilled, *two_epochs, "--teacher", str(shipped.path))) == 0
    assert (teacher_disagreement(distilled / "best.pt", teacher_probabilities, faces)
            < teacher_disagreement(plain / "best.pt", teacher_probabilities, faces))
    assert load_model(distilled / "best.pt").meta["training_config"]["teacher"] == str(shipped.path)


def test_a_missing_teacher_is_a_clear_error(small_fer2013: Path, tmp_path: Path, capsys) -> None:
    assert train_main(smoke_args(small_fer2013, tmp_path / "out", "--teacher", str(tmp_path / "absent.pt"))) == 2
    assert "absent.pt" in capsys.readouterr().err


def test_ferplus_votes_pull_the_model_towards_the_annotators(shared: Path, small_fer2013: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    """--votes: the training images take the FER+ votes of their pixel twins into their targets."""
    ferplus = shared / "datasets" / "ferplus"
    match = attach_votes(load_dataset(small_fer2013, "Training"), load_dataset(ferplus, "Training"))
    voted_faces = match.faces.subset(np.flatnonzero(match.matched))
    votes = torch.from_numpy(voted_faces.soft_labels)

    def distance_to_votes(model: Path) -> float:
        probabilities = torch.from_numpy(load_model(model).for_inference()(voted_faces.images))
        return torch.sum(-votes * probabilities.clamp(min=1e-6).log(), dim=1).mean().item()

    voted, plain = tmp_path / "voted", tmp_path / "plain"
    assert train_main(smoke_args(small_fer2013, plain, "--epochs", "2")) == 0
    assert train_main(smoke_args(small_fer2013, voted, "--epochs", "2", "--votes", str(ferplus),
                                 "--vote-weight", "1.0")) == 0
    assert f"FER+ votes for {len(voted_faces)} training images" in capsys.readouterr().err
    assert len(voted_faces) > 0.9 * len(match.matched)
    assert distance_to_votes(voted / "best.pt") < distance_to_votes(plain / "best.pt")


def test_votes_from_a_dataset_without_votes_are_a_clear_error(small_fer2013: Path, tmp_path: Path, capsys) -> None:
    assert train_main(smoke_args(small_fer2013, tmp_path / "out", "--votes", str(small_fer2013))) == 2
    assert "no vote distributions" in capsys.readouterr().err


def test_resume_without_a_checkpoint_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert train_main(["--out", str(tmp_path / "nothing"), "--resume"]) == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_missing_data_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert train_main(["--data", str(tmp_path / "absent"), "--out", str(tmp_path / "out")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_distributed_training_keeps_ranks_identical(small_fer2013: Path, tmp_path: Path) -> None:
    """torchrun with 2 CPU processes (gloo): one tiny epoch, both ranks end with the same weights."""
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               "-m", "ferstream.training.train", *smoke_args(small_fer2013, out, "--epochs", "1", "--threads", "1")]
    finished = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr[-3000:]
    report = json.loads((out / "distributed.json").read_text())
    assert report["world_size"] == 2
    first, second = report["weights_sha256_per_rank"]
    assert first == second
    # The file rank 0 saved holds those same weights.
    saved = torch.load(out / "last.pt", map_location="cpu", weights_only=False)["model"]
    assert weights_sha256(saved) == first
    assert "x 2 process(es)" in finished.stderr
