"""The serving runtime: parity with PyTorch, the shipped ONNX against its .pt, the declared preprocessing
applied end to end, export round-trips, clear errors, and a serving path and install without torch."""

from __future__ import annotations

import dataclasses

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from ferstream.model.calibration import softmax
from ferstream.model.modelfile import (SHIPPED_MODEL, load_model, read_payload, read_training_state, save_model,
                                       to_input_tensor, weights_sha256)
from ferstream.model.preprocess import Preprocessing
from ferstream.model.runtime import RUNTIMES, SHIPPED_ONNX, default_served_path, int8_path, load_classifier
from ferstream.pipeline.decode import EncodedImage
from ferstream.pipeline.framepath import DetectOptions, load_frame_path
from ferstream.training.data import load_dataset
from ferstream.training.export import INT8_AGREEMENT, export_int8, logits_of
from ferstream.training.export import main as export_main

REPO = Path(__file__).resolve().parents[1]
PARITY = 1e-4  # the serving contract: served probabilities within 1e-4 of PyTorch's
ALL_CLASSES = tuple(range(7))


@pytest.fixture(scope="module")
def public_test(shared: Path):
    """FER2013 PublicTest: 3,589 faces."""
    faces = load_dataset(shared / "datasets" / "fer2013" / "test")
    assert len(faces) == 3589
    return faces


@pytest.fixture(scope="module")
def shipped_pytorch():
    return load_model(SHIPPED_MODEL)


def exported(pt: Path, out: Path, capsys: pytest.CaptureFixture) -> dict:
    """fer-export PT --out OUT, its JSON line."""
    assert export_main([str(pt), "--out", str(out)]) == 0
    return json.loads(capsys.readouterr().out)


def edited_model_file(tmp_path: Path, name: str, **preprocessing) -> Path:
    """A copy of the shipped model file whose preprocessing field is set to preprocessing (weights unchanged)."""
    payload = read_payload(SHIPPED_MODEL)
    payload["format"] = "ferstream-emotion-v2"
    payload["preprocessing"] = {"equalize": False, "input_size": 48, "mean": 0.5, "std": 0.25, **preprocessing}
    path = tmp_path / name
    torch.save(payload, path)
    return path


def calibrated(pytorch, crops: np.ndarray, temperature: float) -> np.ndarray:
    """PyTorch's probabilities at the temperature the served graph applies (the shipped model's is fitted)."""
    return softmax(logits_of(pytorch, crops), temperature).astype(np.float32)


@pytest.mark.slow  # 30 s per runtime on a busy 2-core machine: all 3,589 PublicTest faces
@pytest.mark.parametrize("runtime", RUNTIMES)
def test_the_runtime_matches_pytorch_on_all_of_public_test(runtime: str, public_test, shipped_pytorch) -> None:
    served = load_classifier(SHIPPED_ONNX, runtime, tta="none")  # the graph alone (tests/test_served_tta.py: flip)
    assert served.runtime == runtime and served.temperature > 1.0
    expected, got = calibrated(shipped_pytorch, public_test.images, served.temperature), served(public_test.images)
    assert got.shape == expected.shape == (3589, 7) and got.dtype == np.float32
    assert np.abs(got - expected).max() < PARITY
    assert (got.argmax(1) == expected.argmax(1)).all()


def test_the_shipped_onnx_is_the_export_of_the_shipped_pt(shipped_pytorch) -> None:
    """Fails when model/shipped/ferstream-emotion.pt changes without `fer-export` being re-run."""
    served = load_classifier(SHIPPED_ONNX)
    assert served.source_weights_sha256 == weights_sha256(shipped_pytorch.network.state_dict()), \
        "the shipped .onnx was exported from other weights: fer-export model/shipped/ferstream-emotion.pt"
    assert served.preprocessing == shipped_pytorch.preprocessing
    assert served.spec == shipped_pytorch.spec and served.parameters == shipped_pytorch.parameters
    assert served.class_names == shipped_pytorch.class_names
    assert served.meta == json.loads(json.dumps(shipped_pytorch.meta))


