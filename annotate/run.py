"""The one offline annotation path: read a file's frames, have a backend annotate them, draw, and write.

    reader (media.read_frames) -> backend -> FrameRecord -> renderer (draw.render) -> annotated copy
                                                        \\-> JSON lines (records.py)  \\-> timeline (timeline.py)

Two backends answer frames with the same FrameRecords: `InProcessBackend` (the frame path and a
FaceTracker in this process; fer-annotate) and the remote one in ferstream.client.remote (a fer-server
in file mode; `fer-annotate --server`, `fer-client --headless`). Everything after the backend is the same
code for both, so the JSON lines, the drawn copy and the timeline cannot differ in format.

Plain Python, numpy and OpenCV: no gRPC here. The remote backend lives in the client package, which sits
above this one: this module says what it must do (`Backend`, and `RemoteRequest` / `RemoteOpener` for
`fer-annotate --server`), and the installed fer-annotate (ferstream.annotate_command) hands it in.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, ExitStack
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ferstream.model.labels import EMOTIONS
from ferstream.model.tiers import ACCURATE, FAST
from ferstream.pipeline.tracking import DEFAULT_SMOOTHING_MS, FaceTracker

from .media import Frame, Media, MediaError, VideoOutput, add_audio, write_image
from .records import FaceRecord, FrameRecord, JsonLinesWriter, display_name, face_record_from_result, open_jsonl
from .timeline import Timeline, timeline_paths

if TYPE_CHECKING:  # the frame path loads the model runtime; only the types are needed here
    from ferstream.pipeline.framepath import DetectOptions, FramePath

    from .draw import FaceAnnotation


@dataclass(frozen=True)
class Answer:
    """A backend's answer for one frame: its faces (highest detection score first) or, for a frame the
    backend refused, no faces and the one-line reason; faces_omitted: the faces found beyond the face
    limit, left out of faces (the lowest scored)."""

    faces: list[FaceRecord]
    error: str | None = None
    faces_omitted: int = 0


class Backend(Protocol):
    """Annotates a file's frames, in order: one (frame, answer) per frame given, in the same order."""

    def answers(self, frames: Iterable[Frame], still: bool) -> Iterator[tuple[Frame, Answer]]:
        """still: the frames are one still image (no tracks); else a video's frames, each with time_ms."""
        ...


@dataclass(frozen=True)
class RemoteRequest:
    """What `fer-annotate --server` asks of a remote backend: the fer-server's gRPC target as given (HOST:PORT),
    how long to wait for it (seconds), the bearer token to send (None: none), and each frame's options:
    detector name (None: the server's), minimum detection score 0-1 (0: the detector's own), JPEG quality
    of the video frames sent (a still image goes as its file's bytes), the track smoothing time constant
    (milliseconds of the video's time, 0 off) and the emotion model by name (empty: the server's default)."""

    server: str
    connect_timeout_s: float
    token: str | None = None
    detector: str | None = None
    min_detection_score: float = 0.0
    jpeg_quality: int = 85
    smoothing_ms: float = DEFAULT_SMOOTHING_MS
    model: str = ""


# Opens the remote backend a RemoteRequest names, connected, for the length of a `with` block; raises a
# RuntimeError with a one-line message when the target is no server address or cannot be reached.
RemoteOpener = Callable[[RemoteRequest], AbstractContextManager[Backend]]


@dataclass(frozen=True)
class Outputs:
    """Where a run writes. annotated: the drawn copy (an image suffix for a still image, a VIDEO_CODECS
    suffix for a video), None for none. jsonl: JSON lines, "-" for stdout, None for none. timeline: the
    prefix of PREFIX.csv and PREFIX.png, written for videos only, None for none."""

    annotated: Path | None = None
    jsonl: Path | str | None = None
    timeline: Path | None = None


@dataclass(frozen=True)
class Result:
    """What a run did: frames written, faces found, frames the backend refused, timeline tracks, and the
    faces the face limit left out (over all frames)."""

    frames: int
    faces: int
    errors: int = 0
    tracks: int = 0
    faces_omitted: int = 0


