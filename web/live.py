"""One page's live stream: JPEG frames from a WebSocket into one live-mode StreamAnnotate call.

The newest frame wins, as at the server (server/streams.py): the bridge keeps at most one frame waiting
and sends it only while fewer than `max_in_flight` of its frames are unanswered; a newer frame replaces a
waiting one, which is counted as dropped. The server's own skipped frames (skipped_frame_ids) are counted
too. So a page that sends faster than the server answers loses stale frames, never gains latency, and the
gateway holds at most 1 + max_in_flight frames per page.

gRPC's client is synchronous here (ferstream.client.EmotionClient): its sending thread pulls requests
from the bridge, a receiving thread of ours reads the answers and hands them to the event loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import cv2
import grpc
import numpy as np

from ferstream.client.library import EmotionClient
from ferstream.client.messages import face_record
from ferstream.pipeline.decode import JPEG_SOI, encoded_dimensions, jpeg_header
from ferstream.pipeline.errors import BadInput
from ferstream.annotate.records import FrameRecord
from ferstream.v1 import emotion_pb2

from .httpstatus import error_body, http_status, rpc_error_body


@dataclass(frozen=True)
class Counts:
    """Frames of one page so far: received from it, answered, and dropped (replaced while waiting here,
    or skipped by the server)."""

    received: int
    answered: int
    dropped_waiting: int
    skipped_by_server: int

    @property
    def dropped(self) -> int:
        """Every frame that got no answer because a newer one took its place."""
        return self.dropped_waiting + self.skipped_by_server

    def to_json(self) -> dict[str, int]:
        """The counts as the page shows them."""
        return {"received": self.received, "answered": self.answered, "dropped": self.dropped,
                "dropped_waiting": self.dropped_waiting, "skipped_by_server": self.skipped_by_server}


def frame_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the image's header; (0, 0) when it has none (the server then says why)."""
    try:
        return encoded_dimensions(data)
    except BadInput:
        return 0, 0


