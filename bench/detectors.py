"""fer-bench detectors: Haar, SSD and YuNet on the annotated 640x480 frames, timed and scored.

A detection is a true positive when it overlaps a hand-drawn box by IoU >= 0.5, each box matched
at most once (best overlaps first). Every detector runs at its default threshold, as served.

`python -m ferstream.bench.detectors` answers two more questions (Markdown tables):
  --face-sizes   each network's recall per face height in the image it sees (the FaceSizes constants
                 of pipeline/detectors.py come from this table)
  --canvas WxH   speed and recall on the photos placed at their own resolution in WxH canvases, beside
                 640x480 ones, at a min_face_px (what keeping small faces in large frames costs)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import argparse
import sys

import cv2
import numpy as np

from ferstream.pipeline.detectors import DEFAULT_MIN_FACE_PX, Detection, DetectorKind, DetectorStatus, load_detectors

from .photos import Box, TestFrame, load_canvas_frames, read_boxes
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


def score_detector(status: DetectorStatus, frames: Sequence[TestFrame], seconds: float,
                   min_face_px: int = DEFAULT_MIN_FACE_PX) -> DetectorScore:
    """One detector timed over passes of all frames for about `seconds`, and scored on the first pass."""
    name = status.kind.name.lower()
    if not status.available:
        return DetectorScore(name, False, status.detail)
    detector = status.detector
    threshold = detector.default_threshold
    detector.detect(frames[0].pixels, threshold, min_face_px)  # warm-up: first calls allocate and pick kernels
    passes: list[list[list[Detection]]] = []

    def one_pass() -> None:
        passes.append([detector.detect(frame.pixels, threshold, min_face_px) for frame in frames])

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


def square(box: Box) -> tuple[float, float, float, float]:
    """The square of the same area and centre: hand-drawn boxes are tight squares, detector boxes taller."""
    left, top, width, height = box
    side = (width * height) ** 0.5
    return left + width / 2 - side / 2, top + height / 2 - side / 2, side, side


FACE_HEIGHTS = (8, 12, 16, 18, 20, 24, 28, 32, 48, 64, 128, 192, 224, 256, 320, 400, 512)


def face_size_recall(status: DetectorStatus, faces_dir: Path, heights: Sequence[int] = FACE_HEIGHTS,
                     context: float = 2.5) -> list[tuple[int, int, int]]:
    """(height, found, faces) per face height: each hand-boxed face of the shared photos scaled so its box is
    `height` px tall, in a square window `context` times that (the photo's edge pixels carried out where it
    ends), given to the detector's network as is (one level, no tiling); found when a detection's square
    overlaps the box's square by IoU >= 0.5."""
    faces = []
    for name, boxes in sorted(read_boxes(faces_dir).items()):
        photo = cv2.imread(str(faces_dir / name), cv2.IMREAD_COLOR)
        faces.extend((photo, box) for box in boxes)
    detector = status.detector
    table = []
    for height in heights:
        found = 0
        for photo, (x, y, width, box_height) in faces:
            scale = height / box_height
            side = int(round(context * height))
            centre_x, centre_y = x + width / 2, y + box_height / 2
            matrix = np.float32([[scale, 0, side / 2 - centre_x * scale], [0, scale, side / 2 - centre_y * scale]])
            window = cv2.warpAffine(photo, matrix, (side, side), flags=cv2.INTER_LINEAR,
                                    borderMode=cv2.BORDER_REPLICATE)
            truth = square((side / 2 - width * scale / 2, side / 2 - height / 2, width * scale, height))
            rows = detector.run(window, detector.default_threshold)
            found += any(iou(truth, square((r[0], r[1], r[2] - r[0], r[3] - r[1]))) >= 0.5 for r in rows)
        table.append((height, found, len(faces)))
    return table


def face_size_table(statuses: dict[DetectorKind, DetectorStatus], faces_dir: Path) -> str:
    """Markdown: faces found per face height (px of the network's input), one column per detector."""
    columns = {kind: face_size_recall(status, faces_dir) for kind, status in statuses.items() if status.available}
    rows = [(height, *[f"{column[index][1]}/{column[index][2]}" for column in columns.values()])
            for index, height in enumerate(FACE_HEIGHTS)]
    return markdown_table(("face height px", *[kind.name.lower() for kind in columns]), rows)


def canvas_table(statuses: dict[DetectorKind, DetectorStatus], faces_dir: Path, size: tuple[int, int],
                 min_face_px: int, seconds: float) -> str:
    """Markdown: ms per frame and faces found on 640x480 canvases and on `size` canvases of the same photos."""
    rows = []
    for frame_size in ((640, 480), size):
        frames = load_canvas_frames(faces_dir, frame_size)
        for status in statuses.values():
            score = score_detector(status, frames, seconds, min_face_px)
            rows.append((f"{frame_size[0]}x{frame_size[1]}", score.detector, score.ms_per_frame,
                         f"{score.matched}/{score.true_faces}") if score.available
                        else (f"{frame_size[0]}x{frame_size[1]}", score.detector, None, "unavailable"))
    return markdown_table(("canvas", "detector", "ms/frame", f"faces found (min_face_px {min_face_px})"), rows)


def frame_size(text: str) -> tuple[int, int]:
    """argparse type: WxH, both at least 640x480 (the photos must fit)."""
    try:
        width, height = (int(part) for part in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    if width < 640 or height < 480:
        raise argparse.ArgumentTypeError(f"the canvas must be at least 640x480, got {text}")
    return width, height


def main(argv: list[str] | None = None) -> int:
    """Prints the face-size and/or canvas tables; 0, or 1 with one line on stderr for missing data."""
    from .paths import default_data_dir, default_models_dir, faces_dir

    parser = argparse.ArgumentParser(prog="python -m ferstream.bench.detectors",
                                     description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--face-sizes", action="store_true", help="recall per face height in the network's input")
    parser.add_argument("--canvas", type=frame_size, default=None, metavar="WxH",
                        help="time and score the detectors on WxH canvases beside 640x480 ones")
    parser.add_argument("--min-face-px", type=int, default=DEFAULT_MIN_FACE_PX,
                        help="min_face_px of the canvas runs (default: the server's, %(default)s)")
    parser.add_argument("--seconds", type=float, default=3.0,
                        help="timing per detector and size (default: %(default)s)")
    parser.add_argument("--data-dir", type=Path, default=None, help="shared data folder (default: $FER_DATA_DIR)")
    parser.add_argument("--models-dir", type=Path, default=None, help="detector weights (default: $FER_MODELS_DIR)")
    args = parser.parse_args(argv)
    if not args.face_sizes and args.canvas is None:
        parser.error("give --face-sizes, --canvas WxH or both")
    if args.min_face_px < 1:
        parser.error("--min-face-px must be at least 1")
    cv2.setNumThreads(1)
    try:
        statuses = load_detectors(args.models_dir or default_models_dir())
        photos = faces_dir(args.data_dir or default_data_dir())
        if args.face_sizes:
            print(face_size_table(statuses, photos))
        if args.canvas is not None:
            print(canvas_table(statuses, photos, args.canvas, args.min_face_px, args.seconds))
    except (OSError, ValueError) as error:
        print(f"fer-bench detectors: error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
