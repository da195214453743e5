"""fer-client --headless: a file or camera annotated through a fer-server into an annotated copy and JSON
lines, by the one offline annotation path (ferstream.annotate.run) with the client's remote backend
(ferstream.client.remote), the path `fer-annotate --server` takes too.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ferstream.annotate.media import Frame, Media, MediaError, probe, read_frames
from ferstream.annotate.run import Outputs, Result, annotate_media
from ferstream.client.capture import FrameSource, SourceError, open_source
from ferstream.client.library import EmotionClient
from ferstream.client.remote import RemoteBackend
from ferstream.pipeline.errors import FrameError
from ferstream.pipeline.settings import MAX_PIXELS


class OutputError(Exception):
    """The source or an output file cannot be read or written; the message is one line for people."""


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
