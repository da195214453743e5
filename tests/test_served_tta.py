"""Mirrored views as served: a face and its mirror image in one batch, their logits averaged at the
temperature fitted for them; and the int8 form served only where its recorded accuracy holds."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import openvino
import pytest

from ferstream.model.calibration import expected_calibration_error, softmax
from ferstream.model.formchoice import choose
from ferstream.model.modelfile import SHIPPED_MODEL, load_model
from ferstream.model.onnxmeta import FormCheck
from ferstream.model.runtime import INT8_TOLERANCE, SHIPPED_ONNX, choose_form, int8_path, load_classifier
from ferstream.model.tta import combine_mirrored, with_mirror_images
from ferstream.training.data import load_dataset
from ferstream.training.evaluate import main as eval_main
from ferstream.training.export import logits_of, main as export_main, record_checks

PARITY = 1e-4


@pytest.fixture(scope="module")
def flip_export(small_test_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """fer-export of the shipped .pt, calibrated on the small folder, served with flip: (path, JSON line)."""
    path = tmp_path_factory.mktemp("flip") / "flip.onnx"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert export_main([str(SHIPPED_MODEL), "--out", str(path), "--calibrate", str(small_test_folder),
                            "--tta", "flip"]) == 0
    return path, json.loads(printed.getvalue())


def test_flip_serves_the_mean_of_both_views_logits_at_their_own_temperature(flip_export, small_test_folder) -> None:
    path, report = flip_export
    faces = load_dataset(small_test_folder)
    pytorch = load_model(SHIPPED_MODEL)
    logits = logits_of(pytorch, faces.images)
    mirrored = logits_of(pytorch, np.ascontiguousarray(faces.images[..., ::-1]))
    served = load_classifier(path)
    assert served.tta == "flip"  # the export's declared default
    single_t, flip_t = report["calibration"]["temperature"], report["flip_calibration"]["temperature"]
    assert served.temperature == pytest.approx(flip_t) and abs(flip_t - single_t) > 1e-3
    got = served(faces.images)
    np.testing.assert_allclose(got, softmax((logits + mirrored) / 2, flip_t), atol=PARITY)
    # Not the single view's answer, nor the mean of the two views' probabilities.
    assert np.abs(got - softmax(logits, single_t)).max() > 10 * PARITY
    assert np.abs(got - (softmax(logits, single_t) + softmax(mirrored, single_t)) / 2).max() > 10 * PARITY
    # Calibration holds for what is served: the fitted T brings the mean logits' ECE down on the fit's faces.
    assert expected_calibration_error(got, faces.labels) == pytest.approx(report["flip_calibration"]["ece_after"],
                                                                          abs=1e-4)
    # tta="none" serves the graph alone, at the single view's temperature.
    alone = load_classifier(path, tta="none")
    np.testing.assert_allclose(alone(faces.images), softmax(logits, single_t), atol=PARITY)


def test_combining_is_exact_for_any_temperatures() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, (10, 7))
    probabilities = softmax(np.concatenate([logits[:5], logits[5:]]), 1.3).astype(np.float32)
    np.testing.assert_allclose(combine_mirrored(probabilities, 1.3, 0.9), softmax((logits[:5] + logits[5:]) / 2, 0.9),
                               atol=1e-5)
    x = rng.random((3, 1, 4, 4)).astype(np.float32)
    both = with_mirror_images(x)
    assert both.shape == (6, 1, 4, 4) and (both[3:] == x[..., ::-1]).all() and (both[:3] == x).all()
    with pytest.raises(ValueError, match="mirror image"):
        combine_mirrored(probabilities[:3], 1.0, 1.0)


def test_fer_eval_scores_what_is_served_by_default(flip_export, small_test_folder: Path, capsys) -> None:
    path, _ = flip_export
    reports = {}
    for tta in (None, "flip", "none"):
        assert eval_main([str(small_test_folder), "--model", str(path), "--json",
                          *(["--tta", tta] if tta else [])]) == 0
        reports[tta] = json.loads(capsys.readouterr().out)
    assert reports[None]["tta"] == "flip" and reports["none"]["tta"] == "none"
    assert reports[None]["accuracy"] == reports["flip"]["accuracy"]
    assert reports[None]["ece"] == reports["flip"]["ece"] != reports["none"]["ece"]
    with pytest.raises(SystemExit):
        eval_main([str(small_test_folder), "--model", str(path), "--tta", "sideways"])


def form_pair(tmp_path: Path, checks: tuple[FormCheck, ...]) -> Path:
    """A copy of the shipped ONNX file and its int8 IR, the IR's recorded checks replaced by checks."""
    onnx_path = tmp_path / "m.onnx"
    shutil.copy(SHIPPED_ONNX, onnx_path)
    model = openvino.Core().read_model(str(int8_path(SHIPPED_ONNX)))
    record_checks(model, checks)
    openvino.save_model(model, str(int8_path(onnx_path)), compress_to_fp16=False)
    return onnx_path