class InProcessBackend:
    """The frame path in this process (detect, align, crop, classify), and for a video a FaceTracker whose
    probabilities are smoothed with time constant smoothing_ms (milliseconds of the video's time; 0 off).
    options.model: the emotion model of every frame; empty: accurate for a still image, fast for a video's
    frames (as the server's Annotate and StreamAnnotate). Raises FrameError (bad or oversized input) from
    the frame path."""

    def __init__(self, frame_path: FramePath, options: DetectOptions,
                 smoothing_ms: float = DEFAULT_SMOOTHING_MS) -> None:
        self.frame_path = frame_path
        self.options = options
        self.smoothing_ms = smoothing_ms

    def answers(self, frames: Iterable[Frame], still: bool) -> Iterator[tuple[Frame, Answer]]:
        """See Backend."""
        tracker = None if still else FaceTracker()
        options = self.options if self.options.model else replace(self.options, model=ACCURATE if still else FAST)
        for frame in frames:
            annotated = self.frame_path.annotate(frame.image, options)
            tracked = None
            if tracker is not None:
                tracked = tracker.track(annotated.faces, frame.time_ms or 0.0, self.smoothing_ms)
            faces = [face_record_from_result(face, EMOTIONS, None if tracked is None else tracked[index])
                     for index, face in enumerate(annotated.faces)]
            yield frame, Answer(faces, faces_omitted=annotated.faces_omitted)


def annotation_of(face: FaceRecord, number: int) -> FaceAnnotation:
    """What the renderer draws for one face: a tracked face is numbered by its track id and labelled with
    its track's smoothed emotion and probabilities (when smoothing is on); other faces with `number` (1, 2,
    3... in answer order) and this frame's own."""
    from .draw import FaceAnnotation

    shown = face.track_probabilities or face.probabilities
    emotion = max(shown, key=shown.__getitem__) if face.track_probabilities else face.emotion
    probabilities = tuple(float(shown.get(name, 0.0)) for name in EMOTIONS)
    return FaceAnnotation(face.box, emotion, probabilities, face.track_id or number)


def annotate_media(media: Media, frames: Iterable[Frame], backend: Backend, outputs: Outputs,
                   on_record: Callable[[FrameRecord], None] | None = None) -> Result:
    """Annotates every frame of media (read by `frames`, normally media.read_frames) through backend into
    outputs, handing each frame's record to on_record too when given (a batch's own outputs).

    Nothing is written before the first frame has been answered, so a file that cannot be decoded leaves no
    empty outputs behind. A video is written at media.fps, with the source file's audio (media.add_audio).
    Raises what the reader and the backend raise (FrameError for bad input), MediaError when no frame could
    be read or the annotated copy (or its audio) cannot be written, OSError when the JSON lines or the
    timeline cannot.
    """
    from .draw import render

    timeline = Timeline() if outputs.timeline is not None and not media.still else None
    frame_count = face_count = errors = omitted = 0
    with ExitStack() as opened:
        lines: JsonLinesWriter | None = None
        writer = None
        for frame, answer in backend.answers(frames, media.still):
            height, width = frame.image.shape[:2]
            record = FrameRecord(frame.index, width, height, answer.faces, frame.time_ms, answer.error,
                                 faces_omitted=answer.faces_omitted)
            if on_record is not None:
                on_record(record)
            if outputs.jsonl is not None:
                if lines is None:
                    lines = opened.enter_context(open_jsonl(outputs.jsonl))
                lines.write(record)
            if outputs.annotated is not None:
                drawn = render(frame.image, [annotation_of(face, number)
                                             for number, face in enumerate(answer.faces, start=1)]).image
                if media.still:
                    write_image(outputs.annotated, drawn)
                else:
                    if writer is None:
                        writer = VideoOutput(outputs.annotated, (width, height), media.fps)
                        opened.callback(writer.close)
                    writer.write(drawn)
            if timeline is not None:
                timeline.add(record)
            frame_count += 1
            face_count += len(answer.faces)
            errors += answer.error is not None
            omitted += answer.faces_omitted
    if frame_count == 0:
        raise MediaError(f"{media.path}: no frame could be read")
    if outputs.annotated is not None and not media.still and media.path.is_file():  # not a camera
        add_audio(media.path, outputs.annotated)
    if timeline is not None and outputs.timeline is not None:
        table, plot = timeline_paths(outputs.timeline)
        timeline.write_csv(table)
        timeline.plot(plot, title=display_name(media.path.name))
    return Result(frame_count, face_count, errors, len(timeline.track_ids) if timeline is not None else 0, omitted)
