"""Faces in real light: standardised crops, photometric augmentation, fer-eval-path light, and a dim or flat
photo through a real server keeping its faces' emotions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest

from ferstream.model.preprocess import MIN_SPREAD, UNIFORM_STD, Preprocessing
from ferstream.pipeline.tracking import match
from ferstream.training.data import load_dataset
from ferstream.training.photometric import ALTERATIONS, PhotometricSpec, brightness, contrast, perturb_crops
from ferstream.training.train import TrainConfig
from ferstream.v1 import emotion_pb2 as pb
from ferstream.v1 import emotion_pb2_grpc as pb_grpc

GROUP_PHOTO = "2008_002470.jpg"  # six people, faces of 60-110 px
RAW = Preprocessing(equalize=False)
STANDARDISED = Preprocessing(equalize=False, standardize=True)


@pytest.fixture(scope="module")
def crops(shared: Path) -> np.ndarray:
    """200 PublicTest faces (equalised JPEGs, as FER2013 ships them)."""
    return load_dataset(shared / "datasets" / "fer2013" / "test", "PublicTest").images[:200]


def test_standardised_crops_reach_the_network_alike_in_dim_and_flat_light(crops: np.ndarray) -> None:
    lit = STANDARDISED.apply(crops)
    for altered in (brightness(crops, 0.25), contrast(crops, 0.3)):
        # Only the grey levels lost to rounding differ (a x0.25 crop keeps 64 of 256 levels).
        assert np.abs(STANDARDISED.apply(altered) - lit).mean() < 0.05
        # Fixed scaling hands the network another face: the reason standardisation exists.
        assert np.abs(RAW.apply(altered) - RAW.apply(crops)).mean() > 0.5


def test_standardisation_gives_every_crop_an_equalised_crops_mean_and_spread(crops: np.ndarray) -> None:
    inputs = STANDARDISED.apply(brightness(crops, 0.5))
    assert np.allclose(inputs.mean(axis=(1, 2, 3)), 0.0, atol=1e-4)
    # (x/255 - 0.5) / 0.25 of a uniform 0-255 histogram: std 1 / (sqrt(12) * 0.25).
    assert np.allclose(inputs.std(axis=(1, 2, 3)), 1 / (np.sqrt(12) * 0.25), rtol=1e-3)


def test_a_flat_crop_is_not_stretched_into_noise() -> None:
    flat = np.full((2, 48, 48), 90, np.uint8)
    flat[1, ::2] = 91  # one grey level of texture: below MIN_SPREAD, scaled as MIN_SPREAD
    inputs = STANDARDISED.apply(flat)
    assert np.isfinite(inputs).all()
    assert np.abs(inputs[0]).max() < 1e-6
    # Rows of 90 and 91: a spread of 0.5 grey levels, stretched as if it were MIN_SPREAD.
    assert inputs[1].std() == pytest.approx(0.5 * UNIFORM_STD / MIN_SPREAD / 255 / 0.25, rel=1e-3)


def test_model_files_written_before_standardisation_load_without_it() -> None:
    assert Preprocessing.from_dict({"equalize": False, "input_size": 48, "mean": 0.5, "std": 0.25}) == RAW
    assert Preprocessing.from_dict(STANDARDISED.to_dict()) == STANDARDISED
    with pytest.raises(ValueError, match="standardize must be true or false"):
        Preprocessing(equalize=False, standardize="yes")


@pytest.mark.parametrize("name", sorted(ALTERATIONS))
def test_every_named_alteration_changes_a_photo_and_keeps_its_shape(faces_dir: Path, name: str) -> None:
    photo = cv2.imread(str(faces_dir / GROUP_PHOTO))
    altered = ALTERATIONS[name](photo)
    assert altered.shape == photo.shape and altered.dtype == np.uint8
    assert np.abs(altered.astype(int) - photo).mean() > 0.5


def test_training_crops_are_altered_at_the_given_rate_and_repeatably(crops: np.ndarray) -> None:
    spec = PhotometricSpec()
    first = perturb_crops(crops, spec, np.random.default_rng(3))
    assert first.shape == crops.shape and first.dtype == np.uint8
    assert np.array_equal(first, perturb_crops(crops, spec, np.random.default_rng(3)))
    changed = np.abs(first.astype(int) - crops).reshape(len(crops), -1).max(axis=1) > 0
    # Eight alterations drawn with probability 0.25 each: about 1 - 0.75 ** 8 = 0.90 of the crops change.
    assert 0.8 < changed.mean() < 0.97
    assert perturb_crops(crops, PhotometricSpec(probability=0.0), np.random.default_rng(3)) is crops
    only_blur = PhotometricSpec(probability=1.0, brightness_min=0, contrast_min=0, gamma_max=1, motion_blur_max=0,
                                jpeg_min=0, noise_max=0, shadow_max=0)
    blurred = perturb_crops(crops, only_blur, np.random.default_rng(3))
    # A blur keeps each crop's mean and lowers its spread.
    assert np.allclose(blurred.mean(axis=(1, 2)), crops.mean(axis=(1, 2)), atol=3)
    assert (blurred.std(axis=(1, 2)) < crops.std(axis=(1, 2))).all()


def test_fer_train_standardises_and_alters_by_default_and_resumes_old_runs_as_they_were() -> None:
    config = TrainConfig()
    assert config.preprocessing == STANDARDISED and config.photometric.enabled
    # A last.pt written before these settings existed continues without them.
    old = {key: value for key, value in vars(TrainConfig()).items()
           if key not in ("standardize", "photometric_probability")}
    resumed = TrainConfig.from_checkpoint(old)
    assert resumed.preprocessing == RAW and not resumed.photometric.enabled
    with pytest.raises(ValueError, match="--jpeg-min"):
        TrainConfig(jpeg_min=95)


def eval_path(*arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ferstream.training.fullpath", *arguments], capture_output=True,
                          text=True, timeout=600)


def test_light_report_scores_each_alteration_on_the_same_faces(faces_dir: Path, fer_models_dir: Path) -> None:
    result = eval_path("light", str(faces_dir), "--models-dir", str(fer_models_dir), "--json",
                       "--alteration", "brightness-0.25", "--alteration", "contrast-0.3")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["detector"] == "YUNET"
    rows = report["rows"]
    assert [row["alteration"] for row in rows] == ["brightness-0.25", "contrast-0.3"]
    for row in rows:
        assert row["faces"] == rows[0]["faces"] > 40
        assert row["kept"] <= row["found"] <= row["faces"]
        assert row["found"] > 0.8 * row["faces"]  # YuNet still finds dim and flat faces


def test_an_unknown_alteration_is_one_line_and_exit_2(faces_dir: Path) -> None:
    result = eval_path("light", str(faces_dir), "--alteration", "sepia")
    assert result.returncode == 2
    assert "invalid choice: 'sepia'" in result.stderr and "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def stub(fer_server_factory, fer_models_dir: Path):
    server = fer_server_factory("--models-dir", str(fer_models_dir))
    with grpc.insecure_channel(server.address) as channel:
        yield pb_grpc.EmotionServiceStub(channel)


def annotate(stub, photo: np.ndarray) -> list:
    ok, encoded = cv2.imencode(".png", photo)  # lossless: only the alteration differs
    assert ok
    # The fast model, which the light stage trained (photos' default is the accurate one).
    return list(stub.Annotate(pb.AnnotateRequest(image=pb.Image(encoded=encoded.tobytes()),
                                                 options=pb.AnnotateOptions(model="fast")), timeout=60).faces)


def boxes(faces) -> list[tuple[int, int, int, int]]:
    return [(face.box.x, face.box.y, face.box.width, face.box.height) for face in faces]


@pytest.mark.parametrize("name", ["brightness-0.25", "contrast-0.3"])
def test_a_dim_or_flat_photo_keeps_its_faces_emotions_through_the_server(stub, faces_dir: Path, name: str) -> None:
    photo = cv2.imread(str(faces_dir / GROUP_PHOTO))
    lit = annotate(stub, photo)
    altered = annotate(stub, ALTERATIONS[name](photo))
    assert len(lit) == 6
    pairs = match(boxes(lit), boxes(altered))
    assert len(pairs) == len(lit)
    kept = [lit[i].emotion == altered[j].emotion for i, j in pairs]
    # The model shipped before standardisation kept none of these 6 at x0.25 (all read as angry).
    assert sum(kept) >= 5, [(pb.Emotion.Name(lit[i].emotion), pb.Emotion.Name(altered[j].emotion)) for i, j in pairs]