def check(tta: str, loss: float) -> FormCheck:
    return FormCheck(data={"path": "PublicTest"}, faces=3589, tta=tta, f32_accuracy=0.66,
                     int8_accuracy=0.66 - loss, agreement=0.98)


@pytest.mark.parametrize("checks, competes", [
    ((check("none", 0.0), check("flip", INT8_TOLERANCE / 2)), True),
    ((check("none", 0.0), check("flip", INT8_TOLERANCE * 3)), False),  # int8 loses too much with flip
    ((check("none", 0.0),), False),  # never measured with flip
    ((), False),  # never measured at all
], ids=["holds", "loses", "other-tta", "unmeasured"])
def test_int8_competes_only_where_its_recorded_accuracy_holds(tmp_path: Path, checks, competes: bool,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    onnx_path = form_pair(tmp_path, checks)
    assert load_classifier(int8_path(onnx_path)).metadata.int8_checks == checks
    with caplog.at_level("INFO", logger="ferstream.model"):
        served = choose_form(onnx_path, tta="flip")
    timed = {"m.onnx", "m-int8.xml"} if competes else {"m.onnx"}
    assert set(served.form_costs) == timed and served.tta == "flip"
    assert Path(served.path).name == min(served.form_costs, key=served.form_costs.get)
    # The log line gives both accuracies where they were measured.
    line = next(record.getMessage() for record in caplog.records if "serving" in record.getMessage())
    assert ("int8 65." in line and "f32 66.00%" in line) if checks and checks[-1].tta == "flip" \
        else "not measured" in line


def test_a_machine_times_its_forms_once_and_remembers_the_choice(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FER_CACHE_DIR", str(tmp_path / "cache"))
    files = {}
    for name in ("a", "b"):
        files[name] = [tmp_path / name]
        files[name][0].write_bytes(name.encode())
    first = choose(files, {"a": 1.0, "b": 2.0}.get, "threads=1")
    assert (first.name, first.remembered, first.costs) == ("a", False, {"a": 1.0, "b": 2.0})
    # A later load on this machine serves the same form, however a busy moment would time it now.
    again = choose(files, {"a": 3.0, "b": 2.0}.get, "threads=1")
    assert (again.name, again.remembered) == ("a", True)
    # Other settings or other files are timed afresh.
    assert choose(files, {"a": 3.0, "b": 2.0}.get, "threads=2").name == "b"
    files["a"][0].write_bytes(b"a, retrained")
    retimed = choose(files, {"a": 3.0, "b": 2.0}.get, "threads=1")
    assert (retimed.name, retimed.remembered) == ("b", False)
    assert choose(files, {"a": 0.0, "b": 9.0}.get, "threads=1").name == "b"
    # Kernels capped at an older CPU's instruction set run at that CPU's speed: timed afresh, remembered apart.
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    capped = choose(files, {"a": 1.0, "b": 2.0}.get, "threads=1")
    assert (capped.name, capped.remembered) == ("a", False)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert choose(files, {"a": 0.0, "b": 9.0}.get, "threads=1").name == "b"
