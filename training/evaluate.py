"""fer-eval: score a model on any supported dataset (default: the shipped model).

Prints accuracy, per-class precision/recall/F1 and the confusion matrix; --json prints one JSON
object instead. DATA may be a folder of class subfolders (e.g. ../shared/datasets/fer2013/test),
a Kaggle or FER+ root with --split, a FER+ split folder, or fer2013.csv.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ferstream.model.modelfile import default_model_path, load_model
from .data import DatasetError, load_dataset
from ferstream.model.labels import EMOTIONS, class_indices
from .metrics import classification_report, restrict_to_classes
from .plots import plot_confusion
from .tta import TTA_MODES, predict


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fer-eval", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", help="dataset path")
    parser.add_argument("--model", default=None, help=f"model file (default: {default_model_path()})")
    parser.add_argument("--split", choices=["Training", "PublicTest", "PrivateTest"], default=None,
                        help="which split of a root that holds several (or a filter on Kaggle file names)")
    parser.add_argument("--tta", choices=TTA_MODES, default="none", help="test-time augmentation")
    parser.add_argument("--classes", default=None,
                        help="score a subset, e.g. angry,happy,neutral,sad,surprise (the 7-way output is restricted)")
    parser.add_argument("--confusion-png", type=Path, default=None, help="also save the confusion matrix as PNG")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: all cores)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        keep = class_indices(args.classes) if args.classes else list(range(len(EMOTIONS)))
        classifier = load_model(args.model).for_inference()  # scored exactly as the server runs it
        faces = load_dataset(args.data, args.split)
    except (DatasetError, FileNotFoundError, ValueError) as error:
        print(f"fer-eval: {error}", file=sys.stderr)
        return 2
    probabilities = predict(classifier, faces.images, args.tta)
    labels, predictions = restrict_to_classes(faces.labels, probabilities, keep)
    report = classification_report(labels, predictions, [EMOTIONS[i] for i in keep])
    if args.confusion_png:
        plot_confusion(report.confusion, report.class_names, args.confusion_png,
                       f"{Path(args.data).name}: accuracy {report.accuracy:.3f}")
    if args.json:
        print(json.dumps({**report.to_dict(), "model": classifier.path, "data": str(args.data),
                          "tta": args.tta, "skipped": faces.skipped}))
    else:
        print(f"model {classifier.path}\ndata {args.data} (tta: {args.tta})\n")
        print(report.to_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
