"""Smoke training on a few hundred real FER2013 images: loss falls, files appear, resume continues (also a
last.pt from before model files held training state), provenance is recorded, the CLI keeps its conventions."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
import torch

from ferstream.model.modelfile import load_model, read_training_state, weights_sha256
from ferstream.model.preprocess import Preprocessing
from ferstream.training.data import load_dataset
from ferstream.training.data.votes import attach_votes
from ferstream.training.losses import TeacherEnsemble, distillation_loss
from ferstream.training.loop import lr_at
from ferstream.training.provenance import chain_recipes, data_sha256
from ferstream.training.train import TrainConfig, main as train_main
from ferstream.training.validation import evaluate

CPU = torch.device("cpu")


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


@pytest.mark.slow
def test_smoke_training_learns_and_writes_its_files(small_fer2013: Path, tmp_path: Path) -> None:
    assert train_main(smoke_args(small_fer2013, tmp_path, "--equalize")) == 0
    history = json.loads((tmp_path / "metrics.json").read_text())
    assert [row["epoch"] for row in history] == [1, 2, 3]
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    for name in ("best.pt", "last.pt", "metrics.csv", "curves.png"):
        assert (tmp_path / name).stat().st_size > 0

    # best.pt is the epoch with the best PublicTest score, and scoring it again gives the logged numbers
    # through the preprocessing it records (equalised crops, as asked), not through raw pixels.
    best = max(history, key=lambda r: (r["val_acc"], -r["val_loss"]))
    classifier = load_model(tmp_path / "best.pt")
    assert classifier.meta["metrics"]["epoch"] == best["epoch"]
    assert classifier.preprocessing == Preprocessing(equalize=True, standardize=True)
    public_test = load_dataset(small_fer2013, "PublicTest")
    val_loss, val_acc = evaluate(classifier.network, public_test, classifier.preprocessing, CPU)
    assert val_loss == pytest.approx(best["val_loss"], rel=1e-4) and val_acc == pytest.approx(best["val_acc"])
    raw_loss, _ = evaluate(classifier.network, public_test, Preprocessing(equalize=False), CPU)
    assert raw_loss != pytest.approx(best["val_loss"], rel=1e-4)
    assert classifier.meta["metrics"]["train_images"] == 7 * 60

    # final.pt is the last epoch's, chosen by no score; last.pt is a model file too, with the training state.
    final = load_model(tmp_path / "final.pt")
    assert final.meta["metrics"]["epoch"] == 3
    val_loss, _ = evaluate(final.network, public_test, final.preprocessing, CPU)
    assert val_loss == pytest.approx(history[-1]["val_loss"], rel=1e-4)
    assert load_model(tmp_path / "last.pt").meta["weights_sha256"] == final.meta["weights_sha256"]
    assert read_training_state(tmp_path / "last.pt")["epoch"] == 2  # 0-based

    # The command as executed: argv verbatim, its times, the machine, the data's digest.
    [record] = final.meta["provenance"]
    assert record["argv"] == smoke_args(small_fer2013, tmp_path, "--equalize")
    assert final.meta["training_command"] == "fer-train " + shlex.join(record["argv"])
    assert record["started"] <= record["ended"] and record["epochs"] == [1, 3]
    assert record["machine"]["cores"] == os.cpu_count() and record["machine"]["torch"] == torch.__version__
    assert record["inputs"]["data"]["files"] == 7 * 60 + 7 * 20


def test_the_data_digest_changes_with_any_file_and_only_then(small_fer2013: Path, tmp_path: Path) -> None:
    """The data's sha256 covers names and bytes; its cache (keyed by size and mtime) never hides a change."""
    data = tmp_path / "data"
    shutil.copytree(small_fer2013 / "test", data)
    original = data_sha256(data)
    assert data_sha256(data) == original  # the cached answer
    image = sorted((data / "happy").iterdir())[0]
    content = image.read_bytes()
    image.write_bytes(content[:-1] + bytes([content[-1] ^ 1]))
    assert data_sha256(data)["sha256"] != original["sha256"]
    image.write_bytes(content)
    assert data_sha256(data)["sha256"] == original["sha256"]
    image.rename(image.with_name("0-renamed.jpg"))  # still the first file: only its name changed
    assert data_sha256(data)["sha256"] != original["sha256"]


