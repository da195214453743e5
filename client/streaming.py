"""Streams of frames through StreamAnnotate: the frame sources, the flow control of each mode, and the
stream of responses a caller iterates (EmotionClient.stream opens them).

Streams come in two modes, chosen per call:

- ``mode="live"`` (a camera): frames go out as fast as the iterable yields them; the server keeps only the
  newest frame waiting, so a producer faster than the server loses stale frames (listed in
  ``skipped_frame_ids``), never gains latency.
- ``mode="file"`` (a recording): every frame is answered, in order, one response per frame. At most
  ``max_in_flight`` frames are sent and unanswered at any time, so nothing waits long enough at the server
  to be replaced; should the server skip one all the same, it is sent again and its answer still comes out
  in its place.
"""

from __future__ import annotations

import collections
import itertools
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Literal, Union

import cv2
import grpc
import numpy as np

from ferstream.client.messages import ImageInput, encode_image
from ferstream.client.window import InFlightWindow
from ferstream.v1 import emotion_pb2, emotion_pb2_grpc

FrameInput = Union[ImageInput, emotion_pb2.StreamAnnotateRequest]
StreamMode = Literal["live", "file"]


def video_frames(source: str | os.PathLike | int) -> Iterator[np.ndarray]:
    """Every frame of a video file (or camera index) as BGR arrays, until the source ends.

    Raises ValueError when the source cannot be opened. The capture is released when the iterator ends
    or is closed.
    """
    capture = cv2.VideoCapture(source if isinstance(source, int) else str(source))
    try:
        if not capture.isOpened():
            raise ValueError(f"{source}: cannot open it as a video or camera")
        while True:
            grabbed, frame = capture.read()
            if not grabbed:
                return
            yield frame
    finally:
        capture.release()


class IncompleteStream(Exception):
    """A file-mode stream ended (by the server, e.g. while it shut down) before every frame was answered."""


class _FrameRequests:
    """The caller's frames as StreamAnnotateRequests: ids 1, 2, 3... and the stream's options for arrays,
    bytes and paths; a StreamAnnotateRequest passes as it is (its own id and options).

    Runs on gRPC's sending thread. An exception from the frames (a bad array, a failing reader) is kept for
    the caller, who sees it raised after the responses to the frames before it, instead of gRPC's bare
    UNKNOWN "Exception iterating requests!".
    """

    def __init__(self, frames: Iterable[FrameInput], options: emotion_pb2.AnnotateOptions,
                 jpeg_quality: int | None) -> None:
        self._frames = iter(frames)
        self._options = options
        self._jpeg_quality = jpeg_quality
        self._ids = itertools.count()  # 0-based: the frame's index, as the JSON lines' `frame`
        self.error: Exception | None = None
        self.sender: threading.Thread | None = None  # gRPC's thread that sends the requests

    def next_request(self) -> emotion_pb2.StreamAnnotateRequest | None:
        """The next request; None when the frames end or fail."""
        self.sender = threading.current_thread()
        if self.error is not None:
            return None
        try:
            frame = next(self._frames)
            if isinstance(frame, emotion_pb2.StreamAnnotateRequest):
                return frame
            image = encode_image(frame, self._jpeg_quality)
        except StopIteration:
            return None
        except Exception as error:  # handed to the caller's thread by raise_error()
            self.error = error
            return None
        return emotion_pb2.StreamAnnotateRequest(frame_id=next(self._ids), image=image, options=self._options)

    def __iter__(self) -> Iterator[emotion_pb2.StreamAnnotateRequest]:
        while (request := self.next_request()) is not None:
            yield request

    def close(self) -> None:
        """Closes the frames iterable when it is a generator (releasing a camera or a file it holds), unless
        the sending thread is still inside it."""
        close = getattr(self._frames, "close", None)
        if close is not None and (self.sender is None or not self.sender.is_alive()):
            try:
                close()
            except ValueError:  # "generator already executing": the sender is in it after all
                pass

    def raise_error(self) -> None:
        """Re-raises, on the caller's thread, what the frames raised."""
        if self.error is not None:
            raise self.error


