"""fer-bench detectors: Haar, SSD and YuNet on the annotated 640x480 frames, timed and scored.

A detection is a true positive when it overlaps a hand-drawn box by IoU >= 0.5, each box matched
at most once (best overlaps first). Every detector runs at its default threshold, as served.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ferstream.pipeline.detectors import Detection, DetectorKind, DetectorStatus, load_detectors

from .photos import Box, TestFrame
from .report import markdown_table
from .timing import repeat_for

IOU_MATCH = 0.5


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (left, top, width, height) boxes."""
    left, top = max(a[0], b[0]), max(a[1], b[1])
    right, bottom = min(a[0] + a[2], b[0] + b[2]), min(a[1] + a[3], b[1] + b[3])
    overlap = max(0, right - left) * max(0, bottom - top)
    union = a[2] * a[3] + b[2] * b[3] - overlap
    return overlap / union if union > 0 else 0.0


def count_matches(found: Sequence[Box], truth: Sequence[Box], threshold: float = IOU_MATCH) -> int:
    """How many found boxes match a distinct true box at IoU >= threshold, pairing the best overlaps first."""
    pairs = sorted(((iou(f, t), i, j) for i, f in enumerate(found) for j, t in enumerate(truth)), reverse=True)
    used_found, used_truth = set(), set()
    for overlap, i, j in pairs:
        if overlap < threshold:
            break
        if i not in used_found and j not in used_truth:
            used_found.add(i)
            used_truth.add(j)
    return len(used_found)


def as_box(detection: Detection) -> Box:
    return detection.x, detection.y, detection.width, detection.height


@dataclass(frozen=True)
class DetectorScore:
    detector: str
    available: bool
    # Where the weights came from, or why the detector is unavailable.
    detail: str
    threshold: float | None = None
    frames: int = 0
    ms_per_frame: float | None = None
    true_faces: int = 0
    detections: int = 0
    matched: int = 0
    recall: float | None = None
    precision: float | None = None


def score_detector(status: DetectorStatus, frames: Sequence[TestFrame], seconds: float) -> DetectorScore:
    name = status.kind.name.lower()
    if not status.available:
        return DetectorScore(name, False, status.detail)
    detector = status.detector
    threshold = detector.default_threshold
    detector.detect(frames[0].pixels, threshold)  # warm-up: first calls allocate and pick kernels
    passes: list[list[list[Detection]]] = []

    def one_pass() -> None:
        passes.append([detector.detect(frame.pixels, threshold) for frame in frames])

    measured = repeat_for(one_pass, seconds)
    found = passes[0]  # every pass finds the same boxes
    matched = sum(count_matches([as_box(d) for d in boxes], frame.boxes) for boxes, frame in zip(found, frames))
    detections = sum(len(boxes) for boxes in found)
    true_faces = sum(len(frame.boxes) for frame in frames)
    return DetectorScore(
        detector=name, available=True, detail=status.detail, threshold=threshold, frames=len(frames),
        ms_per_frame=measured.ms_per_call / len(frames), true_faces=true_faces, detections=detections,
        matched=matched, recall=matched / true_faces if true_faces else None,
        precision=matched / detections if detections else None)


@dataclass(frozen=True)
class DetectorBench:
    frame_size: tuple[int, int]
    iou_threshold: float
    scores: list[DetectorScore]
    chart: str | None


def run_detector_bench(frames: Sequence[TestFrame], models_dir: Path, seconds: float) -> list[DetectorScore]:
    """Each detector in Haar, SSD, YuNet order, timed over passes of all frames for about `seconds`."""
    statuses = load_detectors(models_dir)
    return [score_detector(statuses[kind], frames, seconds) for kind in DetectorKind]


def detector_table(bench: DetectorBench) -> str:
    rows = [(s.detector, s.ms_per_frame, s.recall, s.precision, f"{s.matched}/{s.true_faces}", s.detections)
            if s.available else (s.detector, None, None, None, "unavailable", s.detail) for s in bench.scores]
    return markdown_table(("detector", "ms/frame", f"recall@IoU{bench.iou_threshold}",
                           f"precision@IoU{bench.iou_threshold}", "faces found", "detections"), rows)


def write_chart(scores: Sequence[DetectorScore], path: Path) -> None:
    """Two bar panels: milliseconds per frame, and recall beside precision."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    available = [s for s in scores if s.available]
    names = [s.detector for s in available]
    positions = range(len(available))
    figure, (speed, quality) = plt.subplots(1, 2, figsize=(9, 3.6))
    speed.bar(names, [s.ms_per_frame for s in available], color="#4c72b0")
    speed.set_title("ms per 640×480 frame (lower is better)")
    for x, s in zip(positions, available):
        speed.annotate(f"{s.ms_per_frame:.1f}", (x, s.ms_per_frame), ha="center", va="bottom")
    bar = 0.38
    quality.bar([x - bar / 2 for x in positions], [s.recall or 0.0 for s in available], bar, label="recall")
    quality.bar([x + bar / 2 for x in positions], [s.precision or 0.0 for s in available], bar, label="precision")
    quality.set_xticks(list(positions), names)
    quality.set_ylim(0, 1.1)
    quality.set_title(f"recall and precision at IoU ≥ {IOU_MATCH}")
    quality.legend(loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