@pytest.fixture(scope="module")
def two_epochs(small_fer2013: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """OUT of an uninterrupted two-epoch smoke run, for runs stopped and resumed to be compared with."""
    out = tmp_path_factory.mktemp("two-epochs")
    assert train_main(smoke_args(small_fer2013, out, "--epochs", "2")) == 0
    return out


# What runs did before crops were standardised and altered photometrically: a legacy last.pt's run.
BEFORE_LIGHT = ("--no-standardize", "--photometric-probability", "0")


@pytest.fixture(scope="module")
def two_epochs_before_light(small_fer2013: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """OUT of an uninterrupted two-epoch smoke run as runs were before standardisation (BEFORE_LIGHT)."""
    out = tmp_path_factory.mktemp("two-epochs-before-light")
    assert train_main(smoke_args(small_fer2013, out, "--epochs", "2", *BEFORE_LIGHT)) == 0
    return out


def assert_same_run(resumed: Path, uninterrupted: Path) -> None:
    """Same metrics every epoch and, at the end, the same weights bit for bit."""
    rows, expected = (json.loads((out / "metrics.json").read_text()) for out in (resumed, uninterrupted))
    assert [r["epoch"] for r in rows] == [r["epoch"] for r in expected]
    for a, b in zip(rows, expected):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-6)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-6)
    assert load_model(resumed / "final.pt").meta["weights_sha256"] == \
        load_model(uninterrupted / "final.pt").meta["weights_sha256"]


@pytest.mark.slow
def test_resume_continues_where_it_stopped(small_fer2013: Path, two_epochs: Path, tmp_path: Path) -> None:
    split = tmp_path / "split"
    first = smoke_args(small_fer2013, split, "--epochs", "2", "--stop-after", "1")
    assert train_main(first) == 0
    assert len(json.loads((split / "metrics.json").read_text())) == 1
    assert not (split / "final.pt").exists()  # the schedule has not ended
    assert train_main(["--out", str(split), "--resume"]) == 0
    assert load_model(split / "final.pt").meta["metrics"]["epoch"] == 2
    assert_same_run(split, two_epochs)
    # Each command is a record of the chain, as typed.
    chain = load_model(split / "final.pt").meta["provenance"]
    assert [record["argv"] for record in chain] == [first, ["--out", str(split), "--resume"]]
    assert [record["epochs"] for record in chain] == [[1, 1], [2, 2]]


@pytest.mark.slow
def test_the_compact_checkpoint_resumes_the_schedule_from_the_ema_weights(small_fer2013: Path, two_epochs: Path,
                                                                         tmp_path: Path, capsys) -> None:
    split = tmp_path / "split"
    assert train_main(smoke_args(small_fer2013, split, "--epochs", "2", "--stop-after", "1")) == 0
    # Each epoch says how fast it went and how long is left.
    assert re.search(r"epoch 1/2: \d+ images/s, [\d.]+ min an epoch; about 0 min to the end of this command",
                     capsys.readouterr().err)
    last, compact = split / "last.pt", split / "resume.pt"
    assert compact.stat().st_size < last.stat().st_size / 2
    state = read_training_state(compact)
    assert state["compact"] and state["epoch"] == 0 and "optimizer" not in state
    # The compact file alone (as committed when a stage stops part-way) continues the schedule, on this
    # machine or another, whose precision may differ (a CPU without native bf16 goes on in fp32).
    last.unlink()
    assert train_main(["--out", str(split), "--resume", "--precision", "fp32"]) == 0
    assert read_training_state(split / "last.pt")["config"]["precision"] == "fp32"
    final, uninterrupted = load_model(split / "final.pt"), load_model(two_epochs / "final.pt")
    assert final.meta["metrics"]["epoch"] == 2
    assert [record["epochs"] for record in final.meta["provenance"]] == [[1, 1], [2, 2]]
    # The first epoch is the uninterrupted run's; the second ran from the float16 EMA weights.
    rows, expected = (json.loads((out / "metrics.json").read_text()) for out in (split, two_epochs))
    assert rows[0]["train_loss"] == pytest.approx(expected[0]["train_loss"], rel=1e-6)
    assert final.meta["weights_sha256"] != uninterrupted.meta["weights_sha256"]


# The fields of TrainConfig before this format (git show 0faf6fe:training/train.py).
LEGACY_CONFIG_FIELDS = ("data", "out", "arch", "width", "channels", "dropout", "epochs", "batch_size", "lr",
                        "weight_decay", "label_smoothing", "ema_decay", "seed", "threads", "device", "limit",
                        "val_limit", "init", "erase_probability", "teacher", "distill_weight", "temperature",
                        "votes", "vote_weight")