class _InOrderWindow:
    """File mode's flow control for one stream.

    The sending side (gRPC's thread) sends a frame only while the window (InFlightWindow) has room, and
    re-sends any frame the server reported skipped before it sends a new one. The receiving side (the
    caller's thread) hands answers out in the order the frames were first sent, with the caller's frame ids.
    Frames travel under ids of their own (1, 2, 3... in first-send order), so a caller's repeated ids cannot
    mix answers up.
    """

    def __init__(self, source: _FrameRequests, max_in_flight: int) -> None:
        self._source = source
        self._window: InFlightWindow[None] = InFlightWindow(max_in_flight)
        self._changed = self._window.changed  # one lock for the window and the order kept here
        self._wire_ids = itertools.count(1)
        self._unanswered: dict[int, emotion_pb2.StreamAnnotateRequest] = {}  # wire id -> request
        self._caller_ids: dict[int, int] = {}  # wire id -> the caller's frame id
        self._order: collections.deque[int] = collections.deque()  # wire ids not yet handed out, in send order
        self._answers: dict[int, emotion_pb2.StreamAnnotateResponse] = {}
        self._resend: collections.deque[int] = collections.deque()
        self._exhausted = False
        self._closed = False

    def _can_act(self) -> bool:
        room = self._window.has_room() and (bool(self._resend) or not self._exhausted)
        done = self._exhausted and not self._unanswered
        return self._closed or room or done

    def requests(self) -> Iterator[emotion_pb2.StreamAnnotateRequest]:
        """What gRPC sends; ends (half-closing the stream) once every frame is answered."""
        while True:
            with self._changed:
                self._changed.wait_for(self._can_act)
                if self._closed:
                    return
                if self._resend:
                    request = self._unanswered.get(self._resend.popleft())
                    if request is None:
                        continue  # answered after all
                    self._window.sent(request.frame_id)
                elif self._exhausted:
                    return  # nothing left to send, nothing unanswered
                else:
                    request = None  # room in the window for a new frame
            if request is None and (request := self._pull()) is None:
                continue
            yield request

    def _pull(self) -> emotion_pb2.StreamAnnotateRequest | None:
        """The caller's next frame under its wire id; None when the frames are exhausted."""
        request = self._source.next_request()  # outside the lock: reading and encoding take time
        with self._changed:
            if request is None:
                self._exhausted = True
                self._changed.notify_all()
                return None
            wire_id = next(self._wire_ids)
            wire = emotion_pb2.StreamAnnotateRequest()
            wire.CopyFrom(request)  # every field the caller set (capture_time_ms too), under the wire id
            wire.frame_id = wire_id
            self._unanswered[wire_id] = wire
            self._window.sent(wire_id)
            self._caller_ids[wire_id] = request.frame_id
            self._order.append(wire_id)
            return wire

    def responses(self, call: Iterator[emotion_pb2.StreamAnnotateResponse]
                  ) -> Iterator[emotion_pb2.StreamAnnotateResponse]:
        """One response per frame, in order; IncompleteStream when the call ends with frames unanswered."""
        try:
            for response in call:
                yield from self._receive(response)
        finally:
            self.close()
        self._source.raise_error()
        if self._order:
            raise IncompleteStream(f"the server ended the stream with {len(self._order)} frame(s) unanswered, "
                                   f"the first being frame {self._caller_ids.get(self._order[0], '?')}")

    def _receive(self, response: emotion_pb2.StreamAnnotateResponse) -> list[emotion_pb2.StreamAnnotateResponse]:
        with self._changed:
            self._resend.extend(wire_id for wire_id in response.skipped_frame_ids if wire_id in self._unanswered)
            self._window.answered(response.frame_id, response.skipped_frame_ids)
            wire_id = response.frame_id
            if self._unanswered.pop(wire_id, None) is not None:
                response.frame_id = self._caller_ids.pop(wire_id)
                del response.skipped_frame_ids[:]  # re-sent, so not skipped for the caller
                self._answers[wire_id] = response
            ready = []
            while self._order and self._order[0] in self._answers:
                ready.append(self._answers.pop(self._order.popleft()))
            self._changed.notify_all()
            return ready

    def close(self) -> None:
        """Stops the sending side (on cancel, or when the call ended)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()


class ResponseStream:
    """The responses of one StreamAnnotate call: iterate it; cancel() ends it from any thread.

    Iterating raises grpc.RpcError when the call fails (CANCELLED after cancel()), re-raises what the
    frames iterable raised once the frames before it are answered, and in file mode raises IncompleteStream
    when the server ended the call before answering every frame.
    """

    def __init__(self, call: grpc.Call, responses: Iterator[emotion_pb2.StreamAnnotateResponse],
                 source: _FrameRequests, on_cancel: Callable[[], None] = lambda: None) -> None:
        self._call = call
        self._responses = responses
        self._source = source
        self._on_cancel = on_cancel

    def __iter__(self) -> Iterator[emotion_pb2.StreamAnnotateResponse]:
        return self

    def __next__(self) -> emotion_pb2.StreamAnnotateResponse:
        return next(self._responses)

    def cancel(self) -> None:
        """Ends the call; safe from any thread and more than once."""
        self._on_cancel()
        self._call.cancel()

    def add_done_callback(self, callback: Callable[[], None]) -> None:
        """Calls callback (on any thread) once the call has ended, however it ended."""
        self._call.add_done_callback(lambda _: callback())

    def wait_sender(self, timeout: float) -> None:
        """Waits up to timeout seconds for gRPC's sending thread to leave the frames (after cancel())."""
        sender = self._source.sender
        if sender is not None and sender is not threading.current_thread():
            sender.join(timeout)
        self._source.close()

    def __enter__(self) -> ResponseStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()



def open_stream(
    stub: emotion_pb2_grpc.EmotionServiceStub,
    frames: Iterable[FrameInput],
    *,
    mode: StreamMode,
    max_in_flight: int,
    options: emotion_pb2.AnnotateOptions,
    jpeg_quality: int | None,
    metadata: Sequence[tuple[str, str]],
) -> ResponseStream:
    """One StreamAnnotate call on stub for frames, in mode (see EmotionClient.stream, which checks the
    arguments): arrays, bytes and paths go with options, encoded at jpeg_quality; metadata goes with the call.
    """
    source = _FrameRequests(frames, options, jpeg_quality)
    if mode == "live":
        call = stub.StreamAnnotate(iter(source), metadata=metadata)

        def live_responses() -> Iterator[emotion_pb2.StreamAnnotateResponse]:
            yield from call
            source.raise_error()

        return ResponseStream(call, live_responses(), source)
    window = _InOrderWindow(source, max_in_flight)
    call = stub.StreamAnnotate(window.requests(), metadata=metadata)
    return ResponseStream(call, window.responses(call), source, on_cancel=window.close)