@pytest.mark.slow
def test_the_shipped_int8_ir_is_the_quantized_shipped_onnx(public_test) -> None:
    """Fails when the .onnx changes without `fer-export --int8` being re-run, or when int8 costs more than
    half a point of PublicTest accuracy."""
    full, int8 = load_classifier(SHIPPED_ONNX, "openvino"), load_classifier(int8_path(SHIPPED_ONNX), "openvino")
    assert dataclasses.replace(int8.metadata, int8_checks=()) == full.metadata, \
        "re-run fer-export with --int8 after changing the shipped model"
    assert [check.tta for check in int8.metadata.int8_checks] == ["none", "flip"]
    expected, got = full(public_test.images), int8(public_test.images)
    assert got.shape == (3589, 7) and got.dtype == np.float32
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    assert (got.argmax(1) == expected.argmax(1)).mean() >= INT8_AGREEMENT
    accuracy = {name: (p.argmax(1) == public_test.labels).mean() for name, p in (("f32", expected), ("int8", got))}
    assert accuracy["int8"] >= accuracy["f32"] - 0.005, accuracy


# Run in a process whose oneDNN may use AVX2 at most (ONEDNN_MAX_CPU_ISA, read when OpenVINO loads): the
# int8 form's top class on every PublicTest face, and the kernels OpenVINO chose for its layers.
AVX2_SCRIPT = """
import json, sys
from ferstream.model.runtime import SHIPPED_ONNX, int8_path, load_classifier
from ferstream.training.data import load_dataset
int8 = load_classifier(int8_path(SHIPPED_ONNX), "openvino", threads=1)
kernels = sorted({op.get_rt_info()["primitiveType"].astype(str)
                  for op in int8.session.compiled.get_runtime_model().get_ordered_ops()})
faces = load_dataset(sys.argv[1])
print(json.dumps({"kernels": kernels, "top": int8(faces.images).argmax(1).tolist()}))
"""


@pytest.mark.slow
def test_the_int8_form_answers_alike_on_a_cpu_without_avx512(shared: Path, public_test) -> None:
    """The int8 graph's 7-bit weights keep its integer sums from saturating where the CPU has no VNNI
    (model/quantize.py), so a CPU with AVX2 alone gives the answers this one gives: checked by capping
    oneDNN at AVX2 in a second process (on an AVX2-only CPU both runs are alike anyway)."""
    result = subprocess.run([sys.executable, "-c", AVX2_SCRIPT, str(shared / "datasets" / "fer2013" / "test")],
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"})
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.splitlines()[-1])
    int8_kernels = [kernel for kernel in report["kernels"] if kernel.endswith("_I8")]
    assert any(kernel.startswith("jit_avx2") for kernel in int8_kernels), report["kernels"]
    assert not any(kernel.startswith("brgconv_avx512") for kernel in int8_kernels), report["kernels"]
    here = load_classifier(int8_path(SHIPPED_ONNX), "openvino", threads=1)(public_test.images).argmax(1)
    avx2 = np.array(report["top"])
    assert (avx2 == here).mean() >= 0.995
    accuracy = {name: (top == public_test.labels).mean() for name, top in (("here", here), ("avx2", avx2))}
    assert abs(accuracy["avx2"] - accuracy["here"]) <= 0.002, accuracy


