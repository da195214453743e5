"""The remote backend of the one offline annotation path (ferstream.annotate.run): a fer-server
answers the frames, everything else (reader, renderer, JSON lines, timeline) is the in-process path's.

`fer-annotate INPUT --server HOST:PORT` (through `open_remote`, the RemoteOpener that the installed
fer-annotate hands to ferstream.annotate.cli) and `fer-client --headless` (ferstream.client.headless) both
run through here. A video's frames go through one StreamAnnotate call in file mode
(EmotionClient.stream(mode="file")): every frame is answered, in order, while the next ones are already on
their way, each stamped with its container time (capture_time_ms) so that the server's face tracks are
smoothed in the video's time. A still image is one unary Annotate call with the file's own bytes (never
re-encoded, so it gets the answer it gets from every other path), and no track, exactly as in-process. A
frame the server refuses is written with its `error` and no faces; the rest go on.
"""

from __future__ import annotations

import collections
import itertools
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import grpc

from ferstream.annotate.media import Frame
from ferstream.annotate.run import Answer, RemoteRequest
from ferstream.client.library import EmotionClient
from ferstream.client.messages import encode_image, face_record, make_options
from ferstream.client.streaming import IncompleteStream
from ferstream.client.session import target_problem
from ferstream.v1 import emotion_pb2


class ServerError(RuntimeError):
    """The server cannot be reached, or failed the call; the message is one line for people."""


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


@contextmanager
def open_remote(request: RemoteRequest) -> Iterator[RemoteBackend]:
    """A RemoteBackend on a connected EmotionClient for request (annotate.run.RemoteOpener), closed at the end
    of the block. ServerError when request.server is no gRPC address (an http:// URL, nothing) or the server
    cannot be reached within request.connect_timeout_s seconds."""
    if (problem := target_problem(request.server)) is not None:
        raise ServerError(problem)
    with EmotionClient(request.server.strip(), token=request.token) as client:
        connect(client, request.connect_timeout_s)
        yield RemoteBackend(client, request.detector, request.min_detection_score, request.jpeg_quality,
                            request.smoothing_ms, request.model)
