"""One page's live stream: JPEG frames from a WebSocket into one live-mode StreamAnnotate call.

The newest frame wins, as at the server (server/streams.py): the bridge puts each frame into the client
library's live stream (EmotionClient.live_stream), which keeps at most one frame waiting and sends it only
while fewer than `max_in_flight` of the page's frames are unanswered; a newer frame replaces a waiting one,
which is counted as dropped. The server's own skipped frames are counted too. So a page that sends faster
than the server answers loses stale frames, never gains latency, and the gateway holds at most
1 + max_in_flight frames per page.

gRPC's client is synchronous here (ferstream.client.EmotionClient): its sending thread takes the frames
from the live stream, a receiving thread of ours reads the answers and hands them to the event loop.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import grpc
import numpy as np

from ferstream.client.library import EmotionClient
from ferstream.client.messages import face_record
from ferstream.client.streaming import LiveStream
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
        self._lock = threading.Lock()
        self._frames: dict[int, bytes] = {}  # frame_id -> the page's bytes, of frames waiting or in flight
        self._replaced: set[int] = set()  # frames dropped while waiting here, not yet listed by an answer
        self._received = self._answered = self._dropped_waiting = self._skipped = 0
        self._closed = False
        self._stream: LiveStream | None = None
        self._receiver: threading.Thread | None = None

    def counts(self) -> Counts:
        """The page's frame counts so far."""
        with self._lock:
            return Counts(self._received, self._answered, self._dropped_waiting, self._skipped)

    def put(self, data: bytes) -> None:
        """Queues an encoded frame, replacing (dropping) one still waiting; starts the call at the first.
        Called from the event loop alone."""
        with self._lock:
            if self._closed:
                return
            frame_id = self._received + 1
            self._received += 1
            self._frames[frame_id] = data
        if self._stream is None and not self._start():
            return
        request = emotion_pb2.StreamAnnotateRequest(frame_id=frame_id, image=emotion_pb2.Image(encoded=data))
        with self._lock:  # held until the replaced frame is noted: an answer may list it at once
            if (replaced := self._stream.put(request)) is not None:
                self._frames.pop(replaced, None)
                self._replaced.add(replaced)
                self._dropped_waiting += 1

    def _start(self) -> bool:
        try:
            self._stream = self._client.live_stream(max_in_flight=self._limit, token=self._token)
        except ValueError as error:  # a caller's token that cannot travel as metadata
            unauthenticated = grpc.StatusCode.UNAUTHENTICATED
            with self._lock:
                self._closed = True
            self._deliver({"type": "error", **error_body(str(error), unauthenticated),
                           "http_status": http_status(unauthenticated), "ends_stream": True})
            return False
        self._receiver = threading.Thread(target=self._receive, name="fer-web-receiver", daemon=True)
        self._receiver.start()
        return True

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
            with self._lock:
                self._closed = True

    def _answer(self, response: emotion_pb2.StreamAnnotateResponse) -> dict:
        with self._lock:
            data = self._frames.pop(response.frame_id, b"")
            for skipped in response.skipped_frame_ids:
                self._frames.pop(skipped, None)
                if skipped in self._replaced:
                    self._replaced.discard(skipped)  # counted when it was replaced
                else:
                    self._skipped += 1
            self._answered += 1
            counts = Counts(self._received, self._answered, self._dropped_waiting, self._skipped)
        width, height = image_size(data)  # may decode: on this thread, not the event loop's
        error = response.error.message if response.HasField("error") else None
        record = FrameRecord(frame=response.frame_id - 1, width=width, height=height,
                             faces=[face_record(face) for face in response.faces], error=error)
        timing = {"total_ms": round(response.timing.total_ms, 2), "queue_ms": round(response.timing.queue_ms, 2)}
        return {"type": "frame", "record": {**record.to_json(), "faces_omitted": int(response.faces_omitted)},
                "counts": counts.to_json(), "timing": timing}

    def close(self, timeout: float = 1.0) -> None:
        """Ends the call (if one started) and waits up to timeout seconds for its threads."""
        with self._lock:
            self._closed = True
        if self._stream is not None:
            self._stream.cancel()
            self._stream.wait_sender(timeout)
        if self._receiver is not None:
            self._receiver.join(timeout)
