"""The PNGs people expect: training curves, the confusion matrix and reliability diagrams."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never a window
import matplotlib.pyplot as plt
import numpy as np

from ferstream.model.calibration import ReliabilityBins


def plot_curves(history: list[dict], target: Path) -> None:
    """Write a PNG of loss and accuracy per epoch (training and PublicTest) from metrics rows."""
    epochs = [row["epoch"] for row in history]
    figure, (loss_axis, accuracy_axis) = plt.subplots(1, 2, figsize=(10, 4))
    loss_axis.plot(epochs, [r["train_loss"] for r in history], label="train")
    loss_axis.plot(epochs, [r["val_loss"] for r in history], label="PublicTest")
    loss_axis.set(title="loss", xlabel="epoch")
    accuracy_axis.plot(epochs, [r["train_acc"] for r in history], label="train (augmented)")
    accuracy_axis.plot(epochs, [r["val_acc"] for r in history], label="PublicTest")
    accuracy_axis.set(title="accuracy", xlabel="epoch")
    for axis in (loss_axis, accuracy_axis):
        axis.grid(alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(target, dpi=100)
    plt.close(figure)


def plot_confusion(matrix: np.ndarray, class_names: list[str], target: Path, title: str) -> None:
    """Write a PNG of a (K, K) confusion matrix (rows: true class), coloured by row share, counts printed."""
    normalised = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    figure, axis = plt.subplots(figsize=(6.5, 5.5))
    image = axis.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    axis.set_yticks(range(len(class_names)), class_names)
    axis.set(xlabel="predicted", ylabel="true", title=title)
    for i in range(len(class_names)):
        for j in range(len(class_names)):
            axis.text(j, i, f"{matrix[i, j]}", ha="center", va="center",
                      color="white" if normalised[i, j] > 0.5 else "black", fontsize=8)
    figure.colorbar(image, ax=axis, fraction=0.046)
    figure.tight_layout()
    figure.savefig(target, dpi=100)
    plt.close(figure)


def plot_reliability(panels: list[tuple[str, ReliabilityBins]], target: Path) -> None:
    """Write a PNG of reliability diagrams side by side, one per (title, bins) panel (Guo et al. 2017, fig. 1).

    Each panel: accuracy per confidence bin as bars, the gap to the bin's mean confidence in red, the
    diagonal of perfect calibration, the face count per bin below, and the ECE in the title.
    """
    figure, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 4.8), squeeze=False)
    for axis, (title, bins) in zip(axes[0], panels):
        width = np.diff(bins.edges)
        left, filled = bins.edges[:-1], bins.count > 0
        accuracy = np.where(filled, bins.accuracy, 0.0)
        confidence = np.where(filled, bins.confidence, 0.0)
        axis.bar(left, accuracy, width, align="edge", color="tab:blue", edgecolor="black", label="accuracy")
        low = np.minimum(accuracy, confidence)
        axis.bar(left[filled], np.abs(confidence - accuracy)[filled], width[filled], bottom=low[filled],
                 align="edge", fill=False, edgecolor="tab:red", hatch="//", label="gap to mean confidence")
        axis.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
        for x, w, count in zip(left, width, bins.count):
            if count:
                axis.text(x + w / 2, 0.01, str(count), rotation=90, ha="center", va="bottom", fontsize=6,
                          color="white")
        axis.set(xlim=(0, 1), ylim=(0, 1), xlabel="confidence (top probability)", ylabel="accuracy",
                 title=f"{title}\nECE {bins.ece:.3f} ({len(bins.count)} bins, {bins.n} faces)")
        axis.set_aspect("equal")
        axis.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    figure.savefig(target, dpi=100)
    plt.close(figure)
