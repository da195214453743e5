"""fer-eval: score a model on any supported dataset (default: the shipped model), as the server runs it.

The model runs in the serving runtime (OpenVINO by default, see model/runtime.py) with its declared
preprocessing, so the score is the served model's. MODEL may be the ONNX file the server loads or a
PyTorch model file (exported in memory first, which needs torch).

Prints accuracy, per-class precision/recall/F1, the confusion matrix and the expected calibration
error (ECE, 15 equal-width confidence bins, Guo et al. 2017) of the served probabilities; for a model
exported with --calibrate also the ECE its probabilities had before temperature scaling (T = 1, exact
except for tencrop). Without --tta it scores what the server serves: the model's declared default.
--json prints one JSON object instead; --reliability draws the reliability diagram(s).

DATA may be a folder of class subfolders (e.g. ../shared/datasets/fer2013/test), a Kaggle or FER+
root with --split, a FER+ split folder, or fer2013.csv.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ferstream.model.calibration import BINS, ReliabilityBins, reliability_bins, undo_temperature
from ferstream.model.labels import EMOTIONS, class_indices
from ferstream.model.runtime import RUNTIMES, load_classifier
from ferstream.commandline import (EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, CommandParser,
                                   add_version_argument, non_negative_int, print_error)

from .data import DatasetError, load_dataset
from .metrics import classification_report, restrict_to_classes
from .plots import plot_confusion, plot_reliability
from .tta import TTA_MODES, predict


PROG = "fer-eval"


def build_parser() -> argparse.ArgumentParser:
    """fer-eval's options; every option is described in --help."""
    parser = CommandParser(prog=PROG, description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", help="dataset path")
    parser.add_argument("--model", type=Path, default=None,
                        help="served .onnx or PyTorch model file (default: $FER_MODEL, else the shipped model in the "
                             "runtime's form: its int8 IR in OpenVINO, its .onnx in ONNX Runtime)")
    parser.add_argument("--runtime", choices=RUNTIMES, default=None,
                        help="serving runtime (default: $FER_RUNTIME or openvino)")
    parser.add_argument("--split", choices=["Training", "PublicTest", "PrivateTest"], default=None,
                        help="which split of a root that holds several (or a filter on Kaggle file names)")
    parser.add_argument("--tta", choices=TTA_MODES, default=None,
                        help="test-time augmentation: none, mirror images (flip, as the server serves it: logits "
                             "averaged, at the temperature fitted for them) or ten crops (tencrop, probabilities "
                             "averaged; evaluation only) (default: what the model declares it is served with)")
    parser.add_argument("--classes", default=None,
                        help="score a subset, e.g. angry,happy,neutral,sad,surprise (the 7-way output is restricted)")
    parser.add_argument("--confusion-png", type=Path, default=None, help="also save the confusion matrix as PNG")
    parser.add_argument("--reliability", metavar="PNG", type=Path, default=None,
                        help="also save the reliability diagram (accuracy against confidence, 15 bins) as PNG; "
                             "a calibrated model's shows the uncalibrated one beside it (without TTA)")
    parser.add_argument("--threads", type=non_negative_int, default=0,
                        help="threads of the classifier runtime; 0: every core (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_version_argument(parser)
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """fer-eval's arguments; argparse exits 2 with one line on a bad one."""
    return build_parser().parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """fer-eval's command line: exit 0 with the report, 1 for an unreadable model or dataset, 2 for bad
    usage (one line on stderr each), 130 on Ctrl-C."""
    args = parse_args(argv)
    try:
        return evaluate(args)
    except KeyboardInterrupt:
        print_error(PROG, "interrupted")
        return EXIT_INTERRUPTED


def evaluate(args: argparse.Namespace) -> int:
    """Loads model and data, scores, prints; the body of main."""
    try:
        keep = class_indices(args.classes) if args.classes else list(range(len(EMOTIONS)))
    except ValueError as error:
        print_error(PROG, f"--classes: {error}")
        return EXIT_USAGE
    try:
        # tencrop is averaged here over single views; none and flip are what the served classifier runs.
        served_tta = "none" if args.tta == "tencrop" else args.tta
        classifier = load_classifier(args.model, args.runtime, args.threads, served_tta)
        faces = load_dataset(args.data, args.split)
    except (DatasetError, OSError, ValueError) as error:
        print_error(PROG, str(error))
        return EXIT_FAILED
    tta = args.tta or classifier.tta
    probabilities = predict(classifier, faces.images, "tencrop" if tta == "tencrop" else "none")
    labels, predictions = restrict_to_classes(faces.labels, probabilities, keep)
    report = classification_report(labels, predictions, [EMOTIONS[i] for i in keep])
    temperature = classifier.temperature
    served = reliability_bins(restricted(probabilities, faces.labels, keep), labels)
    # Undoing T is exact for one softmax of the mean logits (none, flip), not for an average of softmaxes.
    uncalibrated = (reliability_bins(restricted(undo_temperature(probabilities, temperature), faces.labels, keep),
                                     labels) if temperature != 1.0 and tta != "tencrop" else None)
    name = "/".join(Path(args.data).parts[-2:])
    if args.confusion_png:
        plot_confusion(report.confusion, report.class_names, args.confusion_png,
                       f"{name}: accuracy {report.accuracy:.3f}")
    if args.reliability:
        panels = [(f"{name}: uncalibrated (T = 1)", uncalibrated)] if uncalibrated else []
        plot_reliability(panels + [(f"{name}: served (T = {temperature:.3f})", served)], args.reliability)
    if args.json:
        print(json.dumps({**report.to_dict(), "model": classifier.path, "runtime": classifier.runtime,
                          "preprocessing": classifier.preprocessing.to_dict(), "data": str(args.data),
                          "tta": tta, "skipped": faces.skipped, "ece": served.ece, "ece_bins": BINS,
                          "temperature": temperature, "ece_uncalibrated": uncalibrated.ece if uncalibrated else None}))
    else:
        print(f"model {classifier.path} ({classifier.runtime}; {classifier.preprocessing.describe()})\n"
              f"data {args.data} (tta: {tta})\n")
        print(report.to_text())
        print(calibration_text(served, temperature, uncalibrated))
    return EXIT_OK


def restricted(probabilities: np.ndarray, labels: np.ndarray, keep: list[int]) -> np.ndarray:
    """The (M, len(keep)) probabilities of the M faces of kept classes over the kept outputs, renormalised
    to sum to 1 (as restrict_to_classes scores them; all N rows when keep is every class)."""
    kept = probabilities[np.isin(labels, keep)][:, keep].astype(np.float64)
    return kept / np.maximum(kept.sum(axis=1, keepdims=True), np.finfo(np.float64).tiny)


def calibration_text(served: ReliabilityBins, temperature: float, uncalibrated: ReliabilityBins | None) -> str:
    """The report's calibration line: ECE of the served probabilities, and before temperature scaling."""
    text = f"\ncalibration: ECE {served.ece:.4f} ({len(served.count)} bins), temperature {temperature:.4f}"
    return text + (f"; uncalibrated (T = 1) ECE {uncalibrated.ece:.4f}" if uncalibrated else "")


if __name__ == "__main__":
    sys.exit(main())
