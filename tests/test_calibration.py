"""Calibrated probabilities: ECE on constructed cases, the temperature fit, calibration stored in and
applied by the served ONNX (fer-export --calibrate), and fer-eval's ECE report and reliability diagram."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pytest

from ferstream.model.calibration import (BINS, expected_calibration_error, fit_temperature, negative_log_likelihood,
                                         reliability_bins, softmax, undo_temperature)
from ferstream.model.modelfile import SHIPPED_MODEL, load_model
from ferstream.model.runtime import SHIPPED_ONNX, load_classifier
from ferstream.training.data import load_dataset
from ferstream.training.evaluate import main as eval_main
from ferstream.training.export import logits_of, main as export_main

PARITY = 1e-4  # the serving contract: served probabilities within 1e-4 of PyTorch's


def two_class(confidence: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities [c, 1 - c] (c >= 0.5: class 0 is the top class) and labels: 0 where right, else 1."""
    return np.stack([confidence, 1 - confidence], axis=1), np.where(right, 0, 1)


def test_perfectly_calibrated_faces_have_zero_ece() -> None:
    # 20 faces at each confidence 0.50, 0.55, ..., 1.00, exactly 20 * c of them right.
    confidence, right = [], []
    for c in np.arange(10, 21) / 20:
        confidence += [c] * 20
        right += [True] * round(20 * c) + [False] * (20 - round(20 * c))
    probabilities, labels = two_class(np.array(confidence), np.array(right))
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.0, abs=1e-12)


def test_over_confident_faces_have_the_gap_as_ece() -> None:
    # Every face 90 % sure, 60 % right: one bin, ECE = 0.9 - 0.6.
    probabilities, labels = two_class(np.full(100, 0.9), np.arange(100) < 60)
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.3)
    # Two bins weighted by their faces: 300 at 0.95 with 75 % right, 100 at 0.55 with half right.
    confidence = np.r_[np.full(300, 0.95), np.full(100, 0.55)]
    right = np.r_[np.arange(300) < 225, np.arange(100) < 50]
    probabilities, labels = two_class(confidence, right)
    assert expected_calibration_error(probabilities, labels) == pytest.approx(0.75 * 0.2 + 0.25 * 0.05)


def test_bins_are_equal_width_and_closed_on_the_right() -> None:
    # A confidence equal to an edge m/15 belongs to the bin it closes, ((m-1)/15, m/15] (Guo et al. 2017).
    edges = np.arange(8, 16) / 15
    bins = reliability_bins(*two_class(edges, np.ones(len(edges), bool)))
    assert len(bins.count) == BINS and np.allclose(bins.edges, np.linspace(0, 1, 16))
    assert bins.count.tolist() == [0] * 7 + [1] * 8
    assert np.isnan(bins.accuracy[0]) and bins.n == 8


def test_bad_inputs_are_clear_errors() -> None:
    probabilities, labels = two_class(np.full(4, 0.9), np.ones(4, bool))
    for bad in (lambda: expected_calibration_error(probabilities, labels[:3]),
                lambda: expected_calibration_error(probabilities[:0], labels[:0]),
                lambda: expected_calibration_error(probabilities, labels + 2),
                lambda: fit_temperature(np.full((4, 2), np.nan), labels),
                lambda: softmax(probabilities, 0.0)):
        with pytest.raises(ValueError):
            bad()


@pytest.mark.parametrize("true_temperature", [0.5, 2.5])
def test_the_fit_recovers_the_temperature_labels_were_drawn_with(true_temperature: float) -> None:
    rng = np.random.default_rng(7)
    logits = rng.normal(0, 3, (20000, 7))
    probabilities = softmax(logits, true_temperature)
    labels = (probabilities.cumsum(axis=1) < rng.random((len(logits), 1))).sum(axis=1)
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(true_temperature, rel=0.05)
    assert negative_log_likelihood(logits, labels, fitted) <= negative_log_likelihood(logits, labels, 1.0)
    # Scaled at the fitted T the faces are calibrated; at T = 1 they are not.
    assert expected_calibration_error(softmax(logits, fitted), labels) < 0.015
    assert expected_calibration_error(softmax(logits), labels) > 0.05


def test_undoing_the_temperature_gives_the_plain_softmax() -> None:
    logits = np.random.default_rng(1).normal(0, 4, (50, 7))
    np.testing.assert_allclose(undo_temperature(softmax(logits, 1.7).astype(np.float32), 1.7), softmax(logits),
                               atol=1e-5)


