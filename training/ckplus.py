"""fer-ckplus: CK+ subject-independent k-fold cross-validation.

Every subject's images sit in exactly one fold. For each fold the FER2013 model is fine-tuned on the
other folds and scored on the held-out one; the 7-way output is restricted to the classes CK+ has
(CK+48 has no neutral, and contempt is not one of our classes). Reports mean ± std over folds.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import sys
from dataclasses import replace
from functools import partial

import numpy as np
import torch

from ferstream.model.labels import EMOTIONS
from ferstream.model.modelfile import load_model
from ferstream.model.preprocess import Preprocessing
from ferstream.commandline import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, add_version_argument, print_error
from ferstream.commandline import CommandParser, non_negative_float, non_negative_int, number_type
from ferstream.pipeline.settings import default_data_dir

from .data import DatasetError, FaceSet, load_dataset
from .loop import StepRecipe, lr_at, make_optimizer, seed_everything, train_epoch
from .metrics import classification_report, restrict_to_classes

PROG = "fer-ckplus"
# Fine-tuning steps: a fold's training set is only ~830 of CK+48's 927 usable faces, so a smaller batch than
# fer-train's 128 gives more steps per epoch; weight decay as fer-train's default.
BATCH_SIZE = 64
WEIGHT_DECAY = 5e-4


def default_data() -> str:
    """CK+48 under $FER_DATA_DIR (the shared data folder), else under ../shared."""
    return str(default_data_dir() / "datasets" / "ckplus" / "CK+48")


def subject_folds(groups: np.ndarray, k: int) -> list[np.ndarray]:
    """Indices of k folds that never split a subject, balanced by image count (largest subject first).

    groups: (N,) subject id per image. Returns k index arrays that partition 0..N-1.
    """
    subjects, counts = np.unique(groups, return_counts=True)
    fold_sizes = np.zeros(k, dtype=int)
    fold_of_subject = {}
    for position in np.argsort(-counts, kind="stable"):
        fold = int(fold_sizes.argmin())
        fold_of_subject[subjects[position]] = fold
        fold_sizes[fold] += counts[position]
    fold_ids = np.array([fold_of_subject[g] for g in groups])
    return [np.flatnonzero(fold_ids == fold) for fold in range(k)]


def fine_tune(base: torch.nn.Module, faces: FaceSet, preprocessing: Preprocessing, epochs: int, lr: float,
              seed: int) -> torch.nn.Module:
    """A copy of base trained for epochs on faces with fer-train's loop (augmentation, label smoothing,
    cosine schedule with warm-up), on the CPU, in eval mode when returned; base is left unchanged."""
    model = copy.deepcopy(base).to(memory_format=torch.channels_last)
    seed_everything(seed)
    optimizer = make_optimizer(model, lr, WEIGHT_DECAY)
    steps_per_epoch = math.ceil(len(faces) / BATCH_SIZE)
    schedule = partial(lr_at, total=steps_per_epoch * epochs, peak=lr)
    for epoch in range(epochs):
        train_epoch(model, optimizer, faces, np.random.permutation(len(faces)), BATCH_SIZE, preprocessing,
                    StepRecipe(), torch.device("cpu"), schedule, first_step=epoch * steps_per_epoch)
    return model.eval()


def build_parser() -> argparse.ArgumentParser:
    """fer-ckplus's options; every option is described in --help."""
    parser = CommandParser(prog=PROG, description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", nargs="?", default=default_data(),
                        help="the CK+48 folder: class subfolders, file names starting with the subject id "
                             "(default: $FER_DATA_DIR/datasets/ckplus/CK+48, else ../shared/...)")
    parser.add_argument("--model", default=None,
                        help="starting model file (default: $FER_MODEL, else the shipped model, "
                             "model/shipped/ferstream-emotion.pt)")
    parser.add_argument("--folds", type=number_type(int, lambda value: value >= 2, "a whole number of at least 2"),
                        default=10, help="number of subject-independent folds, at least 2 (default: 10)")
    parser.add_argument("--epochs", type=non_negative_int, default=10,
                        help="fine-tuning epochs per fold; 0 scores the model as it is (default: 10)")
    parser.add_argument("--lr", type=non_negative_float, default=0.01,
                        help="peak learning rate of fine-tuning (default: 0.01)")
    parser.add_argument("--seed", type=int, default=0, help="seed of fold k's fine-tuning is seed + k (default: 0)")
    parser.add_argument("--threads", type=non_negative_int, default=0,
                        help="threads of PyTorch, which fine-tunes and scores the model; 0: every core (default: 0)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a sentence")
    add_version_argument(parser)
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """fer-ckplus's arguments; argparse exits 2 with one line for bad usage."""
    return build_parser().parse_args(argv)


def cross_validate(args: argparse.Namespace) -> dict:
    """Run the k folds; returns the result JSON (see main). DatasetError, FileNotFoundError or ValueError
    (one line) for bad data or model."""
    faces = load_dataset(args.data)
    base = load_model(args.model)
    if faces.groups is None:
        raise DatasetError(f"{args.data}: file names do not start with a subject id (S010_…)")
    if len(np.unique(faces.groups)) < args.folds:
        raise DatasetError(f"{args.data}: {len(np.unique(faces.groups))} subjects cannot fill {args.folds} folds")
    present = sorted(set(faces.labels.tolist()))
    accuracies, confusion = [], None
    for fold, test_index in enumerate(subject_folds(faces.groups, args.folds)):
        train_index = np.setdiff1d(np.arange(len(faces)), test_index)
        network = base.network
        if args.epochs:
            network = fine_tune(base.network, faces.subset(train_index), base.preprocessing, args.epochs, args.lr,
                                args.seed + fold)
        probabilities = replace(base, network=network)(faces.images[test_index])
        labels, predictions = restrict_to_classes(faces.labels[test_index], probabilities, present)
        report = classification_report(labels, predictions, [EMOTIONS[i] for i in present])
        accuracies.append(report.accuracy)
        confusion = report.confusion if confusion is None else confusion + report.confusion
        print(f"fold {fold + 1}/{args.folds}: {report.accuracy:.4f} on {report.n} images "
              f"({len(np.unique(faces.groups[test_index]))} subjects)", file=sys.stderr)
    return {"folds": args.folds, "mean_accuracy": float(np.mean(accuracies)),
            "std_accuracy": float(np.std(accuracies)), "fold_accuracies": accuracies,
            "classes": [EMOTIONS[i] for i in present], "n": int(confusion.sum()),
            "fine_tune_epochs": args.epochs, "model": base.path}


def main(argv: list[str] | None = None) -> int:
    """fer-ckplus's entry point: 0 done, 2 bad arguments, data or model (one line), 130 on Ctrl-C.

    Prints "CK+ subject-independent K-fold: MEAN ± STD over N images", or with --json one object:
    folds, mean_accuracy, std_accuracy, fold_accuracies, classes, n, fine_tune_epochs, model.
    """
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        result = cross_validate(args)
    except (DatasetError, OSError, ValueError) as error:
        print_error(PROG, str(error))
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.json:
        print(json.dumps(result))
    else:
        print(f"CK+ subject-independent {args.folds}-fold: {result['mean_accuracy']:.4f} ± "
              f"{result['std_accuracy']:.4f} over {result['n']} images")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
