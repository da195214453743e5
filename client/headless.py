"""Headless mode: annotate every frame of a source without a screen, writing an annotated video and/or
one JSON line per frame (ferstream.pipeline.records, the format fer-annotate writes too).

Frames go through one StreamAnnotate call in file mode (EmotionClient.stream(mode="file")): every frame
is answered, in order, while the next ones are already on their way, so the output has exactly the
source's frames. A frame the server refuses is written with its `error` and no faces; the rest go on.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ferstream.client.capture import FrameSource
from ferstream.client.library import EmotionClient, encode_image, face_record, make_options
from ferstream.client.render import draw_annotations
from ferstream.pipeline.media import MediaError, open_video_writer
from ferstream.pipeline.records import FrameRecord, JsonLinesWriter, open_jsonl
from ferstream.v1 import emotion_pb2


class OutputError(Exception):
    """An output file cannot be written; the message is meant for people."""


@dataclass(frozen=True)
class HeadlessSettings:
    """What to write and how to ask the server."""

    output: Path | None = None  # the annotated video (.mp4, .m4v, .mov, .avi or .mkv)
    jsonl: Path | None = None  # one JSON object per frame
    detector: str | None = None  # None: the server's default
    min_detection_score: float = 0.0  # 0: the detector's own threshold
    jpeg_quality: int = 85  # of the frames sent


@dataclass(frozen=True)
class HeadlessResult:
    """What a run did: frames written, faces found, frames the server refused."""

    frames: int
    faces: int
    errors: int = 0


@dataclass(frozen=True)
class _SentFrame:
    image: np.ndarray
    time_ms: float | None


def run_headless(client: EmotionClient, source: FrameSource, settings: HeadlessSettings) -> HeadlessResult:
    """Annotates every frame of source through the server into settings' outputs.

    Raises OutputError when an output cannot be written, grpc.RpcError when the server fails the call, and
    IncompleteStream when it ends the call before answering every frame.
    """
    sent: collections.deque[_SentFrame] = collections.deque()  # frames sent, not yet answered, in order

    options = make_options(settings.detector, settings.min_detection_score)

    def frames() -> Iterator[emotion_pb2.StreamAnnotateRequest]:
        for frame_id in itertools.count(1):
            if (image := source.read()) is None:
                return
            sent.append(_SentFrame(image, source.time_ms))
            request = emotion_pb2.StreamAnnotateRequest(frame_id=frame_id, options=options,
                                                        image=encode_image(image, settings.jpeg_quality))
            if source.time_ms is not None:  # face tracks are smoothed in the file's time, not the server's
                request.capture_time_ms = source.time_ms
            yield request

    frame_count = face_count = errors = 0
    with ExitStack() as outputs:
        lines: JsonLinesWriter | None = None
        if settings.jsonl is not None:  # opened first, so an unwritable path fails before any frame is sent
            try:
                lines = outputs.enter_context(open_jsonl(settings.jsonl))
            except OSError as error:
                raise OutputError(str(error)) from None
        video = None
        responses = client.stream(frames(), mode="file")
        outputs.callback(responses.cancel)
        for response in responses:
            frame = sent.popleft()
            if settings.output is not None:
                if video is None:
                    height, width = frame.image.shape[:2]
                    video = _open_video(settings.output, (width, height), source.fps)
                    outputs.callback(video.release)
                video.write(draw_annotations(frame.image, response.faces))
            failed = response.error.code != 0  # google.rpc.Code; 0 (or no error set) means answered
            if lines is not None:
                height, width = frame.image.shape[:2]
                lines.write(FrameRecord(frame_count, width, height, [face_record(face) for face in response.faces],
                                        frame.time_ms, response.error.message if failed else None))
            frame_count += 1
            face_count += len(response.faces)
            errors += failed
    return HeadlessResult(frames=frame_count, faces=face_count, errors=errors)


def _open_video(path: Path, size: tuple[int, int], fps: float) -> cv2.VideoWriter:
    """The annotated video's writer; OutputError when it cannot be written."""
    try:
        return open_video_writer(path, size, fps)
    except MediaError as error:
        raise OutputError(str(error)) from None