@pytest.fixture(scope="module")
def exports(small_test_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """fer-export of the shipped .pt with --calibrate on the small folder and without: {name: (path, JSON line)}."""
    out = tmp_path_factory.mktemp("exports")
    capture = {}
    for name, extra in (("calibrated", ["--calibrate", str(small_test_folder)]), ("plain", [])):
        path = out / f"{name}.onnx"
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            assert export_main([str(SHIPPED_MODEL), "--out", str(path), *extra]) == 0
        capture[name] = (path, json.loads(printed.getvalue()))
    return capture


def test_a_calibrated_export_applies_and_records_its_temperature(exports: dict, small_test_folder: Path) -> None:
    path, report = exports["calibrated"]
    served, pytorch = load_classifier(path), load_model(SHIPPED_MODEL)
    faces = load_dataset(small_test_folder)
    logits = logits_of(pytorch, faces.images)
    temperature = fit_temperature(logits, faces.labels)
    assert abs(temperature - 1.0) > 0.02  # else T = 1 would pass everything below
    assert served.temperature == pytest.approx(temperature) == report["calibration"]["temperature"]
    # The graph outputs softmax(logits / T), not the plain softmax.
    got = served(faces.images)
    np.testing.assert_allclose(got, softmax(logits, temperature), atol=PARITY)
    assert np.abs(got - softmax(logits)).max() > 10 * PARITY
    assert (got.argmax(1) == logits.argmax(1)).all()
    # The metadata says where T was fitted and what it did there.
    calibration = served.calibration
    assert calibration.data["path"] == str(small_test_folder) and len(calibration.data["sha256"]) == 64
    assert calibration.data["files"] == calibration.n == len(faces) == 105 and calibration.bins == 15
    assert calibration.ece_before == pytest.approx(expected_calibration_error(softmax(logits), faces.labels))
    assert calibration.ece_after == pytest.approx(expected_calibration_error(got, faces.labels), abs=1e-4)
    assert calibration.nll_after < calibration.nll_before
    # The PyTorch model file is never changed by an export.
    assert load_model(SHIPPED_MODEL).meta == pytorch.meta


def test_an_export_without_calibrate_is_the_plain_softmax(exports: dict, small_test_folder: Path) -> None:
    path, report = exports["plain"]
    served = load_classifier(path)
    assert served.temperature == 1.0 and served.calibration is None and report["calibration"] is None
    faces = load_dataset(small_test_folder)
    np.testing.assert_allclose(served(faces.images), softmax(logits_of(load_model(SHIPPED_MODEL), faces.images)),
                               atol=PARITY)


def test_fer_eval_reports_ece_before_and_after(exports: dict, small_test_folder: Path, tmp_path: Path,
                                               capsys) -> None:
    path, report = exports["calibrated"]
    png = tmp_path / "reliability.png"
    assert eval_main([str(small_test_folder), "--model", str(path), "--json", "--reliability", str(png)]) == 0
    result = json.loads(capsys.readouterr().out)
    calibration = report["calibration"]
    # Scored on the faces T was fitted on, fer-eval's ECE are the ones the export recorded.
    assert result["ece"] == pytest.approx(calibration["ece_after"], abs=1e-4)
    assert result["ece_uncalibrated"] == pytest.approx(calibration["ece_before"], abs=1e-4)
    assert result["temperature"] == calibration["temperature"] and result["ece_bins"] == 15
    assert png.read_bytes().startswith(b"\x89PNG")

    assert eval_main([str(small_test_folder), "--model", str(exports["plain"][0])]) == 0
    text = capsys.readouterr().out
    plain = expected_calibration_error(load_classifier(exports["plain"][0])(load_dataset(small_test_folder).images),
                                       load_dataset(small_test_folder).labels)
    assert f"calibration: ECE {plain:.4f} (15 bins), temperature 1.0000\n" in text + "\n"
    assert "uncalibrated" not in text


def test_bad_calibration_data_or_metadata_is_one_clear_error(tmp_path: Path, capsys) -> None:
    import onnx

    out = tmp_path / "x.onnx"
    assert export_main([str(SHIPPED_MODEL), "--out", str(out), "--calibrate", str(tmp_path / "absent")]) == 1
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("fer-export: ") and "absent" in error[0]
    assert not out.exists()

    model = onnx.load(SHIPPED_ONNX)
    # The shipped model is calibrated.
    entry = next(entry for entry in model.metadata_props if entry.key == "calibration")
    entry.value = json.dumps({"temperature": -1.0, "data": {}, "n": 1, "nll_before": 1.0, "nll_after": 1.0,
                              "ece_before": 0.1, "ece_after": 0.1})
    onnx.save(model, out)
    with pytest.raises(ValueError) as raised:
        load_classifier(out)
    message = str(raised.value)
    assert message.startswith(f"{out}: calibration") and "positive" in message and "\n" not in message
