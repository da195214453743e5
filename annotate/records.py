"""One JSON line per frame: the one format that `fer-annotate` and `fer-client --headless` both write.

    {"frame": 0, "time_ms": 0.0, "width": 640, "height": 480, "faces": [
      {"box": {"x": 228, "y": 86, "width": 79, "height": 109}, "detection_score": 0.9371,
       "emotion": "happy", "probabilities": {"angry": 0.02, ..., "neutral": 0.05}}]}

- `frame`: 0-based index of the frame in its source (an image is frame 0).
- `time_ms`: the frame's time in its source, in milliseconds, as the container records it; absent for a
  still image and for sources that carry no time.
- `width`, `height`: the frame's size in pixels; boxes are in these pixels.
- `faces`: highest detection score first. `probabilities` holds the served classes (all seven unless the
  server or `--classes` chose a subset) in the model's class order, summing to 1 (rounded to 4 decimals);
  `emotion` is the most probable of them. Faces on a track also carry `track_id` (≥ 1) and
  `track_probabilities` (the probabilities smoothed over the track); faces without one leave both out.
- `error`: present only for a frame that could not be annotated (its one-line reason); `faces` is then empty.
- `file`: in a batch's JSON lines (`fer-annotate FILES_OR_FOLDERS --jsonl PATH`) only, first in each
  record: the input file the frame comes from, as given or found, written by display_name (a byte of the
  name that is not UTF-8 appears as `\\xNN`, as in the CSV's `file` column).
- `faces_omitted`: present only when the face limit (`--max-faces`, the server's) left faces out: how many
  more faces were found than `faces` holds (the lowest-scored ones).

This module is plain Python: the client (protobuf faces) and the pipeline (FaceResult) each convert to
FaceRecord, and neither side's dependencies load here.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:  # only for the annotations; importing framepath would load the model runtime
    from ferstream.pipeline.framepath import FaceResult
    from ferstream.pipeline.tracking import TrackedFace

# Probabilities and scores are written to 4 decimals: the model is not that precise, and lines stay short.
DECIMALS = 4
STDOUT = "-"


def display_name(path: os.PathLike | str) -> str:
    """path as text that any UTF-8 file or terminal takes: the name's bytes decoded as UTF-8, each byte that
    is not UTF-8 (a Latin-1 "é" from an old zip or a camera card is 0xE9) written as a backslash escape,
    b"caf\\xe9.jpg" -> "caf\\\\xe9.jpg" (Python's surrogateescape file names, shown by backslashreplace)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class FaceRecord:
    """One face of a frame, as written to JSON lines."""

    box: tuple[int, int, int, int]  # x, y, width, height in pixels of the frame
    detection_score: float  # the detector's confidence, 0-1
    emotion: str  # the most probable served class, e.g. "happy"
    probabilities: Mapping[str, float]  # class name -> probability, in the model's class order
    track_id: int | None = None  # None: the face is on no track (unary calls, still images)
    track_probabilities: Mapping[str, float] | None = None

    def to_json(self) -> dict[str, object]:
        """The face as a JSON-ready dict (keys as documented in this module)."""
        x, y, width, height = self.box
        record: dict[str, object] = {
            "box": {"x": int(x), "y": int(y), "width": int(width), "height": int(height)},
            "detection_score": round(float(self.detection_score), DECIMALS),
            "emotion": self.emotion,
            "probabilities": _rounded(self.probabilities),
        }
        if self.track_id is not None:
            record["track_id"] = int(self.track_id)
            if self.track_probabilities is not None:
                record["track_probabilities"] = _rounded(self.track_probabilities)
        return record


@dataclass(frozen=True)
class FrameRecord:
    """One frame: its index, time and size, and the faces found on it (or why it failed)."""

    frame: int
    width: int
    height: int
    faces: Sequence[FaceRecord] = field(default_factory=tuple)
    time_ms: float | None = None
    error: str | None = None
    file: str | None = None  # the input file (display_name), in a batch's JSON lines only
    faces_omitted: int = 0  # faces found beyond the face limit, left out of faces

    def to_json(self) -> dict[str, object]:
        """The frame as a JSON-ready dict (keys as documented in this module)."""
        record: dict[str, object] = {} if self.file is None else {"file": self.file}
        record["frame"] = int(self.frame)
        if self.time_ms is not None:
            record["time_ms"] = round(float(self.time_ms), 3)
        record.update(width=int(self.width), height=int(self.height),
                      faces=[face.to_json() for face in self.faces])
        if self.faces_omitted:
            record["faces_omitted"] = int(self.faces_omitted)
        if self.error is not None:
            record["error"] = self.error
        return record


def _rounded(probabilities: Mapping[str, float]) -> dict[str, float]:
    return {name: round(float(p), DECIMALS) for name, p in probabilities.items()}


def face_record_from_result(face: FaceResult, class_names: Sequence[str],
                            tracked: TrackedFace | None = None) -> FaceRecord:
    """A FaceRecord of the in-process frame path's FaceResult; class_names maps class indices to names.

    tracked: the face's place on its track (pipeline/tracking.py), whose smoothed probabilities are in the
    order of face.classes; None for a face on no track.
    """
    probabilities = {class_names[c]: float(p) for c, p in zip(face.classes, face.probabilities)}
    track_id = track_probabilities = None
    if tracked is not None:
        track_id = tracked.track_id
        if tracked.smoothed is not None:
            track_probabilities = {class_names[c]: float(p) for c, p in zip(face.classes, tracked.smoothed)}
    box = face.box
    return FaceRecord((box.x, box.y, box.width, box.height), float(box.score), class_names[face.top_class],
                      probabilities, track_id, track_probabilities)


class JsonLinesWriter:
    """Writes FrameRecords, one JSON object per line, flushed per frame so a reader can follow along."""

    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream
        self.frames = 0

    def write(self, record: FrameRecord) -> None:
        """Appends one line; OSError when the stream cannot be written."""
        self._stream.write(json.dumps(record.to_json()) + "\n")
        self._stream.flush()
        self.frames += 1


@contextmanager
def open_jsonl(path: Path | str) -> Iterator[JsonLinesWriter]:
    """A JsonLinesWriter on path ("-" is stdout), closed at the end of the block.

    Raises OSError with a message naming the path when it cannot be created (a missing folder, no permission,
    a folder in its place).
    """
    if str(path) == STDOUT:
        yield JsonLinesWriter(sys.stdout)
        return
    try:
        stream = open(path, "w", encoding="utf-8")
    except OSError as error:
        raise OSError(f"{path}: cannot write ({error.strerror})") from None
    with stream:
        yield JsonLinesWriter(stream)


def read_jsonl(path: Path | str) -> list[dict]:
    """Every frame record of a JSON-lines file, as dicts (for tests and for users' scripts)."""
    with open(path, encoding="utf-8") as stream:
        return [json.loads(line) for line in stream if line.strip()]
