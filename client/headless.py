"""Headless mode: annotate every frame of a source without a screen, writing an annotated video and/or
one JSON line per frame. Frames go one at a time (Annotate), so none is skipped: the output has
exactly the source's frames.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import cv2
import numpy as np

from ferstream.client.capture import FrameSource, frames
from ferstream.client.library import EmotionClient, face_to_dict
from ferstream.client.render import draw_annotations

# Codecs that OpenCV's bundled FFmpeg writes and reads back everywhere.
_CODECS = {".avi": "MJPG", ".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "MJPG"}


class OutputError(Exception):
    """An output file cannot be written; the message is meant for people."""


@dataclass(frozen=True)
class HeadlessSettings:
    output: Path | None = None  # annotated video
    jsonl: Path | None = None  # one JSON object per frame
    detector: str | None = None
    min_detection_score: float = 0.0
    jpeg_quality: int = 85


@dataclass(frozen=True)
class HeadlessResult:
    frames: int
    faces: int


def run_headless(client: EmotionClient, source: FrameSource, settings: HeadlessSettings) -> HeadlessResult:
    frame_count = face_count = 0
    with ExitStack() as outputs:
        writer: cv2.VideoWriter | None = None
        jsonl: IO[str] | None = None
        if settings.jsonl is not None:
            jsonl = outputs.enter_context(_open_text(settings.jsonl))
        for index, image in enumerate(frames(source)):
            reply = client.annotate(
                image,
                detector=settings.detector,
                min_detection_score=settings.min_detection_score,
                jpeg_quality=settings.jpeg_quality,
            )
            if settings.output is not None:
                if writer is None:
                    writer = _open_writer(settings.output, image, source.fps)
                    outputs.callback(writer.release)
                writer.write(draw_annotations(image, reply.faces))
            if jsonl is not None:
                record = {
                    "frame": index,
                    "time_s": round(index / source.fps, 4),
                    "faces": [face_to_dict(face) for face in reply.faces],
                }
                jsonl.write(json.dumps(record) + "\n")
            frame_count += 1
            face_count += len(reply.faces)
    return HeadlessResult(frames=frame_count, faces=face_count)


def _open_text(path: Path) -> IO[str]:
    try:
        return path.open("w", encoding="utf-8")
    except OSError as error:
        raise OutputError(f"{path}: cannot write ({error.strerror})") from None


def _open_writer(path: Path, first_frame: np.ndarray, fps: float) -> cv2.VideoWriter:
    codec = _CODECS.get(path.suffix.lower())
    if codec is None:
        raise OutputError(f"{path}: unknown video type; use one of {', '.join(sorted(_CODECS))}")
    height, width = first_frame.shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps, (width, height))
    if not writer.isOpened():
        raise OutputError(f"{path}: cannot write a {codec} video there")
    return writer