def may_be_turned(data: bytes) -> bool:
    """True when the image may carry an EXIF orientation tag, which the server's decoder (cv2.imdecode)
    applies: a JPEG with an Exif segment, a WebP whose VP8X header flags EXIF data, a PNG with an eXIf chunk."""
    if data.startswith(JPEG_SOI):
        try:
            return jpeg_header(data).exif
        except BadInput:
            return False
    if data[:4] == b"RIFF" and data[12:16] == b"VP8X":
        return len(data) > 20 and bool(data[20] & 0x08)
    if data.startswith(b"\x89PNG"):
        return b"eXIf" in data
    return False


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) of an image the server annotated, as its boxes see it: from the header, except for an
    image whose EXIF orientation may turn it (the server decodes it turned), decoded here as there."""
    if may_be_turned(data):
        image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR)
        if image is not None:
            return image.shape[1], image.shape[0]
    return frame_size(data)


class LiveBridge:
    """The frames of one WebSocket as one live-mode StreamAnnotate, started by the first frame.

    deliver(message) is called from the receiving thread with each JSON-ready message for the page:
    {"type": "frame", "record": FrameRecord JSON, "counts": ...} per answer, and at most one
    {"type": "error", "error": ..., "code": ..., "http_status": ..., "ends_stream": true} when the call fails,
    after which the bridge takes no more frames. Frame n (0-based, in the order put) travels as frame_id n + 1.
    token: sent to the server instead of the client's own (a caller's, passed on); None for the client's.
    """

    def __init__(self, client: EmotionClient, max_in_flight: int, deliver: Callable[[dict], None],
                 token: str | None = None) -> None:
        self._client = client
        self._token = token
        self._limit = max_in_flight
        self._deliver = deliver
        self._changed = threading.Condition()
        self._waiting: tuple[int, bytes] | None = None
        self._sizes: dict[int, tuple[int, int]] = {}  # frame_id -> (width, height) of frames in flight
        self._received = self._answered = self._dropped_waiting = self._skipped = 0
        self._closed = False
        self._stream = None
        self._receiver: threading.Thread | None = None

    def counts(self) -> Counts:
        """The page's frame counts so far."""
        with self._changed:
            return Counts(self._received, self._answered, self._dropped_waiting, self._skipped)

    def put(self, data: bytes) -> None:
        """Queues an encoded frame, replacing (dropping) one still waiting; starts the call at the first."""
        with self._changed:
            if self._closed:
                return
            if self._waiting is not None:
                self._dropped_waiting += 1
            self._waiting = (self._received, data)
            self._received += 1
            self._changed.notify_all()
        if self._stream is None:
            self._start()

    def _start(self) -> None:
        try:
            self._stream = self._client.stream(self._requests(), mode="live", token=self._token)
        except ValueError as error:  # a caller's token that cannot travel as metadata
            unauthenticated = grpc.StatusCode.UNAUTHENTICATED
            with self._changed:
                self._closed = True
            self._deliver({"type": "error", **error_body(str(error), unauthenticated),
                           "http_status": http_status(unauthenticated), "ends_stream": True})
            return
        self._receiver = threading.Thread(target=self._receive, name="fer-web-receiver", daemon=True)
        self._receiver.start()

    def _requests(self) -> Iterator[emotion_pb2.StreamAnnotateRequest]:
        """What gRPC's sending thread sends: the waiting frame, whenever fewer than the limit are in flight."""
        while True:
            with self._changed:
                self._changed.wait_for(
                    lambda: self._closed or (self._waiting is not None and len(self._sizes) < self._limit))
                if self._closed:
                    return
                index, data = self._waiting
                self._waiting = None
                frame_id = index + 1
            size = image_size(data)  # may decode: outside the lock the page's frames come in through
            with self._changed:
                self._sizes[frame_id] = size
            yield emotion_pb2.StreamAnnotateRequest(frame_id=frame_id, image=emotion_pb2.Image(encoded=data))

    def _receive(self) -> None:
        # A call the server ends without an error (it shut down gracefully) is as unavailable to the page.
        unavailable = grpc.StatusCode.UNAVAILABLE
        body, status = error_body("the server ended the stream", unavailable), http_status(unavailable)
        try:
            for response in self._stream:
                self._deliver(self._answer(response))
        except grpc.RpcError as error:
            body, status = rpc_error_body(error)
        finally:
            if not self._closed:  # CANCELLED after our own close() is no news for the page
                self._deliver({"type": "error", **body, "http_status": status, "ends_stream": True})
            with self._changed:
                self._closed = True
                self._changed.notify_all()

    def _answer(self, response: emotion_pb2.StreamAnnotateResponse) -> dict:
        with self._changed:
            width, height = self._sizes.pop(response.frame_id, (0, 0))
            for skipped in response.skipped_frame_ids:
                self._sizes.pop(skipped, None)
            self._skipped += len(response.skipped_frame_ids)
            self._answered += 1
            self._changed.notify_all()
            counts = self.counts()  # the condition's lock is re-entrant
        error = response.error.message if response.HasField("error") else None
        record = FrameRecord(frame=response.frame_id - 1, width=width, height=height,
                             faces=[face_record(face) for face in response.faces], error=error)
        timing = {"total_ms": round(response.timing.total_ms, 2), "queue_ms": round(response.timing.queue_ms, 2)}
        return {"type": "frame", "record": {**record.to_json(), "faces_omitted": int(response.faces_omitted)},
                "counts": counts.to_json(), "timing": timing}

    def close(self, timeout: float = 1.0) -> None:
        """Ends the call (if one started) and waits up to timeout seconds for its threads."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()
        if self._stream is not None:
            self._stream.cancel()
            self._stream.wait_sender(timeout)
        if self._receiver is not None:
            self._receiver.join(timeout)