def test_openvino_serves_the_faster_form_on_this_cpu_and_onnx_runtime_the_onnx(monkeypatch: pytest.MonkeyPatch,
                                                                                tmp_path: Path) -> None:
    monkeypatch.delenv("FER_MODEL", raising=False)
    assert default_served_path("openvino") == int8_path(SHIPPED_ONNX)
    assert default_served_path("onnxruntime") == SHIPPED_ONNX
    assert load_classifier(None, "onnxruntime").path == str(SHIPPED_ONNX)
    served = load_classifier(None, "openvino")
    # Both forms were timed on this CPU and the cheaper one is served.
    assert set(served.form_costs) == {int8_path(SHIPPED_ONNX).name, SHIPPED_ONNX.name}
    assert Path(served.path).name == min(served.form_costs, key=served.form_costs.get)
    assert all(0 < cost < 100 for cost in served.form_costs.values())
    with pytest.raises(ValueError, match="OpenVINO IR.*onnxruntime cannot run") as error:
        load_classifier(int8_path(SHIPPED_ONNX), "onnxruntime")
    assert "\n" not in str(error.value)
    lonely = tmp_path / "lonely.xml"
    lonely.write_bytes(int8_path(SHIPPED_ONNX).read_bytes())
    with pytest.raises(FileNotFoundError, match="lonely.bin"):
        load_classifier(lonely, "openvino")


@pytest.mark.slow
def test_int8_export_is_checked_against_the_onnx_graph(tmp_path: Path, shared: Path, public_test) -> None:
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(SHIPPED_ONNX.read_bytes())
    result = export_int8(onnx_path, str(shared / "datasets" / "fer2013" / "train"))
    assert result.xml == tmp_path / "m-int8.xml" and result.agreement >= INT8_AGREEMENT
    assert sorted(path.name for path in tmp_path.iterdir()) == ["m-int8.bin", "m-int8.xml", "m.onnx"]
    # Same recipe, same training faces: the shipped IR's answers come back (exactly on the machine that wrote
    # it; another CPU's f32 statistics may move a quantization step).
    crops = public_test.images[:300]
    again, shipped = load_classifier(result.xml)(crops), load_classifier(int8_path(SHIPPED_ONNX))(crops)
    assert np.abs(again - shipped).max() < 0.02
    assert (again.argmax(1) == shipped.argmax(1)).mean() >= 0.99


def test_a_first_format_model_file_loads_with_the_preprocessing_it_was_served_with(tmp_path: Path,
                                                                                      shipped_pytorch) -> None:
    """Version 1 files (the first shipped model) had no preprocessing field and were served without
    equalisation, with the normalisation their meta recorded."""
    payload = read_payload(SHIPPED_MODEL)
    assert payload["format"] == "ferstream-emotion-v2"
    payload["format"] = "ferstream-emotion-v1"
    del payload["preprocessing"]
    payload["meta"] = {**payload["meta"], "input_size": 48, "normalization": {"mean": 0.5, "std": 0.25}}
    torch.save(payload, tmp_path / "v1.pt")
    first = load_model(tmp_path / "v1.pt")
    assert first.preprocessing == Preprocessing(equalize=False, input_size=48, mean=0.5, std=0.25)
    crops = np.random.default_rng(0).integers(0, 256, (8, 48, 48), dtype=np.uint8)
    # The same weights as the shipped file, which declares standardised crops: run them on raw ones too.
    raw = dataclasses.replace(shipped_pytorch, preprocessing=first.preprocessing)
    np.testing.assert_array_equal(first(crops), raw(crops))


@pytest.mark.slow
def test_a_changed_preprocessing_field_changes_what_the_frame_path_computes(
        tmp_path: Path, photo: bytes, fer_models_dir: Path, shipped_pytorch, capsys) -> None:
    equalizing = edited_model_file(tmp_path, "equalize.pt", equalize=True)
    exported(equalizing, tmp_path / "equalize.onnx", capsys)
    shipped = load_frame_path(fer_models_dir, SHIPPED_ONNX, ALL_CLASSES, 4096 * 4096, 50, tta="none")
    changed = load_frame_path(fer_models_dir, tmp_path / "equalize.onnx", ALL_CLASSES, 4096 * 4096, 50)
    assert changed.classifier.preprocessing.equalize and not shipped.classifier.preprocessing.equalize

    detected = shipped.detect(EncodedImage(photo), DetectOptions())
    assert len(detected.crops) >= 3
    before = np.array([face.probabilities for face in shipped.annotate(EncodedImage(photo)).faces])
    after = np.array([face.probabilities for face in changed.annotate(EncodedImage(photo)).faces])
    assert before.shape == after.shape and np.abs(before - after).max() > 0.01
    # What changed is exactly the declared step: the same weights on histogram-equalised crops.
    equalised = np.stack([cv2.equalizeHist(crop) for crop in detected.crops])
    np.testing.assert_allclose(after, shipped_pytorch(equalised), atol=PARITY)
    np.testing.assert_allclose(before, calibrated(shipped_pytorch, detected.crops, shipped.classifier.temperature),
                               atol=PARITY)


