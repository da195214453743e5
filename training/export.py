"""fer-export: a PyTorch model file as the ONNX model the server runs, checked against PyTorch.

  fer-export MODEL.pt --out MODEL.onnx [--calibrate DATA] [--int8 TRAINING_DATA]

The ONNX file takes the output of the model's declared preprocessing ((N, 1, 48, 48) float32) and
returns (N, 7) probabilities in EMOTIONS order; its metadata records the class names, the
preprocessing, the architecture and the sha256 of the PyTorch weights it came from, so the server
needs nothing else (and no PyTorch). Before anything is written, the export runs in the serving
runtime on sample crops and must match PyTorch within 1e-4. Re-run it whenever the .pt changes:
a test fails when the shipped .onnx no longer matches the shipped .pt.

--calibrate DATA fits temperature scaling (Guo et al. 2017) on the labelled faces in DATA: one T
minimising the negative log-likelihood of softmax(logits / T), computed with PyTorch. The graph then
outputs softmax(logits / T) (same top class, better calibrated probabilities) and its metadata records
T, DATA (path and sha256) and the expected calibration error (15 bins) before and after. The .pt is
never changed. The shipped model is calibrated on FER2013 PublicTest, also its selection set.

--int8 TRAINING_DATA also writes the int8 form the server runs by default on OpenVINO (quantize.py):
MODEL-int8.xml and .bin beside the ONNX file, quantized by NNCF with activation ranges from
CALIBRATION_FACES random faces of TRAINING_DATA's Training split. Before it is written it must give
the ONNX graph's top class on at least INT8_AGREEMENT of as many other Training faces.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from ferstream.model.calibration import Calibration, calibrate, softmax
from ferstream.model.modelfile import EmotionClassifier, default_model_path, load_model
from ferstream.model.quantize import CALIBRATION_FACES, quantize_int8, save_ir
from ferstream.model.onnxmeta import INT8_CHECKS, FormCheck, int8_checks_prop
from ferstream.model.runtime import (RUNTIMES, ServedClassifier, default_runtime, int8_path, load_classifier,
                                     open_classifier)
from ferstream.model.tta import SERVED_TTA
from ferstream.commandline import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, add_version_argument, print_error
from ferstream.commandline import CommandParser

from .data import DatasetError, load_dataset
from .provenance import data_sha256

PROG = "fer-export"

# Largest difference in any probability the export may show against PyTorch (the parity bound the serving runtime must
# meet).
PARITY_TOLERANCE = 1e-4


# Least share of held-out Training faces on which the int8 graph must keep the f32 graph's top class
# (the shipped model's share: docs/model-card.md#design-measurements).
INT8_AGREEMENT = 0.95


class ExportMismatch(ValueError):
    """The exported graph's probabilities differ from PyTorch's by more than PARITY_TOLERANCE, or the
    int8 graph's top class from the f32 graph's on more than 1 - INT8_AGREEMENT of the faces."""


@dataclass(frozen=True)
class ExportResult:
    """Where the ONNX went, how far its probabilities were from PyTorch's on the sample crops, and its
    calibration (None: uncalibrated, T = 1)."""

    onnx: Path
    runtime: str
    max_difference: float
    source_weights_sha256: str
    calibration: Calibration | None = None
    flip_calibration: Calibration | None = None


def sample_crops(size: int, n: int = 64, seed: int = 0) -> np.ndarray:
    """(n, size, size) uint8 crops for the self-check: smooth random blobs and uniform noise, half each.

    Noise alone saturates few units; smooth images reach the ranges faces do. The tests check real faces.
    """
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (n - n // 2, size, size), dtype=np.uint8)
    coarse = rng.integers(0, 256, (n // 2, 6, 6), dtype=np.uint8)
    smooth = [cv2.resize(image, (size, size), interpolation=cv2.INTER_LINEAR) for image in coarse]
    return np.concatenate([noise, np.stack(smooth)])


@torch.inference_mode()
def logits_of(classifier: EmotionClassifier, crops: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """(N, S, S) uint8 crops -> (N, classes) float64 logits of classifier's network in PyTorch, after its
    declared preprocessing. ValueError for crops the preprocessing does not take."""
    out = [classifier.network(torch.from_numpy(classifier.preprocessing.apply(crops[start:start + batch_size])))
           for start in range(0, len(crops), batch_size)]
    return torch.cat(out).double().numpy() if out else np.zeros((0, len(classifier.class_names)))


def fit_calibration(classifier: EmotionClassifier, data: str,
                    split: str | None = None) -> tuple[Calibration, Calibration]:
    """Temperature scaling of classifier fitted on the labelled faces of data (any dataset fer-eval reads):
    one T for a face alone, one for the mean of a face's and its mirror image's logits (model/tta.py).

    Records data's path and sha256 (provenance.data_sha256). DatasetError or OSError for unreadable
    data, ValueError for an empty set.
    """
    faces = load_dataset(data, split)
    logits = logits_of(classifier, faces.images)
    # The declared preprocessing treats a face and its mirror image alike, so mirroring the crops mirrors its input.
    mirrored = logits_of(classifier, np.ascontiguousarray(faces.images[..., ::-1]))
    provenance = data_sha256(data)
    return (calibrate(logits, faces.labels, provenance),
            calibrate((logits + mirrored) / 2, faces.labels, provenance))


def export(classifier: EmotionClassifier, out: Path, runtime: str | None = None,
           calibration: Calibration | None = None, flip_calibration: Calibration | None = None,
           tta: str = "none") -> ExportResult:
    """Writes classifier's ONNX model to out (atomically) once it matches PyTorch in runtime; with a
    calibration, the graph's softmax divides the logits by its temperature and PyTorch's side does too.
    flip_calibration (the mirrored views' temperature) and tta (the served default) go into its metadata.

    Nothing is written on an error: ExportMismatch when the runtime's probabilities differ by more than
    PARITY_TOLERANCE, ValueError when it cannot load the export.
    """
    from ferstream.model.onnxexport import onnx_bytes

    model = onnx_bytes(classifier, calibration, flip_calibration, tta)
    served = open_classifier(model, str(out), runtime, tta="none")
    crops = sample_crops(classifier.preprocessing.input_size)
    expected = softmax(logits_of(classifier, crops), served.temperature)
    difference = float(np.abs(served(crops) - expected).max())
    if not difference <= PARITY_TOLERANCE:
        raise ExportMismatch(f"{out}: {served.runtime} differs from PyTorch by {difference:.2e} "
                         f"(allowed {PARITY_TOLERANCE:g}); nothing written")
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(out.name + ".tmp")
    temporary.write_bytes(model)
    temporary.replace(out)
    return ExportResult(out, served.runtime, difference, served.source_weights_sha256, calibration, flip_calibration)


@dataclass(frozen=True)
class Int8Result:
    """Where the int8 IR went, the share of held-out Training faces where it kept the f32 top class, and its
    accuracy against the f32 graph's on labelled faces per served tta (empty without check data)."""

    xml: Path
    agreement: float
    faces: int
    checks: tuple[FormCheck, ...] = ()


def check_forms(f32: ServedClassifier, int8: ServedClassifier, data: str, split: str | None) -> tuple[FormCheck, ...]:
    """Both forms scored on the labelled faces of data, once per served tta (model/tta.py)."""
    faces = load_dataset(data, split)
    provenance = data_sha256(data)
    checks = []
    for tta in SERVED_TTA:
        f32.tta = int8.tta = tta
        f32_top, int8_top = f32(faces.images).argmax(axis=1), int8(faces.images).argmax(axis=1)
        checks.append(FormCheck(data=provenance, faces=len(faces), tta=tta,
                                f32_accuracy=float((f32_top == faces.labels).mean()),
                                int8_accuracy=float((int8_top == faces.labels).mean()),
                                agreement=float((f32_top == int8_top).mean())))
    return tuple(checks)


def export_int8(onnx_path: Path, data: str, seed: int = 0, check_data: str | None = None,
                check_split: str | None = None) -> Int8Result:
    """Writes int8_path(onnx_path) (and its .bin) from the ONNX file at onnx_path, quantized on
    CALIBRATION_FACES random Training faces of data (drawn with seed), once it keeps the ONNX graph's top
    class on at least INT8_AGREEMENT of CALIBRATION_FACES others. With check_data (labelled faces, the
    shipped model's PublicTest), both forms' accuracy there goes into the IR's metadata (check_forms),
    which runtime.choose_form reads: without it the server never prefers the int8 form.

    No IR is written on an error: ExportMismatch below the agreement, DatasetError for unreadable data,
    ValueError for too few faces, ImportError without nncf.
    """
    served = load_classifier(onnx_path, "openvino", tta="none")
    faces = load_dataset(data, "Training")
    if len(faces) < 2 * CALIBRATION_FACES:
        raise ValueError(f"{data}: {len(faces)} Training faces; int8 quantization needs {2 * CALIBRATION_FACES}")
    order = np.random.default_rng(seed).permutation(len(faces))
    ranges = faces.images[order[:CALIBRATION_FACES]]
    held_out = faces.images[order[CALIBRATION_FACES:2 * CALIBRATION_FACES]]
    model = quantize_int8(onnx_path.read_bytes(), ranges, served.preprocessing)
    xml = int8_path(onnx_path)
    temporary = xml.with_name(xml.stem + ".tmp.xml")
    save_ir(model, temporary)
    try:
        quantized = load_classifier(temporary, "openvino", tta="none")
        agreement = float((quantized(held_out).argmax(axis=1) == served(held_out).argmax(axis=1)).mean())
        if not agreement >= INT8_AGREEMENT:
            raise ExportMismatch(f"{xml}: the int8 graph keeps the top class on {agreement:.1%} of {len(held_out)} "
                                 f"Training faces (needed {INT8_AGREEMENT:.0%}); no int8 IR written")
        checks = check_forms(served, quantized, check_data, check_split) if check_data else ()
        if checks:
            record_checks(model, checks)
            save_ir(model, temporary)
        temporary.with_suffix(".bin").replace(xml.with_suffix(".bin"))
        temporary.replace(xml)
    finally:
        temporary.unlink(missing_ok=True)
        temporary.with_suffix(".bin").unlink(missing_ok=True)
    return Int8Result(xml, agreement, len(held_out), checks)


def record_checks(model, checks: tuple[FormCheck, ...]) -> None:
    """Adds checks to an openvino.Model's ONNX metadata (rt_info "framework"), where OnnxMetadata reads them."""
    model.set_rt_info(int8_checks_prop(checks), ["framework", INT8_CHECKS])


def build_parser() -> argparse.ArgumentParser:
    """fer-export's options; every option is described in --help."""
    parser = CommandParser(prog=PROG, description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", type=Path, default=None,
                        help="PyTorch model file (default: $FER_MODEL, else the shipped model, "
                             "model/shipped/ferstream-emotion.pt)")
    parser.add_argument("--out", type=Path, default=None,
                        help="the ONNX file to write (default: MODEL with the suffix .onnx, beside it)")
    parser.add_argument("--runtime", choices=RUNTIMES, default=None,
                        help="serving runtime that checks the export against PyTorch "
                             "(default: $FER_RUNTIME or openvino)")
    parser.add_argument("--calibrate", metavar="DATA", default=None,
                        help="fit temperature scaling on the labelled faces in DATA (any dataset fer-eval reads, "
                             "e.g. ../shared/datasets/fer2013/test) and bake it into the graph; "
                             "default: uncalibrated (T = 1)")
    parser.add_argument("--split", choices=["Training", "PublicTest", "PrivateTest"], default=None,
                        help="which split of a --calibrate root that holds several")
    parser.add_argument("--int8", metavar="TRAINING_DATA", default=None,
                        help="also write the int8 OpenVINO IR the server prefers (OUT's stem + '-int8.xml' and "
                             f"'.bin'), its activation ranges from {CALIBRATION_FACES} faces of TRAINING_DATA's "
                             "Training split (e.g. ../shared/datasets/fer2013/train), and score both forms on "
                             "--calibrate's faces, which the server needs to prefer int8; default: none")
    parser.add_argument("--tta", choices=SERVED_TTA, default="none",
                        help="test-time augmentation the model is served with by default: none, or flip (each face "
                             "and its mirror image in one batch, logits averaged, at twice the cost; needs "
                             "--calibrate for its own temperature) (default: %(default)s)")
    add_version_argument(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    """fer-export's command line: exit 0 once written; 1 (one line on stderr) for an unreadable model file or
    data, or an export that does not match PyTorch (nothing written) or an int8 IR that does not match the
    ONNX file (the ONNX file written, no IR); 2 for bad usage; 130 on Ctrl-C."""
    args = build_parser().parse_args(argv)
    model_path = args.model or default_model_path()
    out = args.out or model_path.with_suffix(".onnx")
    try:
        classifier = load_model(model_path)
        calibration, flip_calibration = (fit_calibration(classifier, args.calibrate, args.split) if args.calibrate
                                         else (None, None))
        result = export(classifier, out, args.runtime or default_runtime(), calibration, flip_calibration, args.tta)
        int8 = export_int8(out, args.int8, check_data=args.calibrate, check_split=args.split) if args.int8 else None
    except (DatasetError, OSError, ValueError, ImportError) as error:  # ExportMismatch included
        print_error(PROG, str(error))
        return EXIT_FAILED
    except KeyboardInterrupt:
        print_error(PROG, "interrupted; nothing written")
        return EXIT_INTERRUPTED
    print(json.dumps({"onnx": str(result.onnx), "runtime": result.runtime, "max_difference": result.max_difference,
                      "source_weights_sha256": result.source_weights_sha256,
                      "calibration": result.calibration.to_dict() if result.calibration else None,
                      "flip_calibration": result.flip_calibration.to_dict() if result.flip_calibration else None,
                      "tta": args.tta,
                      "int8": {"xml": str(int8.xml), "top_class_agreement": int8.agreement, "faces": int8.faces,
                               "checks": [check.to_dict() for check in int8.checks]} if int8 else None}))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
