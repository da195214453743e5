"""Calibrated probabilities: temperature scaling and the expected calibration error (ECE).

Both follow Guo, Pleiss, Sun and Weinberger, "On Calibration of Modern Neural Networks" (ICML 2017):
- temperature scaling divides a network's logits by one scalar T > 0 before the softmax, T chosen to
  minimise the negative log-likelihood on labelled data. The top class never changes (accuracy is
  untouched); T > 1 softens over-confident probabilities, T < 1 sharpens under-confident ones.
- ECE = sum over bins m of |B_m| / n * |accuracy(B_m) - confidence(B_m)|, where a face's confidence is
  its largest probability and B_m are M = 15 equal-width confidence bins ((m-1)/M, m/M] (the paper's M).

fer-export --calibrate fits T and bakes softmax(logits / T) into the served ONNX graph, recording a
Calibration in its metadata (onnxmeta.OnnxMetadata); fer-eval reports ECE and draws reliability
diagrams from reliability_bins. NumPy and SciPy only, so serving needs no PyTorch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

BINS = 15  # Guo et al. 2017, section 2: M = 15 equal-width confidence bins
# The search range of T: far beyond what a trained classifier needs (ours: about 1-2), and bounded so
# a degenerate set (e.g. every face right) cannot send T to 0 or infinity.
TEMPERATURE_RANGE = (0.05, 20.0)
METHOD = "temperature scaling (Guo et al. 2017), T fitted by minimising NLL"
IN_SAMPLE_NOTE = ("T was fitted on these faces and ece_after is measured on them (in-sample); when they are the "
                  "model's selection set (FER2013 PublicTest for ferstream's models) no held-out set measures it")


def check_scored(scores: np.ndarray, labels: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    """scores as (N, K) float64 and labels as (N,) int64; ValueError for other shapes, N = 0, non-finite
    scores or labels outside 0..K-1."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    if scores.ndim != 2 or labels.shape != (len(scores),) or len(scores) == 0 or scores.shape[1] < 2:
        raise ValueError(f"expected (N, K) {what} and (N,) labels with N >= 1 and K >= 2, "
                         f"got {scores.shape} and {labels.shape}")
    if not np.isfinite(scores).all():
        raise ValueError(f"{what} hold non-finite values")
    if labels.dtype.kind not in "iu" or labels.min() < 0 or labels.max() >= scores.shape[1]:
        raise ValueError(f"labels must be class indices 0..{scores.shape[1] - 1}")
    return scores, labels.astype(np.int64)


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """(N, K) logits -> (N, K) float64 probabilities softmax(logits / temperature); ValueError for T <= 0."""
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    scaled = np.asarray(logits, dtype=np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)  # exp cannot overflow; the softmax is shift-invariant
    exponentials = np.exp(scaled)
    return exponentials / exponentials.sum(axis=1, keepdims=True)


