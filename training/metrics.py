"""Accuracy, per-class precision/recall/F1 and the confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class ClassificationReport:
    """Scores of K classes from their (K, K) confusion matrix of counts (rows: true, columns: predicted)."""

    class_names: list[str]
    confusion: np.ndarray  # rows: true class, columns: predicted class

    @property
    def n(self) -> int:
        """Number of scored images."""
        return int(self.confusion.sum())

    @property
    def accuracy(self) -> float:
        """Share of images whose predicted class is the true one (0..1; 0 for no images)."""
        return float(np.trace(self.confusion) / max(self.n, 1))

    def per_class(self) -> dict[str, dict[str, float]]:
        """{class: {precision, recall, f1, support}}; a class never predicted or never present scores 0."""
        true_positive = np.diag(self.confusion).astype(float)
        predicted = self.confusion.sum(axis=0)
        support = self.confusion.sum(axis=1)
        precision = np.divide(true_positive, predicted, out=np.zeros_like(true_positive), where=predicted > 0)
        recall = np.divide(true_positive, support, out=np.zeros_like(true_positive), where=support > 0)
        denominator = precision + recall
        f1 = np.divide(2 * precision * recall, denominator, out=np.zeros_like(denominator), where=denominator > 0)
        return {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(self.class_names, precision, recall, f1, support)
        }

    def macro_f1(self) -> float:
        """Mean of the per-class F1 scores, every class weighted equally."""
        return float(np.mean([c["f1"] for c in self.per_class().values()]))

    def to_dict(self) -> dict:
        """JSON-able: accuracy, n, macro_f1, classes, per_class and the confusion matrix as lists."""
        return {"accuracy": self.accuracy, "n": self.n, "macro_f1": self.macro_f1(),
                "classes": self.class_names, "per_class": self.per_class(),
                "confusion_matrix": self.confusion.tolist()}

    def to_text(self) -> str:
        """A plain-text report: accuracy, per-class table and the confusion matrix."""
        width = max(len(name) for name in self.class_names) + 2
        lines = [f"accuracy {self.accuracy:.4f} on {self.n} images (macro F1 {self.macro_f1():.4f})", "",
                 f"{'class':<{width}}precision  recall      f1  support"]
        for name, c in self.per_class().items():
            lines.append(f"{name:<{width}}{c['precision']:9.3f} {c['recall']:7.3f} {c['f1']:7.3f} {c['support']:8d}")
        lines += ["", "confusion matrix (rows: true, columns: predicted)",
                  " " * width + "".join(f"{name[:7]:>8}" for name in self.class_names)]
        for name, row in zip(self.class_names, self.confusion):
            lines.append(f"{name:<{width}}" + "".join(f"{v:8d}" for v in row))
        return "\n".join(lines)


def classification_report(labels: np.ndarray, predictions: np.ndarray, class_names: list[str]) -> ClassificationReport:
    """The report of (N,) true and predicted class indices into class_names."""
    k = len(class_names)
    confusion = np.bincount(labels * k + predictions, minlength=k * k).reshape(k, k)
    return ClassificationReport(class_names=list(class_names), confusion=confusion)


def restrict_to_classes(labels: np.ndarray, probabilities: np.ndarray,
                        keep: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Score a class subset: drop images of other classes and argmax over the kept outputs only.

    Returns (labels, predictions) re-indexed 0..len(keep)-1 in the order of `keep`.
    """
    position = {cls: i for i, cls in enumerate(keep)}
    mask = np.isin(labels, keep)
    kept_labels = np.array([position[c] for c in labels[mask]], dtype=np.int64)
    predictions = probabilities[mask][:, keep].argmax(axis=1)
    return kept_labels, predictions