def write_legacy_checkpoint(out: Path, command: str) -> None:
    """Rewrite OUT/last.pt as the code before model files held training state wrote it: torch.save of
    {config, epoch, model, ema, optimizer, history, torch_rng, numpy_rng, command}, NumPy's generator
    state as np.random.get_state() returns it, and only the settings that code knew."""
    state = read_training_state(out / "last.pt")
    numpy = state["rng"]["numpy"]
    numpy_rng = (numpy["kind"], numpy["keys"].numpy().astype(np.uint32), numpy["position"], numpy["has_gauss"],
                 numpy["cached_gaussian"])
    real = np.random.get_state()
    assert [type(v) for v in numpy_rng] == [type(v) for v in real] and numpy_rng[1].dtype == real[1].dtype
    # Like runs/w050's: started from a model file that has moved since (training/shipped/ is now model/shipped/).
    config = {name: state["config"][name] for name in LEGACY_CONFIG_FIELDS} | {"init": str(out / "moved.pt")}
    legacy = {"config": config, "epoch": state["epoch"],
              "model": state["model"], "ema": state["ema"], "optimizer": state["optimizer"],
              "history": state["history"], "torch_rng": state["rng"]["torch"], "numpy_rng": numpy_rng,
              "command": command}
    torch.save(legacy, out / "last.pt")