def negative_log_likelihood(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    """Mean -log softmax(logits / T)[label] in nats over (N, K) logits and (N,) labels (errors: check_scored)."""
    logits, labels = check_scored(logits, labels, "logits")
    scaled = logits / temperature
    shifted = scaled - scaled.max(axis=1, keepdims=True)
    log_normaliser = np.log(np.exp(shifted).sum(axis=1))
    return float(np.mean(log_normaliser - shifted[np.arange(len(labels)), labels]))


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    """The T in TEMPERATURE_RANGE minimising negative_log_likelihood(logits, labels, T) (Guo et al. 2017).

    The NLL is a smooth function of log T with one minimum for a set that is neither all right nor all
    wrong; SciPy's bounded Brent search on log T finds it to about 1e-5 relative. Errors: check_scored.
    """
    from scipy.optimize import minimize_scalar

    logits, labels = check_scored(logits, labels, "logits")
    low, high = np.log(TEMPERATURE_RANGE)
    result = minimize_scalar(lambda log_t: negative_log_likelihood(logits, labels, float(np.exp(log_t))),
                             bounds=(low, high), method="bounded", options={"xatol": 1e-6})
    return float(np.exp(result.x))


@dataclass(frozen=True)
class ReliabilityBins:
    """Faces grouped by confidence into equal-width bins (lo, hi]; arrays of shape (bins,).

    edges: (bins + 1,) bin edges from 0 to 1. count: faces per bin. accuracy, confidence: their share
    right and mean top probability (NaN in an empty bin). n: all faces.
    """

    edges: np.ndarray
    count: np.ndarray
    accuracy: np.ndarray
    confidence: np.ndarray

    @property
    def n(self) -> int:
        return int(self.count.sum())

    @property
    def ece(self) -> float:
        """Expected calibration error: sum of count/n * |accuracy - confidence| over non-empty bins."""
        filled = self.count > 0
        gap = np.abs(self.accuracy[filled] - self.confidence[filled])
        return float(np.sum(self.count[filled] / self.n * gap))


def reliability_bins(probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS) -> ReliabilityBins:
    """(N, K) probabilities and (N,) true labels grouped into `bins` equal-width confidence bins.

    Confidence is the top probability, right means its class is the label (ties: the first class, as
    argmax). Errors: check_scored; ValueError for bins < 1.
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    probabilities, labels = check_scored(probabilities, labels, "probabilities")
    confidence = probabilities.max(axis=1)
    right = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, bins + 1)
    # side="left" on the inner edges puts a confidence equal to an edge into the bin it closes: (lo, hi].
    index = np.searchsorted(edges[1:-1], confidence, side="left")
    count = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.bincount(index, weights=right, minlength=bins) / count
        mean_confidence = np.bincount(index, weights=confidence, minlength=bins) / count
    return ReliabilityBins(edges=edges, count=count, accuracy=accuracy, confidence=mean_confidence)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS) -> float:
    """ECE of (N, K) probabilities against (N,) labels with `bins` equal-width bins (Guo et al. 2017), in
    [0, 1]; 0 when each bin's accuracy equals its mean confidence. Errors: reliability_bins."""
    return reliability_bins(probabilities, labels, bins).ece


@dataclass(frozen=True)
class Calibration:
    """A fitted temperature and what it did, as recorded in a served ONNX file's metadata.

    temperature: T (softmax(logits / T) is what the graph outputs). data: where T was fitted
    ({"path", "sha256", "files", "bytes"} from training.provenance.data_sha256), n: its faces.
    nll_*: mean negative log-likelihood in nats; ece_*: expected calibration error with `bins` bins;
    before: T = 1, after: the fitted T, both on the same faces (see note).
    """

    temperature: float
    data: dict[str, Any]
    n: int
    nll_before: float
    nll_after: float
    ece_before: float
    ece_after: float
    bins: int = BINS
    method: str = METHOD
    note: str = IN_SAMPLE_NOTE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, fields: dict[str, Any]) -> Calibration:
        """The inverse of to_dict; ValueError for missing or unknown fields or a temperature that is not > 0."""
        try:
            calibration = cls(**fields)
        except TypeError as error:
            raise ValueError(f"calibration: {error}") from None
        if not (isinstance(calibration.temperature, (int, float)) and calibration.temperature > 0):
            raise ValueError(f"calibration: temperature must be a positive number, got {calibration.temperature!r}")
        return calibration


def calibrate(logits: np.ndarray, labels: np.ndarray, data: dict[str, Any]) -> Calibration:
    """Fits T on (N, K) logits and (N,) labels and measures NLL and ECE before and after.

    data describes where the faces came from (recorded as is). Errors: check_scored.
    """
    temperature = fit_temperature(logits, labels)
    return Calibration(temperature=temperature, data=data, n=len(labels),
                       nll_before=negative_log_likelihood(logits, labels),
                       nll_after=negative_log_likelihood(logits, labels, temperature),
                       ece_before=expected_calibration_error(softmax(logits), labels),
                       ece_after=expected_calibration_error(softmax(logits, temperature), labels))


def undo_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """(N, K) probabilities softmax(logits / T) -> (N, K) float64 softmax(logits), the uncalibrated ones.

    Exact up to float rounding, since log p = logits / T - c per row and the softmax ignores c. A
    probability that underflowed to 0 stays 0. Not exact for averages of several softmaxes (TTA).
    """
    with np.errstate(divide="ignore"):
        return softmax(np.log(np.asarray(probabilities, dtype=np.float64)) * temperature)
