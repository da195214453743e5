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
from functools import partial

import numpy as np
import torch

from ferstream.model.modelfile import load_model
from .data import DatasetError, FaceSet, load_dataset
from ferstream.model.labels import EMOTIONS
from .metrics import classification_report, restrict_to_classes
from .train import TrainConfig, lr_at, make_optimizer, run_epoch, seed_everything
from .tta import predict


def subject_folds(groups: np.ndarray, k: int) -> list[np.ndarray]:
    """Indices of k folds that never split a subject, balanced by image count (largest subject first)."""
    subjects, counts = np.unique(groups, return_counts=True)
    fold_sizes = np.zeros(k, dtype=int)
    fold_of_subject = {}
    for position in np.argsort(-counts, kind="stable"):
        fold = int(fold_sizes.argmin())
        fold_of_subject[subjects[position]] = fold
        fold_sizes[fold] += counts[position]
    fold_ids = np.array([fold_of_subject[g] for g in groups])
    return [np.flatnonzero(fold_ids == fold) for fold in range(k)]


def fine_tune(base: torch.nn.Module, faces: FaceSet, epochs: int, lr: float, seed: int) -> torch.nn.Module:
    model = copy.deepcopy(base).to(memory_format=torch.channels_last)
    config = TrainConfig(lr=lr, batch_size=64, weight_decay=5e-4)
    seed_everything(seed)
    optimizer = make_optimizer(model, config)
    steps_per_epoch = math.ceil(len(faces) / config.batch_size)
    schedule = partial(lr_at, total=steps_per_epoch * epochs, peak=lr)
    for epoch in range(epochs):
        run_epoch(model, optimizer, faces, np.random.permutation(len(faces)), config.batch_size, config,
                  torch.device("cpu"), schedule, first_step=epoch * steps_per_epoch)
    return model.eval()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="fer-ckplus", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("data", help="the CK+48 folder (class subfolders; file names start with the subject id)")
    parser.add_argument("--model", default=None, help="starting model (default: the shipped model)")
    parser.add_argument("--folds", type=int, default=10)
    parser.add_argument("--epochs", type=int, default=10, help="fine-tuning epochs per fold (0: no fine-tuning)")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    try:
        faces = load_dataset(args.data)
        base = load_model(args.model)
    except (DatasetError, FileNotFoundError, ValueError) as error:
        print(f"fer-ckplus: {error}", file=sys.stderr)
        return 2
    if faces.groups is None:
        print(f"fer-ckplus: {args.data}: file names do not start with a subject id (S010_…)", file=sys.stderr)
        return 2
    present = sorted(set(faces.labels.tolist()))
    accuracies, confusion = [], None
    for fold, test_index in enumerate(subject_folds(faces.groups, args.folds)):
        train_index = np.setdiff1d(np.arange(len(faces)), test_index)
        network = base.network
        if args.epochs:
            network = fine_tune(base.network, faces.subset(train_index), args.epochs, args.lr, args.seed + fold)
        scored = copy.copy(base)
        scored.network = network
        probabilities = predict(scored, faces.images[test_index])
        labels, predictions = restrict_to_classes(faces.labels[test_index], probabilities, present)
        report = classification_report(labels, predictions, [EMOTIONS[i] for i in present])
        accuracies.append(report.accuracy)
        confusion = report.confusion if confusion is None else confusion + report.confusion
        print(f"fold {fold + 1}/{args.folds}: {report.accuracy:.4f} on {report.n} images "
              f"({len(np.unique(faces.groups[test_index]))} subjects)", file=sys.stderr)
    result = {"folds": args.folds, "mean_accuracy": float(np.mean(accuracies)),
              "std_accuracy": float(np.std(accuracies)), "fold_accuracies": accuracies,
              "classes": [EMOTIONS[i] for i in present], "n": int(confusion.sum()),
              "fine_tune_epochs": args.epochs, "model": base.path}
    if args.json:
        print(json.dumps(result))
    else:
        print(f"CK+ subject-independent {args.folds}-fold: {result['mean_accuracy']:.4f} ± "
              f"{result['std_accuracy']:.4f} over {result['n']} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
