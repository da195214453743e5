"""The accurate tier's expression model: the shipped int8 file is OpenCV Zoo's, its f32 form is what
`python -m ferstream.model.zoo` makes of it and answers like it on the shared photos' faces, and the tiers
built on both serve probabilities in EMOTIONS order."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from ferstream.model import zoo
from ferstream.model.labels import EMOTIONS
from ferstream.model.runtime import load_classifier
from ferstream.model.tiers import (ACCURATE, COLOUR, FAST, GREY, TIER_NAMES, combine, load_tiers,
                                   parse_model_argument, unknown_tier)
from ferstream.pipeline.crops import colour_crops, face_crops
from ferstream.pipeline.detectors import DetectorKind, load_detectors


@pytest.fixture(scope="module")
def shared_faces(fer_models_dir: Path, faces_dir: Path) -> dict[str, np.ndarray]:
    """Every face YuNet finds in the shared photos: {GREY: (N, 48, 48), COLOUR: (N, 112, 112, 3)}."""
    yunet = load_detectors(fer_models_dir)[DetectorKind.YUNET].detector
    grey, colour = [], []
    for path in sorted(faces_dir.glob("*.jpg")):
        photo = cv2.imread(str(path))
        boxes = yunet.detect(photo, yunet.default_threshold)
        grey.append(face_crops(photo, boxes))
        colour.append(colour_crops(photo, boxes))
    return {GREY: np.concatenate(grey), COLOUR: np.concatenate(colour)}


def test_the_shipped_int8_file_is_the_published_one_with_its_licence() -> None:
    assert zoo.sha256_of(zoo.ZOO_INT8) == zoo.ZOO_SHA256
    assert "Apache License" in (zoo.SHIPPED_DIR / "LICENSE-facial-expression-recognition-apache-2.0.txt").read_text()
    provenance = (zoo.SHIPPED_DIR / "PROVENANCE-facial-expression-recognition.md").read_text()
    assert zoo.ZOO_SHA256 in provenance and zoo.sha256_of(zoo.ZOO_F32) in provenance


def test_the_f32_form_is_what_dequantize_makes_of_the_int8_file(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    out = tmp_path / "f32.onnx"
    assert zoo.main([str(out)]) == 0
    made, shipped = onnx.load(str(out)), onnx.load(str(zoo.ZOO_F32))
    assert made.graph.SerializeToString() == shipped.graph.SerializeToString()
    assert not any(node.op_type.startswith("QLinear") for node in made.graph.node)


@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
def test_f32_and_int8_forms_agree_on_the_shared_photos_faces(shared_faces, runtime: str) -> None:
    faces = shared_faces[COLOUR]
    assert len(faces) >= 40
    f32 = zoo.open_zoo(zoo.ZOO_F32, runtime, 1)(faces)
    int8 = zoo.open_zoo(zoo.ZOO_INT8, runtime, 1)(faces)
    assert f32.shape == int8.shape == (len(faces), len(EMOTIONS))
    assert np.allclose(f32.sum(axis=1), 1.0, atol=1e-5)
    # The int8 graph rounds every activation to 8 bits: the same top class on nearly every face, and
    # probabilities within a few hundredths on average.
    agree = float((f32.argmax(axis=1) == int8.argmax(axis=1)).mean())
    assert agree >= 0.9, agree
    assert float(np.abs(f32 - int8).mean()) < 0.03


def test_the_fastest_form_is_served_and_its_cost_logged(caplog) -> None:
    caplog.set_level("INFO", logger="ferstream.model")
    served = zoo.load_zoo("openvino", 1)
    assert set(served.form_costs) == {zoo.ZOO_F32.name, zoo.ZOO_INT8.name}
    assert served.form_costs[served.path.name] == min(served.form_costs.values())
    assert f"serving {served.path.name}" in caplog.text


def test_output_order_is_mapped_to_emotions(shared_faces) -> None:
    model = zoo.open_zoo(zoo.ZOO_F32, "onnxruntime", 1)
    faces = shared_faces[COLOUR][:8]
    logits = model.logits(faces)
    probabilities = model(faces)
    for name in EMOTIONS:
        column = EMOTIONS.index(name)
        assert np.allclose(probabilities[:, column], zoo.softmax(logits)[:, zoo.ZOO_CLASSES.index(name)])


def test_bad_input_is_one_clear_error() -> None:
    model = zoo.open_zoo(zoo.ZOO_F32, "onnxruntime", 1)
    with pytest.raises(ValueError, match="112, 112, 3"):
        model(np.zeros((1, 48, 48), np.uint8))
    with pytest.raises(FileNotFoundError):
        zoo.open_zoo(zoo.SHIPPED_DIR / "missing.onnx", "onnxruntime", 1)


def test_tiers_answer_in_emotions_order_with_their_costs(shared_faces) -> None:
    classifier = load_classifier(None, "onnxruntime", 1)
    tiers = load_tiers(classifier, TIER_NAMES, "onnxruntime", 1)
    assert set(tiers) == {FAST, ACCURATE}
    assert tiers[FAST].inputs == (GREY,) and set(tiers[ACCURATE].inputs) == {GREY, COLOUR}
    for tier in tiers.values():
        probabilities = tier.classify({kind: shared_faces[kind] for kind in tier.inputs})
        assert probabilities.shape == (len(shared_faces[GREY]), len(EMOTIONS))
        assert np.allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
        assert tier.cost_ms > 0 and tier.provenance
    assert "Apache-2.0" in tiers[ACCURATE].provenance
    # The fast tier is the served CNN unchanged.
    assert np.array_equal(tiers[FAST].classify({GREY: shared_faces[GREY]}), classifier(shared_faces[GREY]))
    with pytest.raises(ValueError, match="choose one of fast, accurate"):
        load_tiers(classifier, ("precise",))


def test_combinations_and_model_arguments() -> None:
    a = np.array([[0.8, 0.2]])
    b = np.array([[0.2, 0.8]])
    assert np.allclose(combine([(a, 1.0), (b, 1.0)], "mean"), [[0.5, 0.5]])
    assert np.allclose(combine([(a, 1.0), (b, 1.0)], "geometric"), [[0.5, 0.5]])
    assert np.allclose(combine([(a, 3.0), (b, 1.0)], "mean"), [[0.65, 0.35]])
    with pytest.raises(ValueError):
        combine([(a, 1.0)], "median")
    assert parse_model_argument("accurate") == (ACCURATE, None)
    assert parse_model_argument("runs/x.onnx") == (None, Path("runs/x.onnx"))
    assert parse_model_argument(None) == (None, None)
    with pytest.raises(ValueError, match="unknown model 'Accurate'"):
        parse_model_argument("Accurate")
    assert unknown_tier("x") == "unknown model 'x'; choose one of fast, accurate"
