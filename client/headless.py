"""The remote backend of the one offline annotation path (ferstream.annotate.run): a fer-server
answers the frames, everything else (reader, renderer, JSON lines, timeline) is the in-process path's.

`fer-annotate INPUT --server HOST:PORT` and `fer-client --headless` both run through here. A video's
frames go through one StreamAnnotate call in file mode (EmotionClient.stream(mode="file")): every frame is
answered, in order, while the next ones are already on their way, each stamped with its container time
(capture_time_ms) so that the server's face tracks are smoothed in the video's time. A still image is one
unary Annotate call with the file's own bytes (never re-encoded, so it gets the answer it gets from every
other path), and no track, exactly as in-process. A frame the server refuses is written with
its `error` and no faces; the rest go on.
"""

from __future__ import annotations

import collections
import itertools
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc

from ferstream.annotate.media import Frame, Media, MediaError, probe, read_frames
from ferstream.annotate.run import Answer, Outputs, Result, annotate_media
from ferstream.client.capture import FrameSource, SourceError, open_source
from ferstream.client.library import EmotionClient
from ferstream.client.messages import encode_image, face_record, make_options
from ferstream.client.streaming import IncompleteStream
from ferstream.pipeline.errors import FrameError
from ferstream.pipeline.settings import MAX_PIXELS
from ferstream.v1 import emotion_pb2


class OutputError(Exception):
    """The source or an output file cannot be read or written; the message is one line for people."""


class ServerError(RuntimeError):
    """The server cannot be reached, or failed the call; the message is one line for people."""


@dataclass(frozen=True)
class HeadlessSettings:
    """What fer-client --headless writes and how it asks the server."""

    output: Path | None = None  # the annotated copy: a video suffix for a video, an image suffix for an image
    jsonl: Path | None = None  # one JSON object per frame
    detector: str | None = None  # None: the server's default
    min_detection_score: float = 0.0  # 0: the detector's own threshold
    jpeg_quality: int = 85  # of the video and camera frames sent (a still image goes as its file)
    model: str = ""  # the emotion model by name; empty: the server's (accurate for an image, fast for a video)
    max_faces: int = 0  # most faces per frame; 0: the server's limit (which also caps larger values)


class RemoteBackend:
    """Frames answered by a fer-server (annotate.run.Backend).

    detector: a detector name, None for the server's; min_detection_score 0..1 (0: the detector's own);
    jpeg_quality 10..100 of the video frames sent (a still image goes as its file's bytes); smoothing_ms: the
    track smoothing time constant asked for (milliseconds of frame time, 0 off), None for the server's
    --track-smoothing-ms; model: the emotion model by name, empty for the server's default (accurate for still
    images, fast for videos); max_faces: the most faces per frame, 0 for the server's --max-faces (which also
    caps larger values); each answer carries the server's count of the faces left out. Iterating `answers`
    raises ServerError when the server fails the call or ends it before answering every frame.
    """

    def __init__(self, client: EmotionClient, detector: str | None = None, min_detection_score: float = 0.0,
                 jpeg_quality: int = 85, smoothing_ms: float | None = None, model: str = "",
                 max_faces: int = 0) -> None:
        self.client = client
        self.options = make_options(detector, min_detection_score, max_faces, model=model)
        if smoothing_ms is not None:
            self.options.track_smoothing_ms = smoothing_ms
        self.jpeg_quality = jpeg_quality

    def answers(self, frames: Iterable[Frame], still: bool) -> Iterator[tuple[Frame, Answer]]:
        """See annotate.run.Backend."""
        try:
            if still:
                for frame in frames:
                    image = frame.encoded if frame.encoded is not None else frame.image
                    response = self.client.annotate(image, detector=self.options.detector,
                                                    min_detection_score=self.options.min_detection_score,
                                                    max_faces=self.options.max_faces,
                                                    jpeg_quality=self.jpeg_quality, model=self.options.model)
                    yield frame, Answer([face_record(face) for face in response.faces],
                                        faces_omitted=response.faces_omitted)
            else:
                yield from self._stream(frames)
        except grpc.RpcError as error:
            raise ServerError(f"the server failed: {error.code().name}: {error.details()}") from None
        except IncompleteStream as error:
            raise ServerError(f"the server failed: {error}") from None

    def _stream(self, frames: Iterable[Frame]) -> Iterator[tuple[Frame, Answer]]:
        sent: collections.deque[Frame] = collections.deque()  # sent, not yet answered, in order

        def requests() -> Iterator[emotion_pb2.StreamAnnotateRequest]:
            for frame_id, frame in zip(itertools.count(), frames):
                sent.append(frame)
                request = emotion_pb2.StreamAnnotateRequest(frame_id=frame_id, options=self.options,
                                                            image=encode_image(frame.image, self.jpeg_quality))
                if frame.time_ms is not None:  # tracks are smoothed in the file's time, not the server's
                    request.capture_time_ms = frame.time_ms
                yield request

        with self.client.stream(requests(), mode="file") as responses:
            for response in responses:
                failed = response.error.code != 0  # google.rpc.Code; 0 (or no error set) means answered
                faces = [] if failed else [face_record(face) for face in response.faces]
                yield sent.popleft(), Answer(faces, response.error.message if failed else None,
                                             0 if failed else response.faces_omitted)


def connect(client: EmotionClient, timeout_s: float) -> None:
    """Waits up to timeout_s seconds for the channel; ServerError naming the target when it stays down."""
    if not client.wait_ready(timeout_s):
        raise ServerError(f"cannot reach the server at {client.target}")


def camera_frames(source: FrameSource) -> Iterator[Frame]:
    """A live source's frames as the annotate path's Frames, timed by this process's monotonic clock in ms
    from the first frame (a camera has no container time)."""
    start = None
    for index in itertools.count():
        if (image := source.read()) is None:
            return
        now = time.monotonic() * 1000
        start = now if start is None else start
        yield Frame(index, image, now - start)


def run_headless(client: EmotionClient, source: str, settings: HeadlessSettings) -> Result:
    """fer-client --headless: annotates the --source text's file (or camera, given as its index) through
    the server into settings' outputs, by the same path as `fer-annotate --server`.

    A file's kind is decided by content and its frames read by annotate.media (container times); a camera
    runs until it ends or Ctrl-C. Raises OutputError when the source or an output cannot be read or written,
    ServerError when the server fails the call.
    """
    backend = RemoteBackend(client, settings.detector, settings.min_detection_score, settings.jpeg_quality,
                            model=settings.model, max_faces=settings.max_faces)
    outputs = Outputs(settings.output, settings.jsonl, None)
    try:
        if source.strip().isdigit():
            camera = open_source(source)
            try:
                media = Media(Path(camera.description), False, camera.fps)
                return annotate_media(media, camera_frames(camera), backend, outputs)
            finally:
                camera.close()
        media = probe(Path(source).expanduser())
        return annotate_media(media, read_frames(media, MAX_PIXELS), backend, outputs)
    except (MediaError, FrameError, SourceError, OSError) as error:
        raise OutputError(f"{source}: {error.message}" if isinstance(error, FrameError) else str(error)) from None
