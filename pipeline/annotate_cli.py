"""fer-annotate: run the frame path on an image or a video file, offline, without a server.

Writes an annotated copy (boxes and the top emotion drawn) and one JSON line per frame.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import cv2
import numpy as np

from ferstream.model.labels import EMOTIONS

from .settings import add_common_arguments, default_models_dir, parse_classes
from .detectors import DetectorKind
from .draw import draw_annotations
from .errors import FrameError
from .framepath import AnnotatedFrame, DetectOptions, FramePath, load_frame_path, set_thread_counts

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fer-annotate",
        description="Annotate faces and emotions in an image or video; writes an annotated copy and JSON lines.")
    parser.add_argument("input", type=Path, metavar="IMAGE_OR_VIDEO")
    parser.add_argument("--out", type=Path, default=None,
                        help="annotated copy (default: INPUT.annotated.jpg for images, INPUT.annotated.avi for videos)")
    parser.add_argument("--json", type=Path, default=None,
                        help="JSON lines, one per frame (default: the --out path with .jsonl; '-' for stdout)")
    parser.add_argument("--detector", choices=[kind.name.lower() for kind in DetectorKind], default=None,
                        help="face detector (default: the most accurate available)")
    parser.add_argument("--min-score", type=float, default=0.0, help="detection threshold, 0-1 (default: the detector's)")
    add_common_arguments(parser)
    return parser


def frame_record(index: int, annotated: AnnotatedFrame) -> dict:
    faces = [{
        "box": {"x": face.box.x, "y": face.box.y, "width": face.box.width, "height": face.box.height},
        "detection_score": round(face.box.score, 4),
        "emotion": face.top_name,
        "scores": {EMOTIONS[c]: round(float(p), 4) for c, p in zip(face.classes, face.probabilities)},
    } for face in annotated.faces]
    return {"frame": index, "width": annotated.width, "height": annotated.height, "faces": faces}


def video_frames(capture: cv2.VideoCapture) -> Iterator[np.ndarray]:
    while True:
        ok, frame = capture.read()
        if not ok:
            return
        yield frame


def annotate_image(path: Path, out: Path, frame_path: FramePath, options: DetectOptions, lines: TextIO) -> None:
    frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if frame is None:
        raise ValueError(f"{path}: not a readable image")
    annotated = frame_path.annotate(frame, options)
    if not cv2.imwrite(str(out), draw_annotations(frame, annotated)):
        raise ValueError(f"{out}: cannot write an image there")
    lines.write(json.dumps(frame_record(0, annotated)) + "\n")


def annotate_video(path: Path, out: Path, frame_path: FramePath, options: DetectOptions, lines: TextIO) -> int:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ValueError(f"{path}: not a readable image or video")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    writer: cv2.VideoWriter | None = None
    count = 0
    try:
        for count, frame in enumerate(video_frames(capture), start=1):
            annotated = frame_path.annotate(frame, options)
            if writer is None:
                writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"MJPG"), fps,
                                         (frame.shape[1], frame.shape[0]))
                if not writer.isOpened():
                    raise ValueError(f"{out}: cannot write a video there")
            writer.write(draw_annotations(frame, annotated))
            lines.write(json.dumps(frame_record(count - 1, annotated)) + "\n")
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    if count == 0:
        raise ValueError(f"{path}: no frames could be read")
    return count


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.input.is_file():
        parser.error(f"{args.input}: no such file")
    try:
        classes = parse_classes(args.classes)
    except ValueError as error:
        parser.error(str(error))
    is_image = args.input.suffix.lower() in IMAGE_SUFFIXES
    out = args.out or args.input.with_name(args.input.stem + (".annotated.jpg" if is_image else ".annotated.avi"))
    json_path = args.json or out.with_suffix(".jsonl")
    options = DetectOptions(DetectorKind[args.detector.upper()] if args.detector else None, args.min_score)

    set_thread_counts(args.threads)
    try:
        frame_path = load_frame_path(args.models_dir or default_models_dir(), args.model, classes,
                                     args.max_pixels, args.max_faces)
        lines = sys.stdout if str(json_path) == "-" else open(json_path, "w")
        try:
            if is_image:
                annotate_image(args.input, out, frame_path, options, lines)
                frames = 1
            else:
                frames = annotate_video(args.input, out, frame_path, options, lines)
        finally:
            if lines is not sys.stdout:
                lines.close()
    except FrameError as error:
        print(f"fer-annotate: {error.message}", file=sys.stderr)
        return 1
    except (OSError, ValueError, RuntimeError) as error:
        print(f"fer-annotate: {error}", file=sys.stderr)
        return 1
    print(f"fer-annotate: {frames} frame(s) -> {out}, {json_path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