@pytest.mark.slow
def test_a_last_pt_from_before_model_files_held_training_state_resumes(small_fer2013: Path,
                                                                       two_epochs_before_light: Path,
                                                                       tmp_path: Path) -> None:
    """`fer-train --out OUT --resume` continues a legacy last.pt bit for bit, writes model files and keeps the chain."""
    legacy = tmp_path / "legacy"
    first = smoke_args(small_fer2013, legacy, "--epochs", "2", "--stop-after", "1", *BEFORE_LIGHT)
    assert train_main(first) == 0
    earlier = "fer-train --data old/fer2013 --out runs/w025 --width 0.25"  # an --init model file's chain
    write_legacy_checkpoint(legacy, f"{earlier} && fer-train {shlex.join(first)}")
    with pytest.raises(ValueError):
        load_model(legacy / "last.pt")  # the old pickle: the loader does not read it
    replanned = tmp_path / "replanned"
    shutil.copytree(legacy, replanned)

    assert train_main(["--out", str(legacy), "--resume"]) == 0
    assert_same_run(legacy, two_epochs_before_light)
    for name in ("best.pt", "final.pt", "last.pt"):
        load_model(legacy / name)
    assert read_training_state(legacy / "last.pt")["epoch"] == 1
    chain = load_model(legacy / "final.pt").meta["provenance"]
    assert chain[:2] == [{"command": earlier}, {"command": f"fer-train {shlex.join(first)}"}]
    assert chain[2]["argv"] == ["--out", str(legacy), "--resume"] and len(chain) == 3

    # --epochs re-plans the cosine schedule's end from the current step.
    assert train_main(["--out", str(replanned), "--resume", "--epochs", "3", "--stop-after", "1"]) == 0
    steps = -(-7 * 60 // 32)
    second = json.loads((replanned / "metrics.json").read_text())[1]
    assert second["lr"] == pytest.approx(lr_at(2 * steps - 1, total=3 * steps, peak=0.02))
    assert read_training_state(replanned / "last.pt")["config"]["epochs"] == 3


@pytest.mark.slow
def test_a_recipe_run_records_its_recipe_and_resumes_with_the_same_recipe(small_fer2013: Path, two_epochs: Path,
                                                                          tmp_path: Path,
                                                                          capsys: pytest.CaptureFixture) -> None:
    """`make train-long`'s pattern: a recipe started, stopped, and continued with the same recipe plus --resume
    is the uninterrupted run; each record holds the recipe's text; a recipe that changes the run is refused."""
    out = tmp_path / "recipe-run"
    recipe = tmp_path / "smoke.toml"
    recipe.write_text(f'data = "{small_fer2013}"\nout = "{out}"\nepochs = 2\nbatch_size = 32\nlr = 0.02\n'
                      'ema_decay = 0.5\nthreads = 2\nseed = 1\n')
    assert train_main(["--config", str(recipe), "--stop-after", "1"]) == 0
    assert train_main(["--config", str(recipe), "--resume"]) == 0
    assert_same_run(out, two_epochs)
    chain = load_model(out / "final.pt").meta["provenance"]
    assert [record["argv"] for record in chain] == [["--config", str(recipe), "--stop-after", "1"],
                                                     ["--config", str(recipe), "--resume"]]
    text = recipe.read_text()
    for record in chain:
        assert record["recipe"] == {"path": str(recipe), "text": text,
                                    "sha256": hashlib.sha256(text.encode()).hexdigest()}
    assert chain_recipes(load_model(out / "final.pt").meta) == [chain[0]["recipe"]] * 2
    capsys.readouterr()
    recipe.write_text(text.replace("lr = 0.02", "lr = 0.05"))
    assert train_main(["--config", str(recipe), "--resume"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "sets lr = 0.05 but the run it resumes has 0.02" in line


def test_resume_refuses_settings_it_would_ignore(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--out", str(tmp_path), "--resume", "--lr", "0.1"])
    assert exit_info.value.code == 2
    assert "drop --lr" in capsys.readouterr().err


@pytest.mark.slow  # 63 s on a busy 2-core machine: two smoke trainings
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
    # The model file records the whole chain of commands that produced it, and the sha256 of the file it began from.
    meta = load_model(tmp_path / "init" / "best.pt").meta
    assert meta["training_command"].startswith(shipped.meta["training_command"] + " && fer-train ")
    shipped_sha256 = hashlib.sha256(Path(shipped.path).read_bytes()).hexdigest()
    assert meta["provenance"][-1]["inputs"]["init"]["sha256"] == shipped_sha256


@pytest.mark.slow
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
    _, shipped_acc = evaluate(shipped.network, load_dataset(small_fer2013, "PublicTest"), grown.preprocessing, CPU)
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


def test_max_rotation_reaches_the_augmentation_and_is_range_checked(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture) -> None:
    assert TrainConfig(max_rotation=15.0).step_recipe(torch.device("cpu")).augment.max_rotation_deg == 15.0
    assert TrainConfig().step_recipe(torch.device("cpu")).augment.max_rotation_deg == 10.0
    assert train_main(["--max-rotation", "200", "--out", str(tmp_path)]) == 2
    assert "--max-rotation" in capsys.readouterr().err


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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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
    assert weights_sha256(read_training_state(out / "last.pt")["model"]) == first
    assert "x 2 process(es)" in finished.stderr


def option_blocks(help_text: str) -> dict[str, str]:
    """--help's options section as {"--flag": its description with the default removed}."""
    blocks: dict[str, str] = {}
    current = None
    for line in help_text.split("options:", 1)[1].splitlines():
        stripped = line.strip()
        if line.startswith("  -"):  # "  -h, --help   text", "  --batch-size BATCH_SIZE" (text on the next line)
            flags, _, text = stripped.partition("  ")
            current = next(token.rstrip(",") for token in flags.split() if token.startswith("--"))
            blocks[current] = text
        elif current and stripped:
            blocks[current] += " " + stripped
    return {flag: text.split("(default:")[0].strip() for flag, text in blocks.items()}


def test_help_describes_every_option(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_info:
        train_main(["--help"])
    assert exit_info.value.code == 0
    blocks = option_blocks(capsys.readouterr().out)
    expected = {"--" + f.name.replace("_", "-") for f in fields(TrainConfig)}
    expected |= {"--resume", "--stop-after", "--version"}
    assert expected <= set(blocks)
    assert not [flag for flag, text in blocks.items() if len(text.split()) < 3], blocks


def test_version_answers_with_the_package_version(capsys: pytest.CaptureFixture) -> None:
    from importlib.metadata import version

    with pytest.raises(SystemExit) as exit_info:
        train_main(["--version"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"fer-train {version('ferstream')}")


def test_the_default_data_is_under_fer_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture) -> None:
    monkeypatch.setenv("FER_DATA_DIR", str(tmp_path / "elsewhere"))
    assert train_main(["--out", str(tmp_path / "out")]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert str(tmp_path / "elsewhere" / "datasets" / "fer2013") in line


@pytest.mark.slow
def test_ctrl_c_stops_with_one_line_and_exit_130(small_fer2013: Path, tmp_path: Path) -> None:
    """SIGINT during training: exit 130, one line on stderr after the start line, no traceback."""
    command = [sys.executable, "-m", "ferstream.training.train",
               *smoke_args(small_fer2013, tmp_path / "out", "--epochs", "50", "--threads", "1")]
    # A shell ignores SIGINT for the commands it starts in the background, and the ignore is inherited: a suite
    # run that way would hand it on to fer-train, which would then train all 50 epochs.
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    started = process.stderr.readline()
    assert "training and" in started, started  # the loop has begun
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-3000:]
    lines = [line for line in stderr.splitlines() if not line.startswith("{\"epoch\"")]  # finished epochs' rows
    assert lines == ["fer-train: interrupted; continue from the last finished epoch with --out OUT --resume"]
    assert stdout == ""


def test_several_teachers_are_distilled_as_the_mean_of_their_softened_predictions() -> None:
    torch.manual_seed(0)
    first, second = torch.nn.Linear(5, 7), torch.nn.Linear(5, 7)
    x = torch.randn(16, 5)
    ensemble = TeacherEnsemble([first, second], temperature=4.0)
    expected = (torch.softmax(first(x) / 4.0, 1) + torch.softmax(second(x) / 4.0, 1)) / 2
    torch.testing.assert_close(torch.softmax(ensemble(x) / 4.0, 1), expected)
    # One teacher is that teacher: the same softened distribution.
    alone = TeacherEnsemble([first], temperature=4.0)
    torch.testing.assert_close(torch.softmax(alone(x) / 4.0, 1), torch.softmax(first(x) / 4.0, 1))