def test_normalisation_fields_reach_the_network(tmp_path: Path, public_test, capsys) -> None:
    shifted = edited_model_file(tmp_path, "shifted.pt", mean=0.4, std=0.3)
    exported(shifted, tmp_path / "shifted.onnx", capsys)
    served, pytorch = load_classifier(tmp_path / "shifted.onnx"), load_model(shifted)
    crops = public_test.images[:64]
    x = to_input_tensor(crops, pytorch.preprocessing).numpy()
    np.testing.assert_allclose(x, (crops[:, None] / 255.0 - 0.4) / 0.3, atol=1e-6)
    np.testing.assert_allclose(served(crops), pytorch(crops), atol=PARITY)
    assert np.abs(served(crops) - load_classifier(SHIPPED_ONNX)(crops)).max() > 0.01


def test_export_round_trips_a_saved_model_with_its_training_state(tmp_path: Path, shipped_pytorch, public_test,
                                                                  capsys) -> None:
    preprocessing = Preprocessing(equalize=True)
    state = {"epoch": 3, "optimizer": {"lr": torch.tensor(0.01)}, "history": [{"val_acc": 0.5}]}
    save_model(tmp_path / "m.pt", shipped_pytorch.network, shipped_pytorch.spec, preprocessing,
               {"training_command": "fer-train --out x"}, training_state=state)
    saved = load_model(tmp_path / "m.pt")
    assert saved.preprocessing == preprocessing and saved.meta["training_command"] == "fer-train --out x"
    assert read_training_state(tmp_path / "m.pt")["epoch"] == 3
    with pytest.raises(ValueError, match="no training state"):
        read_training_state(SHIPPED_MODEL)

    report = exported(tmp_path / "m.pt", tmp_path / "m.onnx", capsys)
    assert report["onnx"] == str(tmp_path / "m.onnx") and report["max_difference"] < PARITY
    served = load_classifier(tmp_path / "m.onnx")
    assert served.preprocessing == preprocessing and served.spec == saved.spec
    assert served.source_weights_sha256 == report["source_weights_sha256"] == saved.meta["weights_sha256"]
    crops = public_test.images[:200]
    np.testing.assert_allclose(served(crops), saved(crops), atol=PARITY)


def test_save_model_refuses_state_load_model_could_not_read(tmp_path: Path, shipped_pytorch) -> None:
    with pytest.raises(ValueError, match="weights_only"):
        save_model(tmp_path / "m.pt", shipped_pytorch.network, shipped_pytorch.spec, Preprocessing(False), {},
                   training_state={"numpy_rng": np.random.get_state()})
    assert not list(tmp_path.iterdir())


def test_unknown_preprocessing_is_one_clear_error(tmp_path: Path, capsys) -> None:
    unknown = edited_model_file(tmp_path, "unknown.pt", gamma=2.2)
    with pytest.raises(ValueError) as error:
        load_model(unknown)
    assert str(unknown) in str(error.value) and "'gamma'" in str(error.value) and "\n" not in str(error.value)

    from ferstream.training.evaluate import main as eval_main

    assert eval_main([str(tmp_path), "--model", str(unknown)]) == 1
    assert export_main([str(unknown)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and all(str(unknown) in line and "gamma" in line for line in lines)


def onnx_with_props(tmp_path: Path, name: str, **changes: str) -> Path:
    import onnx

    model = onnx.load(SHIPPED_ONNX)
    for entry in model.metadata_props:
        if entry.key in changes:
            entry.value = changes[entry.key]
    path = tmp_path / name
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_unreadable_onnx_and_unknown_metadata_are_one_clear_error(tmp_path: Path, runtime: str) -> None:
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(SHIPPED_ONNX.read_bytes()[:20_000])
    preprocessing = json.dumps({"equalize": True, "clahe": 2.0})
    unknown = onnx_with_props(tmp_path, "unknown.onnx", preprocessing=preprocessing)
    foreign = onnx_with_props(tmp_path, "foreign.onnx", ferstream_format="something-else")
    for path, expected in ((truncated, "cannot load"), (unknown, "'clahe'"), (foreign, "not a ferstream ONNX")):
        with pytest.raises(ValueError) as error:
            load_classifier(path, runtime)
        message = str(error.value)
        assert message.startswith(f"{path}: ") and expected in message and "\n" not in message, message


def test_the_server_refuses_a_corrupt_model_before_serving(tmp_path: Path, fer_models_dir: Path) -> None:
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07" + SHIPPED_ONNX.read_bytes()[2:50_000])
    result = subprocess.run([sys.executable, "-m", "ferstream.server.cli", "--port", "0", "--threads", "1",
                             "--models-dir", str(fer_models_dir), "--model", str(corrupt)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    lines = [line for line in result.stderr.splitlines() if str(corrupt) in line]
    assert len(lines) == 1 and "cannot load this model" in lines[0], result.stderr
    assert "serving on" not in result.stderr + result.stdout and "Traceback" not in result.stderr


def test_concurrent_calls_get_their_own_answers(public_test) -> None:
    served = load_classifier(SHIPPED_ONNX)
    batches = [public_test.images[i * 40:(i + 1) * 40] for i in range(8)]
    expected = [served(batch) for batch in batches]
    got: list[list[np.ndarray]] = [[] for _ in batches]

    def classify(index: int) -> None:
        for _ in range(5):
            got[index].append(served(batches[index]))

    threads = [threading.Thread(target=classify, args=(i,)) for i in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for answers, probabilities in zip(got, expected):
        assert len(answers) == 5
        for answer in answers:
            np.testing.assert_array_equal(answer, probabilities)


NO_TORCH = """
import json, sys
from pathlib import Path
sys.modules["torch"] = None  # any import of torch now raises ImportError
from ferstream.pipeline.decode import EncodedImage
from ferstream.pipeline.framepath import load_frame_path, set_thread_counts
import ferstream.server.app, ferstream.server.cli, ferstream.annotate.cli, ferstream.training.evaluate
set_thread_counts(1)
path = load_frame_path(Path(sys.argv[1]), None, tuple(range(7)), 4096 * 4096, 50)
frame = path.annotate(EncodedImage(Path(sys.argv[2]).read_bytes()))
loaded = sorted(name for name, module in sys.modules.items() if module is not None and name.split(".")[0] == "torch")
print(json.dumps({"faces": [face.probabilities.tolist() for face in frame.faces], "torch": loaded,
                  "model": path.classifier.path}))
"""


def test_the_serving_path_runs_without_torch(tmp_path: Path, fer_models_dir: Path, photo: bytes) -> None:
    (tmp_path / "photo.jpg").write_bytes(photo)
    result = subprocess.run([sys.executable, "-c", NO_TORCH, str(fer_models_dir), str(tmp_path / "photo.jpg")],
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["torch"] == [] and answer["model"] == str(int8_path(SHIPPED_ONNX))
    with_torch = load_frame_path(fer_models_dir, None, ALL_CLASSES, 4096 * 4096, 50).annotate(EncodedImage(photo))
    assert len(answer["faces"]) == len(with_torch.faces) >= 3
    np.testing.assert_allclose(answer["faces"], [face.probabilities for face in with_torch.faces], atol=1e-6)
